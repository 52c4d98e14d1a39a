"""``checkpoints``, and every command's help."""

from __future__ import annotations

import json

from autodistill_metaclip.cli import main
from autodistill_metaclip.engine.checkpoints import CHECKPOINTS, markdown_table
from tests.helpers import run_cli


def test_checkpoints_and_help() -> None:
    code, out, _ = run_cli("checkpoints", "--json")
    rows = json.loads(out)
    assert code == 0 and {r["name"] for r in rows} >= {"b32-fullcc", "demo"}
    assert [r["name"] for r in rows] == [c.name for c in CHECKPOINTS]
    code, out, _ = run_cli("checkpoints", "--markdown")
    assert code == 0 and "| `b32-fullcc` |" in out and out.strip() == markdown_table().strip()
    code, out, _ = run_cli("checkpoints")
    assert code == 0 and len(out.strip().splitlines()) == len(CHECKPOINTS)
    assert out.splitlines()[0].split()[:2] == [CHECKPOINTS[0].name, CHECKPOINTS[0].architecture]
    for command in main.commands:
        code, out, _ = run_cli(command, "--help")
        assert code == 0 and "Example" in out and "autodistill-metaclip" in out
    assert "--cache-dir" in run_cli("predict", "--help")[1]

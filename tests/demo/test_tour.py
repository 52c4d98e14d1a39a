"""The demo tour: ``python -m autodistill_metaclip.demo`` and the ``demo`` command, offline."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.helpers import manifest, python, run_cli


def test_demo_keeps_its_output_and_runs_again(tmp_path: Path) -> None:
    helped = python("-m", "autodistill_metaclip.demo", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "Usage: python -m autodistill_metaclip.demo" in helped.stdout
    assert list(tmp_path.iterdir()) == []  # --help ran nothing
    for _ in range(2):  # the second run replaces the first run's output
        done = python("-m", "autodistill_metaclip", "demo", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    assert f"metaclip-demo{os.sep}labeled{os.sep}manifest.csv" in done.stdout
    assert len(manifest(tmp_path / "metaclip-demo" / "labeled")) == 60
    labelled, total, correct = map(
        int, re.search(r"(\d+) of (\d+) images labelled, (\d+) correctly", done.stdout).groups()
    )
    assert total == 60 and labelled >= 57 and correct >= 0.95 * labelled
    assert "b32-fullcc" in done.stdout


def test_demo_in_an_impossible_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    code, _, err = run_cli("demo", tmp_path / "file.txt" / "demo")
    assert code == 1 and err.count("\n") == 1 and "FOLDER" in err and "Traceback" not in err

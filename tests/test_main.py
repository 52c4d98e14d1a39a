"""``python -m autodistill_metaclip`` is the command line."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import python


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    done = python("-m", "autodistill_metaclip", "checkpoints", cwd=tmp_path)
    assert done.returncode == 0 and "b32-fullcc" in done.stdout
    done = python("-m", "autodistill_metaclip", "nonsense", cwd=tmp_path)
    assert done.returncode == 2 and "No such command 'nonsense'" in done.stderr

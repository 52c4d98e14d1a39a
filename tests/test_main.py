"""``python -m autodistill_metaclip`` is the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autodistill_metaclip.labeling.corrections import FORMAT
from tests.helpers import python


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    done = python("-m", "autodistill_metaclip", "checkpoints", cwd=tmp_path)
    assert done.returncode == 0 and "b32-fullcc" in done.stdout
    done = python("-m", "autodistill_metaclip", "nonsense", cwd=tmp_path)
    assert done.returncode == 2 and "No such command 'nonsense'" in done.stderr


HEAVY = ("torch", "open_clip", "autodistill")  # seconds to import (more on a busy machine)


def imported(stderr: str) -> set[str]:
    """The top-level modules a ``python -X importtime`` run imported."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if "|" in line}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("predict x.png", "give the classes with exactly one of -c/--class"),
        ("label nosuch/ out -c cat", "INPUT_FOLDER: 'nosuch/' does not exist"),
        ("label . out", "give the classes with exactly one of -c/--class"),
        ("label . out -c cat --confidence 2", "'--confidence'"),
        ("label . out -c cat --ray --resume", "--resume: not available on Ray"),
        ("embed", "give images and/or texts"),
        ("embed x.png -o out.txt", "'-o/--output'"),
        ("index nosuch/ x.npz", "'nosuch/' is not a folder"),
        ("search nosuch.npz cat", "'nosuch.npz' does not exist"),
        ("dedup nosuch.npz", "'nosuch.npz' does not exist"),
        ("cluster nosuch.npz", "'nosuch.npz' does not exist"),
        ("review nosuch/", "'nosuch/' does not exist"),
        ("fix nosuch/ c.json", "'nosuch/' does not exist"),
        ("evaluate nosuch/", "'nosuch/' does not exist"),
        ("evaluate . -c cat --against nosuch.json", "'nosuch.json' does not exist"),
    ],
)
def test_usage_errors_exit_2_before_the_model_libraries_load(
    args: str, message: str, tmp_path: Path
) -> None:
    (tmp_path / "x.png").write_bytes(b"")
    (tmp_path / "c.json").write_text("{}")
    done = python("-X", "importtime", "-m", "autodistill_metaclip", *args.split(), cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert not imported(done.stderr) & set(HEAVY)


def test_commands_that_need_no_model_import_none(demo_dataset: Path, tmp_path: Path) -> None:
    corrections = tmp_path / "c.json"
    corrections.write_text(json.dumps({"format": FORMAT, "corrections": []}))
    for args in (
        ["fix", demo_dataset, corrections],
        ["evaluate", demo_dataset],
        ["review", demo_dataset],
        ["dedup", demo_dataset, "--move-to", tmp_path / "duplicates"],
        ["cluster", demo_dataset, "-k", "2"],
    ):
        command = [str(a) for a in args]
        done = python("-X", "importtime", "-m", "autodistill_metaclip", *command, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert not imported(done.stderr) & set(HEAVY), command

"""What a run keeps beside the dataset: its settings, the journal of the copies it wrote (the
only files it ever touches), and the summary of its manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autodistill_metaclip.labeling.corrections import FORMAT, apply_corrections
from autodistill_metaclip.labeling.state import (
    STATE,
    inside_splits,
    read_journal,
    read_run,
    summarize,
)
from tests.helpers import copies, manifest


@pytest.mark.parametrize("planted", ["/tmp/victim-{n}.txt", "../victim-{n}.txt", "train/x"])
def test_a_tampered_journal_touches_nothing_outside(
    demo_dataset: Path, tmp_path: Path, planted: str
) -> None:
    victim = tmp_path / f"victim-{len(planted)}.txt"
    victim.write_text("keep me")
    relative = planted.format(n=len(planted))
    if relative.startswith("/"):
        relative = str(victim)
    journal_file = demo_dataset / STATE / "written.json"
    journal = json.loads(journal_file.read_text())
    journal[relative] = ["00001_red_square.png", "1:1"]
    journal_file.write_text(json.dumps(journal))
    with pytest.raises(ValueError, match=r"journal .* is malformed"):
        apply_corrections(demo_dataset, {"format": FORMAT, "corrections": []})
    assert victim.read_text() == "keep me"


@pytest.mark.parametrize(
    ("relative", "inside"),
    [
        ("train/cat/a.png", True),
        ("val/cat/a.png", True),
        ("valid/a b/c d.png", True),
        ("train/a.png", False),
        ("train/cat/sub/a.png", False),
        ("other/cat/a.png", False),
        ("../train/cat/a.png", False),
        ("train/../cat/a.png", False),
        ("/train/cat/a.png", False),
        ("train//a.png", False),
        ("train/./a.png", False),
        ("train/cat/a.png/", False),
        (3, False),
    ],
)
def test_only_split_class_file_paths_are_ours(relative, inside: bool) -> None:
    assert inside_splits(relative) is inside


def test_the_journal_lists_exactly_the_copies(demo_dataset: Path) -> None:
    rows = manifest(demo_dataset)
    journal = read_journal(demo_dataset)
    assert sorted(journal) == sorted(
        p.relative_to(demo_dataset).as_posix() for p in copies(demo_dataset)
    )
    for relative, (key, stamp) in journal.items():
        assert rows[key]["stamp"] == stamp and relative.endswith(f"/{rows[key]['class']}/{key}")


def test_run_settings_are_read_back_and_checked(demo_dataset: Path, tmp_path: Path) -> None:
    run = read_run(demo_dataset)
    assert run["tool"] == "autodistill-metaclip" and len(run["classes"]) == 12
    settings = run["settings"]
    assert settings["input_folder"] == str(tmp_path / "in") and settings["extensions"] == [".png"]
    assert (settings["confidence"], settings["seed"], settings["layout"]) == (0.9, 0, "valid")
    assert settings["checkpoint"] == "demo" and settings["split"] == [0.7, 0.15, 0.15]
    with pytest.raises(ValueError, match=r"dataset_folder: .* holds no readable run of label"):
        read_run(tmp_path / "in")
    (demo_dataset / STATE / "run.json").write_text('["not", "an", "object"]')
    with pytest.raises(ValueError, match="holds no readable run"):
        read_run(demo_dataset)


def test_summary_counts_statuses_and_lists_failures(demo_dataset: Path) -> None:
    rows = manifest(demo_dataset).values()
    statuses = [r["status"] for r in rows]
    summary = summarize(demo_dataset)
    assert summary == {
        "labeled": statuses.count("labeled"),
        "unlabeled": statuses.count("unlabeled"),
        "failed": 1,
        "corrected": 0,
        "excluded": 0,
        "failures": [{"image": "broken.png", "error": summary["failures"][0]["error"]}],
    }
    assert "not an image file" in summary["failures"][0]["error"]
    assert summary["labeled"] + summary["unlabeled"] == 61

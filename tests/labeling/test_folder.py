"""One output folder of label(): resume continues only the same run and follows the input's
changes exactly; overwrite removes only what this tool wrote; a copy is always the file it
claims to be."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autodistill_metaclip import MetaCLIP, synthetic
from tests.helpers import (
    ONTOLOGY,
    TIGHT,
    copies,
    manifest,
    resume_run,
    same_as_fresh,
    write_inputs,
)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"confidence": 0.9}, "confidence"),
        ({"seed": 1}, "seed"),
        ({"split": (0.5, 0.25, 0.25)}, "split"),
        ({"layout": "val"}, "layout"),
        ({"near_duplicates": 0.98}, "near_duplicates"),
        ({"extension": [".png", ".jpg"]}, "extensions"),
        ({"recursive": True}, "recursive"),
        (
            {"ontology": {"a photo of a red circle": "red circle", "a blue square": "blue square"}},
            "ontology",
        ),
        ({"prompt_templates": "a photo of a {}"}, "prompt_templates"),
    ],
)
def test_resume_with_other_settings_is_refused(
    finished: Path, shapes_model: MetaCLIP, change: dict, named: str
) -> None:
    before = (finished / "out" / "manifest.csv").read_bytes()
    options = {"near_duplicates": TIGHT, "extension": ".png", **change}
    other = shapes_model
    if "ontology" in options or "prompt_templates" in options:
        other = MetaCLIP(
            options.pop("ontology", ONTOLOGY),
            "demo",
            prompt_templates=options.pop("prompt_templates", None),
        )
    extension = options.pop("extension")
    with pytest.raises(ValueError, match=rf"resume: .*{named} .*overwrite=True"):
        other.label(
            finished / "in", extension, finished / "out", resume=True, progress=False, **options
        )
    assert (finished / "out" / "manifest.csv").read_bytes() == before


def test_resume_of_a_folder_that_holds_no_run_is_refused(
    shapes_model: MetaCLIP, tmp_path: Path
) -> None:
    write_inputs(tmp_path / "in", {"red circle": 2})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds no run of this tool to resume"):
        shapes_model.label(tmp_path / "in", ".png", tmp_path / "out", resume=True, progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["notes.txt"]


def test_input_changes_are_followed_exactly(finished: Path, shapes_model: MetaCLIP) -> None:
    (finished / "in" / "0000.png").unlink()  # removed
    synthetic.make_image("green", "triangle", seed=77).save(finished / "in" / "0001.png")  # changed
    os.utime(finished / "in" / "0001.png", ns=(1, 1))
    synthetic.make_image("blue", "square", seed=78).save(finished / "in" / "new.png")  # added
    resume_run(shapes_model, finished)
    rows = manifest(finished / "out")
    assert "0000.png" not in rows and rows["0001.png"]["class"] == "green triangle"
    assert rows["new.png"]["class"] == "blue square"
    same_as_fresh(shapes_model, finished)


def test_overwrite_removes_only_what_the_tool_wrote(finished: Path, shapes_model: MetaCLIP) -> None:
    out = finished / "out"
    (out / "notes.txt").write_text("mine")  # beside the split folders: not the tool's concern
    planted = out / "train" / "red circle" / "holiday.jpg"
    planted.write_bytes(b"my own photo")
    with pytest.raises(FileExistsError, match=r"did not write .*train/red circle/holiday\.jpg"):
        shapes_model.label(finished / "in", ".png", out, overwrite=True, progress=False)
    assert planted.read_bytes() == b"my own photo" and (out / "manifest.csv").is_file()
    planted.unlink()
    shapes_model.label(
        finished / "in", ".png", out, overwrite=True, near_duplicates=TIGHT, progress=False
    )
    assert (out / "notes.txt").read_text() == "mine"
    same_as_fresh(shapes_model, finished)
    theirs = finished / "theirs"
    theirs.mkdir()
    (theirs / "manifest.csv").write_text("their own manifest")
    with pytest.raises(FileExistsError, match=r"did not write .*manifest\.csv"):
        shapes_model.label(finished / "in", ".png", theirs, overwrite=True, progress=False)
    assert (theirs / "manifest.csv").read_text() == "their own manifest"


def test_a_copy_is_kept_only_if_it_holds_the_same_file(
    shapes_model: MetaCLIP, tmp_path: Path
) -> None:
    """x.png and b/x.png: the second is written as b__x.png; once x.png is gone it becomes
    x.png, and the earlier copy under that name (other bytes) must not be kept."""
    (tmp_path / "in" / "b").mkdir(parents=True)
    synthetic.make_image("red", "circle", seed=1).save(tmp_path / "in" / "x.png")
    synthetic.make_image("red", "circle", seed=2).save(tmp_path / "in" / "b" / "x.png")
    options = {"recursive": True, "split": (1.0, 0.0, 0.0), "progress": False}
    shapes_model.label(tmp_path / "in", ".png", tmp_path / "out", **options)
    assert sorted(p.name for p in copies(tmp_path / "out")) == ["b__x.png", "x.png"]
    (tmp_path / "in" / "x.png").unlink()
    shapes_model.label(tmp_path / "in", ".png", tmp_path / "out", resume=True, **options)
    (copy,) = copies(tmp_path / "out")
    assert copy.name == "x.png"
    assert copy.read_bytes() == (tmp_path / "in" / "b" / "x.png").read_bytes()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664)])
def test_copies_get_the_usual_permissions(demo_model, tmp_path, umask, mode) -> None:
    synthetic.write_folder(tmp_path / "in", 4, suffix=".png")
    previous = os.umask(umask)
    try:
        demo_model.label(tmp_path / "in", ".png", tmp_path / "out", confidence=0, progress=False)
    finally:
        os.umask(previous)
    files = [*copies(tmp_path / "out", "*.png"), tmp_path / "out" / "manifest.csv"]
    assert len(files) == 5 and {p.stat().st_mode & 0o777 for p in files} == {mode}


def test_a_folder_written_by_label_lists_its_classes_in_reader_order(
    finished: Path,
) -> None:
    """classes.txt: the classes in sorted folder order, as folder readers number them; every
    class has a folder in every split, empty ones too."""
    out = finished / "out"
    assert (out / "classes.txt").read_text(encoding="utf-8") == (
        "blue square\ngreen triangle\nred circle\nyellow circle\n"
    )
    for split in ("train", "valid", "test"):
        assert sorted(p.name for p in (out / split).iterdir()) == [
            "blue square", "green triangle", "red circle", "yellow circle",
        ]  # fmt: skip

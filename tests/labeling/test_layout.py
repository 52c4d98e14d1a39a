"""Where things go in an output folder: safe class folder names, unique file names, and what
counts as this tool's own files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autodistill_metaclip import MetaCLIP
from autodistill_metaclip.labeling.layout import class_folders, file_names, safe_name
from tests.helpers import manifest, resume_run, write_inputs


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cat", "cat"),
        ("a/b", "a_b"),
        ("..", "_"),
        ("../../etc", "_.._etc"),
        ("/abs/path", "_abs_path"),
        ("nul\x00byte", "nul_byte"),
        ("CON", "_CON"),
        ("com1.txt", "_com1.txt"),
        ("trailing. ", "trailing"),
        ("ünïcødé ☀", "ünïcødé ☀"),
    ],
)
def test_safe_name(name: str, expected: str) -> None:
    assert safe_name(name) == expected
    assert os.sep not in safe_name(name) and safe_name(name) not in (".", "..", "")


def test_class_folders_are_unique() -> None:
    """Names that clash (also ignoring case) are numbered in order: a/b takes a_b first."""
    assert class_folders(["a/b", "a_b", "A_B", "cat"]) == {
        "a/b": "a_b",
        "a_b": "a_b_2",
        "A_B": "A_B_3",
        "cat": "cat",
    }
    assert class_folders(["cat", "cat", "dog"]) == {"cat": "cat", "dog": "dog"}  # once each


def test_long_flattened_names_keep_their_suffix() -> None:
    names = file_names([f"{'a' * 150}/{'b' * 150}.jpg", "x.jpg", f"{'c' * 150}/x.jpg", "y\nz.jpg"])
    assert all(name.endswith(".jpg") and len(name.encode()) <= 200 for name in names.values())
    assert "\n" not in names["y\nz.jpg"]
    assert len({n.lower() for n in names.values()}) == 4


def test_file_names_flatten_only_names_that_clash() -> None:
    assert file_names(["a.jpg", "sub/b.jpg", "sub/A.JPG", "x/y/c.png"]) == {
        "a.jpg": "a.jpg",
        "sub/b.jpg": "b.jpg",
        "sub/A.JPG": "sub__A.JPG",
        "x/y/c.png": "c.png",
    }


def test_an_input_named_like_a_temporary_file_is_labelled(
    shapes_model: MetaCLIP, tmp_path: Path
) -> None:
    write_inputs(tmp_path / "in", {"red circle": 3})
    (tmp_path / "in" / "0000.png").rename(tmp_path / "in" / ".partial-x.png")
    for resume in (False, True):
        shapes_model.label(tmp_path / "in", ".png", tmp_path / "out", resume=resume, progress=False)
        assert manifest(tmp_path / "out")[".partial-x.png"]["status"] == "labeled"
        assert list(
            (tmp_path / "out").glob("*/red circle/partial-x.png")
        )  # not hidden: readers skip those


def test_a_killed_runs_leftovers_are_removed_and_nothing_else(
    finished: Path, shapes_model: MetaCLIP
) -> None:
    """A temporary file of this tool's (``.partial-`` + 16 hex digits) in a class folder is a
    killed run's leftover: removed on resume. A name that only looks alike is refused as
    foreign on overwrite, never deleted."""
    folder = finished / "out" / "train" / "red circle"
    leftover = folder / ".partial-0123456789abcdef-0001.png"
    leftover.write_bytes(b"half a file")
    resume_run(shapes_model, finished)
    assert not leftover.exists()
    lookalike = folder / ".partial-notours.png"
    lookalike.write_bytes(b"someone's file")
    with pytest.raises(FileExistsError, match=r"did not write .*\.partial-notours\.png"):
        shapes_model.label(
            finished / "in", ".png", finished / "out", overwrite=True, progress=False
        )
    assert lookalike.read_bytes() == b"someone's file"


def test_a_linked_folder_in_a_split_is_foreign(finished: Path, shapes_model: MetaCLIP) -> None:
    elsewhere = finished / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.jpg").write_bytes(b"keep me")
    (finished / "out" / "train" / "red circle" / "link").symlink_to(elsewhere)
    with pytest.raises(FileExistsError, match="link"):
        shapes_model.label(
            finished / "in", ".png", finished / "out", overwrite=True, progress=False
        )
    assert (elsewhere / "precious.jpg").read_bytes() == b"keep me"

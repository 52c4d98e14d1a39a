"""A dataset's copies: kept bytes moved into place, moved again (never rewritten) when their
place changes, only what this tool wrote ever removed, excluded images' bytes kept."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from autodistill_metaclip.labeling.copies import Copies
from autodistill_metaclip.labeling.manifest import Decision, new_row
from autodistill_metaclip.labeling.state import STAGED, STATE, read_journal
from autodistill_metaclip.results import Status

SPLITS = ("train", "valid", "test")
FOLDERS = {"cat": "cat", "dog": "dog"}


def _png(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, "PNG")
    return buffer.getvalue()


def _copies(output: Path) -> Copies:
    (output / STATE).mkdir()  # as DatasetFolder makes it, under its lock
    return Copies(output)


def _rows(*keys: str) -> dict[str, dict[str, str]]:
    return {k: new_row(k, "1:1", status=Status.LABELED, **{"class": "cat"}) for k in keys}


def test_kept_bytes_move_into_place_and_move_again_when_the_place_changes(tmp_path: Path) -> None:
    copies = _copies(tmp_path)
    rows = _rows("a.png", "b.png")
    copies.stage("a.png", "1:1", _png("red"))
    copies.stage("b.png", "1:1", _png("blue"))
    copies.place(rows, {"train/cat/a.png": "a.png", "valid/cat/b.png": "b.png"}, SPLITS, FOLDERS)
    with Image.open(tmp_path / "train/cat/a.png") as image:
        assert image.getpixel((0, 0)) == (255, 0, 0)
    assert read_journal(tmp_path) == {
        "train/cat/a.png": ["a.png", "1:1"],
        "valid/cat/b.png": ["b.png", "1:1"],
    }
    assert not any((tmp_path / STATE / STAGED).iterdir())  # every kept byte is in place
    inode = (tmp_path / "train/cat/a.png").stat().st_ino

    foreign = tmp_path / "train" / "cat" / "mine.txt"  # not written by the tool
    foreign.write_text("keep me")
    copies.place(rows, {"test/dog/a.png": "a.png", "valid/cat/b.png": "b.png"}, SPLITS, FOLDERS)
    assert (tmp_path / "test/dog/a.png").stat().st_ino == inode  # moved, not written again
    assert not (tmp_path / "train/cat/a.png").exists()
    assert foreign.read_text() == "keep me"
    assert list(read_journal(tmp_path)) == ["test/dog/a.png", "valid/cat/b.png"]


def test_an_excluded_image_keeps_its_bytes_for_a_later_correction(tmp_path: Path) -> None:
    copies = _copies(tmp_path)
    rows = _rows("a.png")
    copies.stage("a.png", "1:1", _png("red"))
    copies.place(rows, {"train/cat/a.png": "a.png"}, SPLITS, FOLDERS)
    rows["a.png"]["decided"] = Decision.EXCLUDED
    copies.place(rows, {}, SPLITS, {"dog": "dog"})  # and the class cat is gone
    assert not (tmp_path / "train/cat/a.png").exists()
    assert not (tmp_path / "train/cat").exists() and (tmp_path / "train/dog").is_dir()
    assert len(list((tmp_path / STATE / STAGED).iterdir())) == 1
    rows["a.png"]["decided"] = Decision.HUMAN
    copies.gather(rows, fetch=None)  # nothing to read again: the bytes were kept
    assert rows["a.png"]["status"] == Status.LABELED
    copies.place(rows, {"train/cat/a.png": "a.png"}, SPLITS, FOLDERS)
    assert (tmp_path / "train/cat/a.png").read_bytes() == _png("red")


def test_an_image_whose_bytes_are_gone_becomes_a_failed_row_saying_why(tmp_path: Path) -> None:
    rows = _rows("a.png", "b.png")
    read_again = {"b.png": _png("blue")}
    _copies(tmp_path).gather(rows, fetch=read_again.get)
    assert rows["a.png"]["status"] == Status.FAILED
    assert "changed or gone since it was embedded" in rows["a.png"]["error"]
    assert rows["b.png"]["status"] == Status.LABELED

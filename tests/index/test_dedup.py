"""Near-duplicates as an action: the representative rule, dry runs, moves and their log."""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from autodistill_metaclip import EmbeddingIndex, MetaCLIP, synthetic
from autodistill_metaclip.index.dedup import DuplicateGroup, move_duplicates, plan
from autodistill_metaclip.inputs import sources


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Distinct shapes, plus one picture three times: a PNG, a smaller JPEG re-encode in a
    subfolder, and a byte copy of the PNG that is older."""
    folder = tmp_path / "photos"
    synthetic.write_folder(folder, 12, seed=4)
    picture = synthetic.make_image("blue", "triangle", seed=70, size=96)
    picture.save(folder / "big.png")
    (folder / "sub").mkdir()
    picture.save(folder / "sub" / "small.jpg", quality=60)
    (folder / "old.png").write_bytes((folder / "big.png").read_bytes())
    os.utime(folder / "old.png", ns=(10**18, 10**18))  # the copy is older: it wins the tie
    return folder


def test_the_largest_oldest_file_is_kept(demo_model: MetaCLIP, photos: Path) -> None:
    index = EmbeddingIndex.build(demo_model, photos, recursive=True, progress=False)
    (group,) = [g for g in plan(index, 0.99) if "sub/small.jpg" in [g.keep, *g.move]]
    assert group.keep == "old.png" and sorted(group.move) == ["big.png", "sub/small.jpg"]


def test_a_dry_run_moves_nothing_and_apply_moves_with_a_log(demo_model, photos, tmp_path) -> None:
    index = EmbeddingIndex.build(demo_model, photos, recursive=True, progress=False)
    groups = [g for g in plan(index, 0.99) if g.keep == "old.png"]
    before = sorted(p.relative_to(photos) for p in photos.rglob("*") if p.is_file())
    aside = tmp_path / "aside"
    moves = move_duplicates(index, groups, aside)
    assert {m.outcome for m in moves} == {"dry run"} and not aside.exists()
    assert sorted(p.relative_to(photos) for p in photos.rglob("*") if p.is_file()) == before

    small = (photos / "sub" / "small.jpg").read_bytes()
    moves = move_duplicates(index, groups, aside, apply=True, folder=photos)
    assert {m.outcome for m in moves} == {"moved"}
    assert (aside / "sub" / "small.jpg").read_bytes() == small and (aside / "big.png").is_file()
    assert (photos / "old.png").is_file() and not (photos / "big.png").exists()
    with open(aside / "moves.csv", encoding="utf-8", newline="") as f:
        log = list(csv.DictReader(f))
    assert {Path(r["to"]).relative_to(aside).as_posix() for r in log} == {
        "big.png",
        "sub/small.jpg",
    }
    # Again with the same (now stale) plan: nothing is overwritten, each skip says why.
    again = move_duplicates(index, groups, aside, apply=True, folder=photos)
    assert all(m.outcome.startswith("skipped") for m in again)


def test_changed_files_are_skipped_and_the_destination_checked(demo_model, photos, tmp_path):
    index = EmbeddingIndex.build(demo_model, photos, recursive=True, progress=False)
    groups = [g for g in plan(index, 0.99) if g.keep == "old.png"]
    (photos / "big.png").write_bytes(b"changed since")
    moves = {
        m.source.name: m.outcome
        for m in move_duplicates(index, groups, tmp_path / "a", apply=True, folder=photos)
    }
    assert moves == {"big.png": "skipped: it changed since it was indexed", "small.jpg": "moved"}
    with pytest.raises(ValueError, match="must not be inside"):
        move_duplicates(index, groups, photos / "dups")


def test_links_the_kept_file_and_strange_keys_never_lose_an_image(demo_model, tmp_path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    picture = synthetic.make_image("red", "square", seed=3, size=80)
    picture.save(folder / "z.png")
    (folder / "a_link.png").symlink_to(folder / "z.png")  # same stamp as its target: a tie
    raw = os.fsencode(folder) + b"/caf\xe9.png"
    with open(raw, "wb") as f:
        f.write((folder / "z.png").read_bytes())
    os.utime(raw, ns=(1, 1))  # older: kept before z.png
    index = EmbeddingIndex.build(demo_model, folder, progress=False)
    (group,) = plan(index, 0.99)
    moves = move_duplicates(index, [group], tmp_path / "aside", apply=True, folder=folder)
    left = {p.name for p in folder.iterdir()}
    assert any((folder / name).resolve().is_file() for name in left)  # an image is still there
    assert "a_link.png" not in {m.source.name for m in moves if m.outcome == "moved"}
    log = (tmp_path / "aside" / "moves.csv").read_text(encoding="utf-8")  # valid UTF-8
    assert all(m.outcome in log for m in moves)

    (tmp_path / "outside.png").write_bytes(b"not yours")

    def stamp(path: Path) -> str:
        info = path.stat()
        return f"{info.st_size}:{info.st_mtime_ns}"

    second = tmp_path / "second"
    second.mkdir()
    picture.save(second / "z.png")
    keys = ["../outside.png", "z.png"]
    stamps = [stamp(tmp_path / "outside.png"), stamp(second / "z.png")]
    crafted = EmbeddingIndex(str(second), keys, index.embeddings[:2], stamps, {})
    outcome = move_duplicates(
        crafted, [DuplicateGroup("z.png", ["../outside.png"])], tmp_path / "d2", apply=True,
        folder=second,
    )  # fmt: skip
    assert (tmp_path / "outside.png").read_bytes() == b"not yours"
    assert outcome[0].outcome == "skipped: it is outside the indexed folder"


def test_a_group_whose_kept_file_changed_is_left_alone(demo_model, photos, tmp_path) -> None:
    index = EmbeddingIndex.build(demo_model, photos, recursive=True, progress=False)
    groups = [g for g in plan(index, 0.99) if g.keep == "old.png"]
    (photos / "old.png").unlink()
    moves = move_duplicates(index, groups, tmp_path / "aside", apply=True, folder=photos)
    assert all(m.outcome.startswith("skipped: the kept file") for m in moves)
    assert (photos / "big.png").is_file() and (photos / "sub" / "small.jpg").is_file()


# --- applying only inside a folder the caller names ----------------------------------------


def _stamp(path: Path) -> str:
    info = path.stat()
    return f"{info.st_size}:{info.st_mtime_ns}"


def _crafted(root: Path, groups: dict[str, list[str]]) -> EmbeddingIndex:
    """An index of ``root`` as an index file may say anything: keys (relative, absolute, with
    ``..``) and their stamps, one vector per group (so each group is a near-duplicate group)."""
    keys, vectors = [], []
    for n, (keep, move) in enumerate(groups.items()):
        for key in (keep, *move):
            keys.append(key)
            vectors.append(np.eye(8, dtype=np.float32)[n % 8])
    stamps = []
    for key in keys:
        path = root / sources.unescape_key(key)
        stamps.append(_stamp(path) if os.path.lexists(path) else "0:0")
    return EmbeddingIndex(str(root), keys, np.stack(vectors), stamps, {})


def _files(folder: Path, names: dict[str, bytes]) -> Path:
    for name, data in names.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_applying_needs_the_folder_the_index_was_built_from(tmp_path: Path) -> None:
    folder = _files(tmp_path / "photos", {"keep.png": b"k" * 20, "dup.png": b"d" * 10})
    other = _files(tmp_path / "other", {"keep.png": b"k" * 20, "dup.png": b"d" * 10})
    index = _crafted(folder, {"keep.png": ["dup.png"]})
    groups = plan(index, 0.99)
    with pytest.raises(ValueError, match=r"^folder: expected the folder the index was built"):
        move_duplicates(index, groups, tmp_path / "aside", apply=True)
    with pytest.raises(ValueError, match=r"^folder: expected .*photos.*, but got .*other"):
        move_duplicates(index, groups, tmp_path / "aside", apply=True, folder=other)
    assert not (tmp_path / "aside").exists() and (other / "dup.png").exists()
    assert [m.outcome for m in move_duplicates(index, groups, tmp_path / "aside")] == ["dry run"]
    (tmp_path / "link").symlink_to(folder)  # the same folder, named through a link: fine
    moves = move_duplicates(index, groups, tmp_path / "aside", apply=True, folder=tmp_path / "link")
    assert [m.outcome for m in moves] == ["moved"]
    assert (tmp_path / "aside" / "dup.png").read_bytes() == b"d" * 10


def test_every_strange_key_is_a_skipped_row_not_the_end(tmp_path: Path) -> None:
    """Absolute keys (inside the folder or not), ``..``, a NUL byte, a folder that is a link
    out, a hard link of the kept file, a FIFO: each a skipped row; the good one still moves."""
    folder = _files(tmp_path / "photos", {"keep.png": b"k" * 20, "ok.png": b"o" * 10})
    outside = _files(tmp_path / "outside", {"x.png": b"x" * 10})
    (folder / "via").symlink_to(outside)
    os.link(folder / "keep.png", folder / "hard.png")
    os.mkfifo(folder / "pipe.png")
    keys = {
        str(folder / "ok.png"): "is outside the indexed folder",
        str(outside / "x.png"): "is outside the indexed folder",
        "../outside/x.png": "is outside the indexed folder",
        "./ok.png": "is outside the indexed folder",
        "via/x.png": "is under a symbolic link or a file, not a folder",
        "keep.png/x.png": "is under a symbolic link or a file, not a folder",
        "hard.png": "is the kept file",
        "pipe.png": "is not a regular file",
        "gone.png": "is unreadable (No such file or directory)",
        "ok.png": "",
        "nul\0.png": None,  # a name no file can have
    }
    index = _crafted(folder, {"keep.png": list(keys)})
    index.stamps[index.keys.index(str(outside / "x.png"))] = _stamp(outside / "x.png")
    groups = [DuplicateGroup("keep.png", [*keys, "not-indexed.png"])]
    moves = move_duplicates(index, groups, tmp_path / "aside", apply=True, folder=folder)
    assert [m.outcome for m in moves] == [
        "moved" if why == "" else "skipped: embedded null byte" if why is None
        else f"skipped: it {why}"
        for why in keys.values()
    ] + ["skipped: it is not in the index"]  # fmt: skip
    assert (outside / "x.png").read_bytes() == b"x" * 10
    assert os.stat(outside / "x.png").st_nlink == 1
    assert sorted(p.name for p in (tmp_path / "aside").iterdir()) == ["moves.csv", "ok.png"]
    with open(tmp_path / "aside" / "moves.csv", encoding="utf-8", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(moves)


def test_a_destination_folder_that_is_a_link_is_not_written_through(tmp_path: Path) -> None:
    folder = _files(tmp_path / "photos", {"keep.png": b"k" * 20, "sub/dup.png": b"d" * 10})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "aside").mkdir()
    (tmp_path / "aside" / "sub").symlink_to(elsewhere)
    index = _crafted(folder, {"keep.png": ["sub/dup.png"]})
    (move,) = move_duplicates(
        index, plan(index, 0.99), tmp_path / "aside", apply=True, folder=folder
    )
    assert move.outcome == "skipped: a folder of its destination is a link or a file"
    assert list(elsewhere.iterdir()) == [] and (folder / "sub" / "dup.png").is_file()


def test_a_move_to_another_filesystem_is_a_verified_copy(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temporary folder")
    big = os.urandom(3 << 20)
    names = {"keep.png": b"k" * (4 << 20), "sub/dup.png": big, "sub/taken.png": b"t" * 10}
    folder = _files(tmp_path / "photos", names)
    (folder / "sub" / "dup.png").chmod(0o640)
    os.utime(folder / "sub" / "dup.png", ns=(10**18, 10**18))
    index = _crafted(folder, {"keep.png": ["sub/dup.png", "sub/taken.png"]})
    aside = Path(tempfile.mkdtemp(prefix="metaclip-dedup-", dir=shm))
    try:
        _files(aside, {"sub/taken.png": b"already here"})
        moves = move_duplicates(index, plan(index, 0.99), aside, apply=True, folder=folder)
        assert [m.outcome for m in moves] == ["moved", "skipped: the destination exists"]
        copy = aside / "sub" / "dup.png"
        assert copy.read_bytes() == big and not (folder / "sub" / "dup.png").exists()
        assert (copy.stat().st_mode & 0o777, copy.stat().st_mtime_ns) == (0o640, 10**18)
        assert (aside / "sub" / "taken.png").read_bytes() == b"already here"
        assert (folder / "sub" / "taken.png").read_bytes() == b"t" * 10
        assert sorted(p.name for p in (aside / "sub").iterdir()) == ["dup.png", "taken.png"]
    finally:
        shutil.rmtree(aside)

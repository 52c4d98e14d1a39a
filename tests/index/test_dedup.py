"""Near-duplicates as an action: the representative rule, dry runs, moves and their log."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from autodistill_metaclip import EmbeddingIndex, MetaCLIP, synthetic
from autodistill_metaclip.index.dedup import DuplicateGroup, move_duplicates, plan


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
    moves = move_duplicates(index, groups, aside, apply=True)
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
    again = move_duplicates(index, groups, aside, apply=True)
    assert all(m.outcome.startswith("skipped") for m in again)


def test_changed_files_are_skipped_and_the_destination_checked(demo_model, photos, tmp_path):
    index = EmbeddingIndex.build(demo_model, photos, recursive=True, progress=False)
    groups = [g for g in plan(index, 0.99) if g.keep == "old.png"]
    (photos / "big.png").write_bytes(b"changed since")
    moves = {
        m.source.name: m.outcome for m in move_duplicates(index, groups, tmp_path / "a", apply=True)
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
    moves = move_duplicates(index, [group], tmp_path / "aside", apply=True)
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
        crafted, [DuplicateGroup("z.png", ["../outside.png"])], tmp_path / "d2", apply=True
    )
    assert (tmp_path / "outside.png").read_bytes() == b"not yours"
    assert outcome[0].outcome == "skipped: it is outside the indexed folder"


def test_a_group_whose_kept_file_changed_is_left_alone(demo_model, photos, tmp_path) -> None:
    index = EmbeddingIndex.build(demo_model, photos, recursive=True, progress=False)
    groups = [g for g in plan(index, 0.99) if g.keep == "old.png"]
    (photos / "old.png").unlink()
    moves = move_duplicates(index, groups, tmp_path / "aside", apply=True)
    assert all(m.outcome.startswith("skipped: the kept file") for m in moves)
    assert (photos / "big.png").is_file() and (photos / "sub" / "small.jpg").is_file()

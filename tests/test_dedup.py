"""Near-duplicates as an action: the representative rule, dry runs, moves and their log."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from autodistill_metaclip import EmbeddingIndex, MetaCLIP, synthetic
from autodistill_metaclip.cli import main
from autodistill_metaclip.dedup import move_duplicates, plan


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
    assert moves == {"big.png": "skipped: changed since it was indexed", "small.jpg": "moved"}
    with pytest.raises(ValueError, match="must not be inside"):
        move_duplicates(index, groups, photos / "dups")


def test_cli_dedup_dry_run_then_apply(demo_model, photos: Path, tmp_path: Path) -> None:
    index_file = tmp_path / "photos.npz"
    EmbeddingIndex.build(demo_model, photos, recursive=True, progress=False).save(index_file)
    runner = CliRunner()
    result = runner.invoke(
        main, ["dedup", str(index_file), "--threshold", "0.99", "--move-to", str(tmp_path / "d")]
    )
    assert result.exit_code == 0 and "dry run" in result.output and not (tmp_path / "d").exists()
    result = runner.invoke(
        main,
        [
            "dedup",
            str(index_file),
            "--threshold",
            "0.99",
            "--move-to",
            str(tmp_path / "d"),
            "--apply",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert any(g["keep"] == "old.png" for g in data["groups"])
    assert all(m["outcome"] == "moved" for m in data["moves"])
    assert runner.invoke(main, ["dedup", str(index_file), "--apply"]).exit_code == 2

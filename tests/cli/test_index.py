"""``index``, ``search``, ``dedup``, ``cluster``: an index file kept in step with its folder,
and the commands that read it (with its own checkpoint unless told otherwise)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from autodistill_metaclip import EmbeddingIndex, MetaCLIP, synthetic
from tests.helpers import run_cli


def test_index_refuses_another_folder_and_other_options(photos: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    synthetic.write_folder(other, 3, seed=1)
    index_file = tmp_path / "photos.npz"
    assert run_cli("index", "-m", "demo", photos, index_file)[0] == 0
    before = index_file.read_bytes()
    code, _, err = run_cli("index", "-m", "demo", other, index_file)
    assert code == 1 and "INDEX_FILE" in err and str(photos) in err and str(other) in err
    assert "INPUT_FOLDER" in err and "input_folder" not in err
    code, _, err = run_cli("index", "-m", "demo", photos, index_file, "-e", ".jpg")
    assert code == 1 and "--extension" in err and "extensions=" not in err
    code, _, err = run_cli("index", "-m", "demo", photos, index_file, "--no-recursive")
    assert code == 1 and "--recursive" in err and "recursive=" not in err
    assert index_file.read_bytes() == before


def test_index_uses_its_own_checkpoint_and_counts_truthfully(
    with_bad: Path, tmp_path: Path
) -> None:
    index_file = tmp_path / "mixed.npz"
    code, out, _ = run_cli("index", "-m", "demo", with_bad, index_file, "--json")
    assert code == 3 and json.loads(out)["added"] == 4 and json.loads(out)["failed"] == 1
    # No -m: the index's own checkpoint (the default, b32-fullcc, cannot load offline here).
    code, out, _ = run_cli("index", with_bad, index_file, "--json")
    counts = json.loads(out)
    assert code == 3, out
    assert (counts["added"], counts["changed"], counts["removed"], counts["failed"]) == (0, 0, 0, 1)
    (with_bad / "00000_red_circle.png").unlink()
    code, out, _ = run_cli("index", with_bad, index_file, "--json")
    assert json.loads(out)["removed"] == 1 and json.loads(out)["images"] == 3


def test_search_refuses_a_missing_image_path(photos: Path, tmp_path: Path) -> None:
    index_file = tmp_path / "photos.npz"
    run_cli("index", "-m", "demo", photos, index_file)
    code, out, err = run_cli("search", index_file, "missing/photo.jpg")
    assert code == 1 and out == "" and "missing/photo.jpg" in err and "--text" in err
    code, out, _ = run_cli("search", index_file, "missing/photo.jpg", "--text", "-k", "2", "--json")
    assert code == 0 and len(json.loads(out)) == 2


def test_index_search_dedup_cluster(photos: Path, tmp_path: Path) -> None:
    index_file = tmp_path / "photos.npz"
    code, out, _ = run_cli("index", "-m", "demo", photos, index_file, "--json")
    assert code == 0 and json.loads(out)["images"] == 24
    code, out, _ = run_cli(  # no -m: the index knows its checkpoint
        "search", index_file, "a photo of a yellow triangle", "-k", "2", "--json",
        "--grid", tmp_path / "search.png",
    )  # fmt: skip
    hits = json.loads(out)
    assert code == 0 and all("yellow_triangle" in h["path"] for h in hits)
    assert Image.open(tmp_path / "search.png").format == "PNG"
    code, out, _ = run_cli("search", index_file, photos / "00004_green_square.png", "-k", "1")
    assert code == 0 and "00004_green_square.png" in out
    code, out, _ = run_cli("dedup", index_file, "--threshold", "0.9999", "--json")
    assert code == 0 and json.loads(out) == {"groups": []}
    names = [x for c in synthetic.COLOURS for x in ("-n", f"a photo of a {c} thing")]
    code, out, _ = run_cli(
        "cluster", index_file, "-k", "4", "--json", "--sheet", tmp_path / "sheet.png", *names
    )
    clusters = json.loads(out)
    assert code == 0 and sum(c["size"] for c in clusters) == 24 and all(c["name"] for c in clusters)
    assert Image.open(tmp_path / "sheet.png").size == (1120, 640)
    code, _, err = run_cli("search", index_file, "a cat", "-m", "b32-400m")
    assert code == 1 and err.startswith("error: ")


def test_weights_are_not_dropped_for_the_index_default(photos: Path, tmp_path: Path) -> None:
    index_file = tmp_path / "photos.npz"
    run_cli("index", "-m", "demo", photos, index_file)
    code, _, err = run_cli("search", index_file, "a red circle", "--weights", tmp_path / "none.pt")
    assert code == 1 and "none.pt" in err


def test_index_accepts_the_same_suffixes_written_differently(photos: Path, tmp_path: Path) -> None:
    index_file = tmp_path / "photos.npz"
    assert run_cli("index", "-m", "demo", photos, index_file, "-e", "png")[0] == 0
    code, out, _ = run_cli("index", "-m", "demo", photos, index_file, "-e", ".PNG", "--json")
    assert code == 0 and json.loads(out)["added"] == 0


@pytest.fixture
def duplicated(tmp_path: Path) -> Path:
    """Distinct shapes, plus one picture three times (the newest copy is the one moved)."""
    folder = tmp_path / "photos"
    synthetic.write_folder(folder, 12, seed=4)
    picture = synthetic.make_image("blue", "triangle", seed=70, size=96)
    picture.save(folder / "big.png")
    (folder / "sub").mkdir()
    picture.save(folder / "sub" / "small.jpg", quality=60)
    (folder / "old.png").write_bytes((folder / "big.png").read_bytes())
    os.utime(folder / "old.png", ns=(10**18, 10**18))
    return folder


def test_cli_dedup_dry_run_then_apply(demo_model: MetaCLIP, duplicated: Path, tmp_path) -> None:
    index_file = tmp_path / "photos.npz"
    EmbeddingIndex.build(demo_model, duplicated, recursive=True, progress=False).save(index_file)
    aside = tmp_path / "d"
    code, out, _ = run_cli("dedup", index_file, "--threshold", "0.99", "--move-to", aside)
    assert code == 0 and "dry run" in out and not aside.exists()
    move = ("dedup", index_file, "--threshold", "0.99", "--move-to", aside, "--apply")
    code, _, err = run_cli(*move)  # no --folder: the index's own root is not trusted
    assert code == 2 and "--apply needs --folder" in err and not aside.exists()
    other = tmp_path / "other"
    other.mkdir()
    code, _, err = run_cli(*move, "--folder", other)
    assert code == 2 and "--folder: expected the folder the index was built from" in err
    assert str(duplicated) in err and str(other) in err and not aside.exists()
    code, out, _ = run_cli(*move, "--folder", duplicated, "--json")
    assert code == 0, out
    data = json.loads(out)
    assert any(g["keep"] == "old.png" for g in data["groups"])
    assert all(m["outcome"] == "moved" for m in data["moves"])
    assert (aside / "big.png").is_file() and (duplicated / "old.png").is_file()
    assert run_cli("dedup", index_file, "--apply")[0] == 2
    code, out, _ = run_cli(*move, "--folder", duplicated)  # again: every row says why not
    assert code == 3 and out.count(": skipped: ") == 2 and "moved 0 of 2" in out


def test_search_and_dedup_read_a_labelled_dataset_without_embedding(tmp_path: Path) -> None:
    synthetic.write_folder(tmp_path / "in", 24, seed=6)
    classes = ["-c", "red circle", "-c", "blue square"]
    code, _, _ = run_cli("label", "-m", "demo", tmp_path / "in", tmp_path / "out", *classes)
    assert code == 0
    code, out, _ = run_cli(
        "search", tmp_path / "out", "a photo of a red circle", "-k", "2", "--json"
    )
    assert code == 0 and all("red_circle" in hit["path"] for hit in json.loads(out))
    code, out, _ = run_cli("dedup", tmp_path / "out", "--threshold", "0.9999")
    assert code == 0 and out.strip() == "no near-duplicates"

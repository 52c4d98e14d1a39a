"""The index file: plain numpy arrays, written atomically to exactly the path given, read back
memory-mapped with its IVF index, and refused with a reason when it is not whole."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from autodistill_metaclip import EmbeddingIndex, MetaCLIP, synthetic
from autodistill_metaclip.index import neighbours
from tests.helpers import clustered


@pytest.fixture(scope="module")
def saved(demo_model: MetaCLIP, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of six images and one unreadable file, saved."""
    root = tmp_path_factory.mktemp("storage")
    synthetic.write_folder(root / "photos", 6, suffix=".png")
    (root / "photos" / "broken.png").write_bytes(b"nope")
    return EmbeddingIndex.build(demo_model, root / "photos", progress=False).save(root / "i.npz")


def test_a_small_index_is_plain_numpy_and_reads_back_whole(saved: Path, demo_model) -> None:
    with np.load(saved, allow_pickle=False) as plain:  # any numpy reads it, nothing pickled
        assert sorted(plain.files) == ["embeddings", "meta", "paths", "stamps"]
        meta = json.loads(str(plain["meta"][()]))
        assert meta["format"] == 2 and meta["root"] == str(saved.parent / "photos")
        assert list(meta["failed"]) == ["broken.png"]
        assert plain["embeddings"].shape == (6, 64) and plain["embeddings"].dtype == np.float32
        keys, vectors = plain["paths"].tolist(), plain["embeddings"]
    loaded = EmbeddingIndex.load(saved, demo_model)
    assert loaded.keys == keys == sorted(p.name for p in (saved.parent / "photos").glob("0*.png"))
    np.testing.assert_array_equal(loaded.embeddings, vectors)
    assert list(loaded.failed) == ["broken.png"] and loaded.root == meta["root"]
    np.testing.assert_allclose(loaded.embeddings, demo_model.embed_image(loaded.paths), atol=1e-5)


def test_a_saved_index_is_memory_mapped_and_keeps_its_ivf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(neighbours, "EXACT_LIMIT", 500)
    vectors = clustered(3000, seed=5)
    keys = [f"{n}.png" for n in range(len(vectors))]
    index = EmbeddingIndex("photos", keys, vectors, ["1:1"] * len(keys), {"checkpoint": "x"})
    path = index.save(tmp_path / "photos.npz")
    with np.load(path) as data:
        assert "ann" in data.files and json.loads(str(data["meta"][()]))["format"] == 3

    def no_training(*args, **kwargs):
        raise AssertionError("an IVF index was built again instead of read back")

    monkeypatch.setattr(faiss, "IndexIVFScalarQuantizer", no_training)
    loaded = EmbeddingIndex.load(path)
    assert isinstance(loaded.embeddings, np.memmap)
    np.testing.assert_array_equal(loaded.embeddings, vectors)
    assert loaded.neighbours.approximate
    _, ids = loaded.neighbours.search(vectors[:5], 1)  # through the IVF index read back
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:200]), "not a readable embedding index"),
        (lambda p: p.write_bytes(b""), "not a readable embedding index"),
        (lambda p: _rewrite(p, meta=np.array(json.dumps([1, 2]))), "not a JSON object"),
        (lambda p: _rewrite(p, meta=np.array('{"format": 2, "root": 3}')), "lacks a root"),
        (lambda p: _rewrite(p, paths=np.array(["a.png"])), "1 paths, 6 embeddings"),
        (lambda p: _rewrite(p, embeddings=np.full((6, 64), np.nan, np.float32)), "not finite"),
        (lambda p: _rewrite(p, embeddings=np.array(["x"] * 6)), "type <U1"),
        (lambda p: _rewrite(p, meta=np.array('{"format": 7}')), "format 7"),
        (lambda p: _rewrite(p, ann=np.zeros(64, np.uint8)), "IVF index cannot be read"),
    ],
)
def test_every_malformed_index_is_a_value_error(demo_model, tmp_path, damage, match) -> None:
    synthetic.write_folder(tmp_path / "photos", 6, suffix=".png")
    path = EmbeddingIndex.build(demo_model, tmp_path / "photos", progress=False).save(
        tmp_path / "i.npz"
    )
    damage(path)
    with pytest.raises(ValueError, match=match):
        EmbeddingIndex.load(path)


def _rewrite(path: Path, **replaced: np.ndarray) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    np.savez(path, **{**arrays, **replaced})

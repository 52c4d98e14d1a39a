"""The index file: a store segment of plain numpy arrays (no pickle, no faiss bytes), written
atomically to exactly the path given, read back memory-mapped with its IVF index built again
from checked arrays, and refused with a reason at load when anything in it is not whole."""

from __future__ import annotations

import json
import zipfile
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


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _rewrite(path: Path, **replaced: np.ndarray) -> None:
    np.savez(path, **{**_arrays(path), **replaced})


def test_a_small_index_is_plain_numpy_and_reads_back_whole(saved: Path, demo_model) -> None:
    arrays = _arrays(saved)  # any numpy reads it, nothing pickled
    assert sorted(arrays) == [
        "key_ends", "keys", "meta", "sha256", "stamp_ends", "stamps", "vectors",
    ]  # fmt: skip
    meta = json.loads(str(arrays["meta"][()]))
    assert meta["index"] == 4 and meta["root"] == str(saved.parent / "photos")
    assert list(meta["failed"]) == ["broken.png"]
    assert arrays["vectors"].shape == (6, 64) and arrays["vectors"].dtype == np.float32
    loaded = EmbeddingIndex.load(saved, demo_model)
    assert loaded.keys == sorted(p.name for p in (saved.parent / "photos").glob("0*.png"))
    np.testing.assert_array_equal(loaded.embeddings, arrays["vectors"])
    assert list(loaded.failed) == ["broken.png"] and loaded.root == meta["root"]
    np.testing.assert_allclose(loaded.embeddings, demo_model.embed_image(loaded.paths), atol=1e-5)


def test_an_index_of_0_2_still_loads_and_its_faiss_bytes_are_never_read(
    saved: Path, tmp_path: Path
) -> None:
    index = EmbeddingIndex.load(saved)
    meta = {"format": 3, "root": index.root, "model": index.model_info, "failed": {}}
    earlier = tmp_path / "earlier.npz"
    np.savez(earlier, paths=np.array(index.keys), embeddings=np.asarray(index.embeddings),
             stamps=np.array(index.stamps), meta=np.array(json.dumps(meta)),
             ann=np.full(1 << 16, 255, np.uint8))  # fmt: skip  # garbage faiss would choke on
    loaded = EmbeddingIndex.load(earlier)
    assert loaded.keys == index.keys and loaded.neighbours.parts() is None


def test_a_saved_index_is_memory_mapped_and_keeps_its_ivf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(neighbours, "EXACT_LIMIT", 500)
    vectors = clustered(3000, seed=5)
    keys = [f"{n}.png" for n in range(len(vectors))]
    index = EmbeddingIndex("photos", keys, vectors, ["1:1"] * len(keys), {"checkpoint": "x"})
    _, before = index.neighbours.search(vectors[:50], 10)
    path = index.save(tmp_path / "photos.npz")
    assert {"ivf_centroids", "ivf_assignment", "ivf_trained"} <= set(_arrays(path))

    def no_training(*args, **kwargs):
        raise AssertionError("the IVF index was trained again instead of rebuilt from its parts")

    monkeypatch.setattr(faiss.IndexIVFScalarQuantizer, "train", no_training)
    loaded = EmbeddingIndex.load(path)
    assert isinstance(loaded.embeddings, np.memmap) and loaded.embeddings.ctypes.data % 64 == 0
    np.testing.assert_array_equal(loaded.embeddings, vectors)
    _, after = loaded.neighbours.search(vectors[:50], 10)
    assert np.array_equal(before, after)  # the same index, so the same candidates


@pytest.fixture
def big(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A saved index large enough to keep an IVF index (the limit lowered to 500)."""
    monkeypatch.setattr(neighbours, "EXACT_LIMIT", 500)
    vectors = clustered(2000, seed=8)
    keys = [f"{n}.png" for n in range(len(vectors))]
    index = EmbeddingIndex("photos", keys, vectors, ["1:1"] * len(keys), {"checkpoint": "x"})
    return index.save(tmp_path / "big.npz")


def _flip_a_vector_byte(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("vectors.npy")
    data = bytearray(path.read_bytes())
    data[info.header_offset + 200] ^= 0x01  # inside the vectors (after both headers)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:200]), "not a readable"),
        (lambda p: p.write_bytes(b""), "not a readable"),
        (lambda p: _rewrite(p, meta=np.array(json.dumps([1, 2]))), "not a readable|malformed"),
        (lambda p: _rewrite(p, keys=np.frombuffer(b"x", np.uint8)), "not a readable"),
        (lambda p: _rewrite(p, vectors=_arrays(p)["vectors"][:3]), "not a consistent"),
        (lambda p: _rewrite(p, vectors=np.full((2000, 64), np.nan, np.float32)), "not finite"),
        (lambda p: _rewrite(p, vectors=_arrays(p)["vectors"] * 10), "not unit vectors"),
        (_flip_a_vector_byte, "checksum"),
        (lambda p: _rewrite(p, vectors=np.array(["x"] * 2000)), "not a consistent"),
        # the IVF arrays: every field faiss would not cross-check
        (lambda p: _rewrite(p, ivf_centroids=np.zeros((10, 128), np.float32)), "centres"),
        (lambda p: _rewrite(p, ivf_centroids=np.zeros((5000, 64), np.float32)), "centres"),
        (lambda p: _rewrite(p, ivf_assignment=np.full(2000, 10**9, np.int64)), "cells are not"),
        (lambda p: _rewrite(p, ivf_assignment=np.zeros(2000, np.int64)), "nearest centres"),
        (
            lambda p: _rewrite(
                p, ivf_assignment=np.random.default_rng(0).permutation(_arrays(p)["ivf_assignment"])
            ),
            "nearest centres",
        ),
        (
            lambda p: _rewrite(
                p,
                ivf_centroids=np.random.default_rng(0)
                .standard_normal(_arrays(p)["ivf_centroids"].shape)
                .astype(np.float32),
            ),
            "nearest centres",
        ),
        (lambda p: _rewrite(p, ivf_trained=np.full(128, np.inf, np.float32)), "not finite"),
        (lambda p: _rewrite(p, ivf_assignment=_arrays(p)["ivf_assignment"][:5]), "do not fit"),
        (
            lambda p: np.savez(p, **{k: v for k, v in _arrays(p).items() if k != "ivf_trained"}),
            "incomplete",
        ),
    ],
)
def test_every_malformed_index_is_a_value_error_at_load(big: Path, damage, match) -> None:
    damage(big)
    with pytest.raises(ValueError, match=match):
        EmbeddingIndex.load(big)

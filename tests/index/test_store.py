"""The embedding store: appended segments, found by key and stamp, memory-mapped, compacted,
safe against a killed write, refusing another model's embeddings."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from autodistill_metaclip import MetaCLIP
from autodistill_metaclip.index.store import (
    EmbeddingStore,
    identity_name,
    model_identity,
    same_identity,
)

IDENTITY = {
    "checkpoint": "demo", "architecture": "metaclip-demo", "weights": "w.safetensors",
    "precision": "fp32", "draft_decoding": False, "dim": 8,
    "probe_text": [1.0, 0, 0, 0, 0, 0, 0, 0], "probe_image": [0, 1.0, 0, 0, 0, 0, 0, 0],
}  # fmt: skip


def _rows(n: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _add(store: EmbeddingStore, keys: list[str], stamp: str = "1:1", seed: int = 0) -> np.ndarray:
    vectors = _rows(len(keys), seed)
    store.append(keys, [stamp] * len(keys), [_digest(k) for k in keys], vectors)
    return vectors


def test_rows_are_found_by_key_and_stamp_and_read_back(tmp_path: Path) -> None:
    store = EmbeddingStore.open(tmp_path / "s", IDENTITY)
    first = _add(store, ["a.png", "b.png"])
    again = _add(store, ["a.png"], stamp="2:2", seed=1)  # a.png changed: a new row
    opened = EmbeddingStore.open(tmp_path / "s")
    assert opened.find("a.png", "2:2") == 2 and opened.find("a.png", "1:1") == -1
    assert opened.find("b.png", "1:1") == 1 and opened.find("c.png", "1:1") == -1
    np.testing.assert_array_equal(opened.vectors[2], again[0])
    np.testing.assert_array_equal(opened.vectors[1], first[1])
    assert bytes(opened.digests[1]) == _digest("b.png")
    assert opened.latest().tolist() == [2, 1]  # a.png, b.png: the latest row of each key


def test_compaction_keeps_the_latest_rows_in_key_order_memory_mapped(tmp_path: Path) -> None:
    store = EmbeddingStore.open(tmp_path / "s", IDENTITY)
    _add(store, ["c.png", "a.png"])
    later = _add(store, ["a.png", "b.png"], stamp="2:2", seed=3)
    store.compact(keep={"a.png", "b.png"})  # c.png is gone from the folder
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "segment-000002.npz",
        "store.json",
    ]
    opened = EmbeddingStore.open(tmp_path / "s")
    assert opened.keys == ["a.png", "b.png"] and opened.stamps == ["2:2", "2:2"]
    assert isinstance(opened.vectors, np.memmap) and opened.vectors.ctypes.data % 64 == 0
    np.testing.assert_array_equal(np.asarray(opened.vectors), later)


def test_a_killed_write_or_compaction_loses_at_most_that_segment(tmp_path: Path) -> None:
    store = EmbeddingStore.open(tmp_path / "s", IDENTITY)
    _add(store, ["a.png"])
    # a write killed before its rename leaves a temporary file: ignored, then removed
    (tmp_path / "s" / ".partial-0123456789abcdef-segment-000001.npz").write_bytes(b"half")
    # a compaction killed after writing its segment, before removing the ones it replaces
    _add(store, ["b.png"], seed=1)
    store.compact()
    replaced = tmp_path / "s" / "segment-000000.npz"
    compacted = EmbeddingStore.open(tmp_path / "s")
    assert not replaced.exists()
    (tmp_path / "s" / "segment-000000.npz").write_bytes(
        (tmp_path / "s" / "segment-000002.npz").read_bytes()
    )  # as if it had not been removed yet: it is named in the compacted segment's "replaces"
    reopened = EmbeddingStore.open(tmp_path / "s")
    assert reopened.keys == compacted.keys == ["a.png", "b.png"]
    assert not replaced.exists() and not list((tmp_path / "s").glob(".partial-*"))


def test_another_model_is_refused_and_gets_another_folder(tmp_path: Path) -> None:
    EmbeddingStore.open(tmp_path / "s", IDENTITY)
    other = {**IDENTITY, "probe_image": [0, 0, 1.0, 0, 0, 0, 0, 0]}  # same names, other weights
    with pytest.raises(ValueError, match="embeddings of another model"):
        EmbeddingStore.open(tmp_path / "s", other)
    assert not same_identity(IDENTITY, other)
    assert same_identity(IDENTITY, {**IDENTITY, "probe_text": [1.0, 1e-6, 0, 0, 0, 0, 0, 0]})
    for change in ({"precision": "bf16"}, {"draft_decoding": True}, {"weights": "other"}):
        assert not same_identity(IDENTITY, {**IDENTITY, **change})
        assert identity_name({**IDENTITY, **change}) != identity_name(IDENTITY)
    assert identity_name(IDENTITY, {"input_folder": "/a"}) != identity_name(
        IDENTITY, {"input_folder": "/b"}
    )
    # the paths a model was built from do not count, only what they hold
    assert identity_name({**IDENTITY, "spec": {"weights": "/x/w"}}) == identity_name(IDENTITY)


def test_a_damaged_segment_is_a_clear_error(tmp_path: Path) -> None:
    store = EmbeddingStore.open(tmp_path / "s", IDENTITY)
    _add(store, ["a.png", "b.png"])
    segment = tmp_path / "s" / "segment-000000.npz"
    segment.write_bytes(segment.read_bytes()[:200])
    with pytest.raises(
        ValueError, match=r"segment-000000\.npz.* not a readable file of embeddings"
    ):
        EmbeddingStore.open(tmp_path / "s")
    with pytest.raises(ValueError, match="holds no embedding store"):
        EmbeddingStore.open(tmp_path / "nothing")


def test_the_identity_tells_models_and_options_apart(demo_model: MetaCLIP) -> None:
    identity = model_identity(demo_model)
    assert identity["checkpoint"] == "demo" and identity["dim"] == 64
    assert same_identity(identity, model_identity(MetaCLIP(None, checkpoint="demo")))
    draft = model_identity(MetaCLIP(None, checkpoint="demo", draft_decoding=True))
    assert not same_identity(identity, draft)


def test_leaders_are_kept_and_only_new_rows_placed(tmp_path: Path) -> None:
    store = EmbeddingStore.open(tmp_path / "s", IDENTITY)
    base = _rows(1)[0]
    near = base + 0.01 * _rows(1, seed=5)[0]
    keys = ["a.png", "b.png", "c.png"]
    vectors = np.stack([base, near / np.linalg.norm(near), _rows(1, seed=9)[0]])
    store.append(keys, ["1:1"] * 3, [_digest(k) for k in keys], vectors)
    assert store.leaders(np.arange(3), 0.99).tolist() == [0, 0, 2]
    # a copy of a.png arrives: it joins a.png's group; the others keep theirs
    store.append(["d.png"], ["1:1"], [_digest("a.png")], base[None])
    reopened = EmbeddingStore.open(tmp_path / "s")
    assert reopened.leaders(np.arange(4), 0.99).tolist() == [0, 0, 2, 0]
    # a.png is gone: its group is placed again, the first of its members leading
    assert reopened.leaders(np.array([1, 2, 3]), 0.99).tolist() == [1, 2, 1]

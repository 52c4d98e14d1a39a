"""One segment file: numpy reads it without us, its vectors are memory-mapped and aligned, and
damaged bytes or rows are refused at read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from autodistill_metaclip.index.segments import read_segment, write_segment

KEYS = ["a.png", "sub/ü b.jpg", "c.webp"]


def _unit_rows(n: int) -> np.ndarray:
    vectors = np.random.default_rng(0).standard_normal((n, 16)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _write(path: Path, vectors: np.ndarray) -> None:
    digests = [hashlib.sha256(k.encode()).digest() for k in KEYS]
    write_segment(
        path, KEYS, ["1:2", "3:4", "5:6"], digests, [vectors[:2], vectors[2:]],
        extra={"labels": np.array([1, 0, 1])}, meta={"note": "kept"},
    )  # fmt: skip


def test_a_segment_is_plain_numpy_and_reads_back_memory_mapped(tmp_path: Path) -> None:
    vectors = _unit_rows(3)
    _write(tmp_path / "s.npz", vectors)
    with np.load(tmp_path / "s.npz", allow_pickle=False) as plain:  # any numpy reads it
        np.testing.assert_array_equal(plain["vectors"], vectors)
        assert json.loads(str(plain["meta"][()]))["rows"] == 3
    read = read_segment(tmp_path / "s.npz", dim=16, extra=["labels"])
    assert read.keys == KEYS and read.stamps == ["1:2", "3:4", "5:6"]
    assert bytes(read.digests[1]) == hashlib.sha256(KEYS[1].encode()).digest()
    assert isinstance(read.vectors, np.memmap) and read.vectors.offset % 64 == 0
    np.testing.assert_array_equal(read.vectors, vectors)
    assert read.extra["labels"].tolist() == [1, 0, 1] and read.meta["note"] == "kept"
    with pytest.raises(ValueError, match="not a consistent file"):
        read_segment(tmp_path / "s.npz", dim=32)


@pytest.mark.parametrize(
    ("vectors", "problem"),
    [
        (_unit_rows(3) * 10, "not unit vectors"),
        (np.full((3, 16), np.nan, np.float32), "not finite"),
    ],
)
def test_rows_that_would_give_wrong_cosines_are_refused(
    tmp_path: Path, vectors: np.ndarray, problem: str
) -> None:
    _write(tmp_path / "s.npz", vectors)
    with pytest.raises(ValueError, match=f"s\\.npz.* holds damaged embeddings: .*{problem}"):
        read_segment(tmp_path / "s.npz")


def test_a_flipped_byte_in_the_vectors_is_caught_by_the_checksum(tmp_path: Path) -> None:
    vectors = _unit_rows(3)
    _write(tmp_path / "s.npz", vectors)
    read = read_segment(tmp_path / "s.npz")
    start = read.vectors.offset + 4 * 16  # the first float of the second row
    del read
    data = bytearray((tmp_path / "s.npz").read_bytes())
    data[start] ^= 0x01  # the lowest mantissa bit: still a unit vector within 1e-3
    (tmp_path / "s.npz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not the ones written"):
        read_segment(tmp_path / "s.npz")

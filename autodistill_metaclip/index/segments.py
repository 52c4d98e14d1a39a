"""One segment file: embeddings under their keys, stamps and SHA-256, written and read back.

A segment is an uncompressed ``.npz`` (numpy's zip of ``.npy`` members, nothing pickled): the
vectors ``(n, D)`` float32 with their data aligned to 64 bytes (memory-mapped on read), the keys
and stamps as UTF-8 bytes plus end offsets, ``sha256`` ``(n, 32)`` and ``meta`` (JSON: format,
rows, the CRC-32 of the vectors, the segments it replaces). The store
(:mod:`autodistill_metaclip.index.store`) is a folder of them; an index file is one too, with its
search structure as extra arrays (:mod:`autodistill_metaclip.index.storage`).
"""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from autodistill_metaclip.inputs.files import atomic_write, open_file

FORMAT = "autodistill-metaclip embeddings 1"
MAX_SEGMENT_BYTES = 64 << 30
"""Largest segment read (32 million ViT-B/32 embeddings)."""
CHUNK_ROWS = 65_536


def write_segment(
    path: Path,
    keys: Sequence[str],
    stamps: Sequence[str],
    digests: Sequence[bytes] | np.ndarray,
    vector_chunks: Iterable[np.ndarray],
    *,
    replaces: Sequence[str] = (),
    extra: dict[str, np.ndarray] | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write one segment file atomically, streaming the vectors chunk by chunk; ``extra``
    arrays and ``meta`` fields are kept beside them (an index file is a segment so)."""
    key_bytes, key_ends = pack(keys)
    stamp_bytes, stamp_ends = pack(stamps)
    arrays = {
        "keys": key_bytes,
        "key_ends": key_ends,
        "stamps": stamp_bytes,
        "stamp_ends": stamp_ends,
        "sha256": digest_array(digests),
        **(extra or {}),
    }
    crc = [0]

    def summed(chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for chunk in chunks:
            chunk = np.ascontiguousarray(chunk, np.float32)
            crc[0] = zlib.crc32(chunk.data, crc[0])
            yield chunk

    with atomic_write(path) as file, zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
        with archive.open("vectors.npy", "w", force_zip64=True) as member:
            _stream_array(member, file.tell(), summed(vector_chunks), len(keys))
        info = {**(meta or {}), "format": FORMAT, "rows": len(keys), "replaces": list(replaces),
                "crc32": crc[0]}  # fmt: skip
        with archive.open("meta.npy", "w") as member:
            np.lib.format.write_array(member, np.array(json.dumps(info)), allow_pickle=False)


def _stream_array(member: IO[bytes], start: int, chunks: Iterable[np.ndarray], rows: int) -> None:
    """Write ``(rows, D)`` float32 as one ``.npy`` from chunks of rows, its data aligned to 64
    bytes in the file (``start``: where the member begins), as numpy and Arrow readers of a
    memory map want it."""
    written = 0
    for chunk in chunks:
        chunk = np.ascontiguousarray(chunk, np.float32)
        if not written and not len(chunk):
            continue
        if not written:
            _aligned_header(member, start, (rows, chunk.shape[1]))
        member.write(chunk.tobytes())
        written += len(chunk)
    if not written:
        _aligned_header(member, start, (0, 0))
    if written != rows:
        raise ValueError(f"store: {written} vectors written for {rows} rows")


def _aligned_header(member: IO[bytes], start: int, shape: tuple[int, int]) -> None:
    """A version 2 ``.npy`` header of little-endian float32 ``shape``, padded with spaces so
    the data after it begins at a multiple of 64 bytes from the start of the file."""
    text = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode("latin1")
    fixed = len(np.lib.format.MAGIC_PREFIX) + 2 + 4  # magic, version, header length
    padding = -(start + fixed + len(text) + 1) % 64
    text += b" " * padding + b"\n"
    member.write(np.lib.format.MAGIC_PREFIX + bytes([2, 0]) + struct.pack("<I", len(text)) + text)


@dataclass(frozen=True)
class Segment:
    """One segment file read back and checked (:func:`read_segment`)."""

    meta: dict[str, Any]
    keys: list[str]
    stamps: list[str]
    digests: np.ndarray  # (rows, 32) uint8
    vectors: np.ndarray  # (rows, D) float32, memory-mapped
    extra: dict[str, np.ndarray]  # the other arrays asked for


def read_segment(
    path: Path, *, dim: int | None = None, extra: Sequence[str] = (), name: str = "store"
) -> Segment:
    """Read and check a segment file: its parts agree, its vectors are ``dim`` wide (if
    given), their bytes have the checksum the writer recorded, and they are finite unit
    vectors (:func:`check_vectors`); ``extra`` arrays are read too, when present.

    Raises:
        ValueError: Naming ``name`` (the argument the file came from), the file and what is
            wrong with it.
    """
    file = open_file(path, MAX_SEGMENT_BYTES, name)
    try:
        with file, np.load(file, allow_pickle=False) as arrays:
            meta = json.loads(str(arrays["meta"][()]))
            keys = unpack(arrays["keys"], arrays["key_ends"])
            stamps = unpack(arrays["stamps"], arrays["stamp_ends"])
            digests = np.asarray(arrays["sha256"], np.uint8)
            vectors = memory_map(path, arrays.zip.getinfo("vectors.npy"))
            extras = {n: arrays[n] for n in extra if n in arrays.files}
    except Exception as e:  # zip, npy, JSON and key errors all mean: not a segment
        raise ValueError(
            f"{name}: {str(path)!r} is not a readable file of embeddings ({e})"
        ) from None
    rows = meta.get("rows") if isinstance(meta, dict) else None
    wide = vectors is not None and vectors.ndim == 2 and (dim is None or vectors.shape[1] == dim)
    if not (wide and vectors is not None and vectors.dtype == np.float32 and len(vectors) == rows
            and len(keys) == len(stamps) == rows and digests.size == 32 * rows):  # fmt: skip
        raise ValueError(f"{name}: {str(path)!r} is not a consistent file of embeddings")
    if not isinstance(meta.get("replaces"), list) or not isinstance(meta.get("crc32"), int):
        raise ValueError(f"{name}: {str(path)!r} has malformed metadata")
    assert vectors is not None  # checked above
    problem = check_vectors(vectors, meta["crc32"])
    if problem:
        raise ValueError(f"{name}: {str(path)!r} holds damaged embeddings: {problem}")
    return Segment(meta, keys, stamps, digests.reshape(-1, 32), vectors, extras)


def check_vectors(vectors: np.ndarray, crc32: int | None) -> str:
    """What is wrong with stored embeddings, or ``""``: bytes that are not the ones written
    (``crc32``, if recorded), values that are not finite, rows that are not unit vectors
    (within 1e-3; a flipped byte or scaled rows would give wrong cosines). Read once, in
    chunks."""
    crc = 0
    for start in range(0, len(vectors), CHUNK_ROWS):
        chunk = np.ascontiguousarray(vectors[start : start + CHUNK_ROWS])
        crc = zlib.crc32(chunk.data, crc)
        if not np.isfinite(chunk).all():
            return "some values are not finite (NaN or infinite)"
        norms = np.linalg.norm(chunk, axis=1)
        if len(norms) and float(np.abs(norms - 1).max()) > 1e-3:
            return "some rows are not unit vectors"
    if crc32 is not None and crc != crc32:
        return "their bytes are not the ones written (checksum)"
    return ""


def memory_map(path: Path, info: zipfile.ZipInfo) -> np.ndarray | None:
    """A read-only memory map of the uncompressed 2-d ``.npy`` member ``info`` of the ``.npz``
    at ``path``; ``None`` if it is compressed or not a plain 2-d array."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as file:
        file.seek(info.header_offset)
        header = file.read(30)
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        file.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(file)
        fmt = np.lib.format
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read(file)
        offset = file.tell()
    if dtype.hasobject or fortran or len(shape) != 2:
        return None
    if shape[0] * shape[1] == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def pack(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings as one UTF-8 byte array and the end offset of each."""
    encoded = [s.encode("utf-8") for s in strings]
    ends = np.cumsum([len(b) for b in encoded], dtype=np.int64)
    return np.frombuffer(b"".join(encoded), np.uint8), ends


def unpack(blob: np.ndarray, ends: np.ndarray) -> list[str]:
    data = np.asarray(blob, np.uint8).tobytes()
    bounds = np.asarray(ends, np.int64)
    if len(bounds) and (bounds[-1] != len(data) or np.any(np.diff(bounds) < 0) or bounds[0] < 0):
        raise ValueError("string offsets do not fit the bytes")
    starts = np.concatenate([[0], bounds[:-1]]) if len(bounds) else bounds
    return [
        data[a:b].decode("utf-8") for a, b in zip(starts.tolist(), bounds.tolist(), strict=True)
    ]


def digest_array(digests: Sequence[bytes] | np.ndarray) -> np.ndarray:
    if isinstance(digests, np.ndarray):
        return np.asarray(digests, np.uint8).reshape(-1, 32)
    if any(len(d) != 32 for d in digests):
        raise ValueError("store: a SHA-256 digest is 32 bytes")
    return np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 32).copy()

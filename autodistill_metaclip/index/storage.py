"""The index file: one ``.npz`` of plain numpy arrays (no pickle), written atomically.

Members: ``paths`` (keys), ``embeddings`` (stored uncompressed, so they are memory-mapped on
load), ``stamps``, ``meta`` (JSON: format, root, model, failed, options) and, above
:data:`~autodistill_metaclip.index.neighbours.EXACT_LIMIT` images, ``ann``: the serialised IVF
index. Formats 1 and 2 (no ``ann``) still load.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autodistill_metaclip.index.neighbours import Neighbours
from autodistill_metaclip.inputs.files import atomic_write, open_file

if TYPE_CHECKING:
    from autodistill_metaclip.index.core import EmbeddingIndex

FORMAT = 3  # 3: an optional "ann" member (the IVF index); 2: no "ann"; 1: "stats" for "stamps"
MAX_INDEX_BYTES = 64 << 30
"""Largest index file read (32 million ViT-B/32 embeddings)."""


@dataclass(frozen=True)
class IndexFile:
    """What an index file holds, checked."""

    meta: dict[str, Any]
    keys: list[str]
    embeddings: np.ndarray
    stamps: list[str]
    neighbours: Neighbours | None


def write_index(index: EmbeddingIndex, path: str | os.PathLike[str]) -> Path:
    """Write ``index`` to exactly ``path``, atomically; returns the path."""
    target = Path(path)
    ann = index.neighbours.serialised()
    meta = {
        "format": FORMAT if ann is not None else 2,  # 2: readable by earlier versions
        "root": index.root,
        "model": index.model_info,
        "failed": index.failed,
        "options": index.options,
    }
    arrays: dict[str, Any] = {
        "paths": np.array(index.keys, dtype=str),
        "embeddings": np.asarray(index.embeddings, np.float32),
        "stamps": np.array(index.stamps, dtype=str),
        "meta": np.array(json.dumps(meta)),
    }
    if ann is not None:
        arrays["ann"] = ann
    with atomic_write(target) as file:
        np.savez(file, **arrays)  # uncompressed: the embeddings can be memory-mapped
    return target


def read_index_file(path: str | os.PathLike[str]) -> IndexFile:
    """Read and check an index file.

    Raises:
        ValueError: The file is not a regular file, or not a whole, consistent index (each
            problem named: truncated, wrong types, counts that disagree, NaN vectors...).
    """
    shown = f"index: {os.fspath(path)!r}"
    file = open_file(path, MAX_INDEX_BYTES, "index")
    try:
        with file, np.load(file, allow_pickle=False) as arrays:
            meta = json.loads(str(arrays["meta"][()]))
            if not isinstance(meta, dict):
                raise ValueError("its metadata is not a JSON object")
            if meta.get("format") not in (1, 2, FORMAT):
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT}")
            if meta["format"] == 1:
                stamps = [f"{size}:{mtime}" for size, mtime in arrays["stats"].tolist()]
            else:
                stamps = [str(s) for s in arrays["stamps"]]
            keys = [str(k) for k in arrays["paths"]]
            ann = arrays["ann"] if "ann" in arrays.files else None
            mapped = _memory_map(file, arrays.zip.getinfo("embeddings.npy"))
            embeddings = mapped if mapped is not None else arrays["embeddings"]
    except Exception as e:  # zip, npy, JSON and key errors all mean: not an index
        raise ValueError(f"{shown} is not a readable embedding index ({e})") from None
    problem = _inconsistency(meta, keys, embeddings, stamps)
    neighbours = None
    if not problem:
        embeddings = embeddings.astype(np.float32, copy=False)
        try:  # the saved IVF index, read once and kept for searches
            neighbours = None if ann is None else Neighbours(embeddings, ann)
        except ValueError as e:
            problem = str(e)
    if problem:
        raise ValueError(f"{shown} is not a valid embedding index: {problem}")
    return IndexFile(meta, keys, embeddings, stamps, neighbours)


def _inconsistency(
    meta: dict[str, Any], keys: list[str], embeddings: np.ndarray, stamps: list[str]
) -> str:
    """What is wrong with an index read back, or ``""``."""
    if not isinstance(meta.get("root"), str) or not isinstance(meta.get("model"), dict):
        return "its metadata lacks a root folder or model"
    if not isinstance(meta.get("failed", {}), dict):
        return "its list of failed files is not an object"
    if not isinstance(meta.get("options") or {}, dict):
        return "its options are not an object"
    if embeddings.ndim != 2 or embeddings.dtype.kind != "f":
        return f"embeddings of shape {embeddings.shape} and type {embeddings.dtype}"
    if not len(keys) == len(embeddings) == len(stamps):
        return f"{len(keys)} paths, {len(embeddings)} embeddings and {len(stamps)} stamps"
    if len(set(keys)) != len(keys):
        return "a path is listed twice"
    if not all(
        np.isfinite(embeddings[s : s + 65536]).all() for s in range(0, len(embeddings), 65536)
    ):
        return "some embeddings are not finite (NaN or infinite)"
    return ""


def _memory_map(file: Any, info: zipfile.ZipInfo) -> np.ndarray | None:
    """A read-only memory map of the uncompressed ``.npy`` member ``info`` of the open ``.npz``
    ``file`` (``np.savez`` stores them so), or ``None`` if it is compressed."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    file.seek(info.header_offset)
    header = file.read(30)
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    file.seek(info.header_offset + 30 + name_length + extra_length)
    version = np.lib.format.read_magic(file)
    fmt = np.lib.format
    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read_header(file)
    if dtype.hasobject or fortran or len(shape) != 2:
        return None
    return np.memmap(file, dtype=dtype, mode="r", offset=file.tell(), shape=shape)

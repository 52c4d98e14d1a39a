"""The index file: one ``.npz`` of plain numpy arrays (no pickle), written atomically.

Format 4 is a store segment (:func:`~autodistill_metaclip.index.segments.write_segment`: keys,
stamps, the embeddings uncompressed and aligned, so they are memory-mapped on load, and their
checksum) with the index's metadata (root, model, failed files, listing options) and, above
:data:`~autodistill_metaclip.index.neighbours.EXACT_LIMIT` images, its IVF index as plain arrays
(:class:`~autodistill_metaclip.index.neighbours.IVFParts`: centres, cells, quantiser), checked
and built again on load: faiss's own serialised bytes are never read. Formats 1-3 (0.2.x) still
load; a format 3 file's serialised IVF index is ignored (built again when first searched).

Every check runs at load, so a damaged file is a ``ValueError`` there, never later: the parts
agree, the embeddings are the bytes written (checksum), finite and unit vectors, and the IVF
arrays fit them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autodistill_metaclip.index.neighbours import IVFParts, Neighbours
from autodistill_metaclip.index.segments import (
    check_vectors,
    memory_map,
    read_segment,
    write_segment,
)
from autodistill_metaclip.inputs.files import open_file

if TYPE_CHECKING:
    from autodistill_metaclip.index.core import EmbeddingIndex

FORMAT = 4  # 4: a store segment + IVF arrays; 3: faiss bytes ("ann"); 2: none; 1: "stats"
MAX_INDEX_BYTES = 64 << 30
"""Largest index file read (32 million ViT-B/32 embeddings)."""
_IVF = ("ivf_centroids", "ivf_assignment", "ivf_trained")
logger = logging.getLogger(__name__)


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
    parts = index.neighbours.parts()
    extra = {} if parts is None else dict(zip(_IVF, (parts.centroids, parts.assignment,
                                                      parts.trained), strict=True))  # fmt: skip
    meta = {"index": 4, "root": index.root, "model": index.model_info, "failed": index.failed,
            "options": index.options}  # fmt: skip
    rows = len(index.keys)
    write_segment(
        target, index.keys, index.stamps, np.zeros((rows, 32), np.uint8),
        (index.embeddings[s : s + 65_536] for s in range(0, rows, 65_536)),
        extra=extra, meta=meta,
    )  # fmt: skip
    return target


def read_index_file(path: str | os.PathLike[str]) -> IndexFile:
    """Read and check an index file.

    Raises:
        ValueError: The file is not a regular file, or not a whole, consistent index (each
            problem named: truncated, wrong types, counts that disagree, damaged embeddings,
            IVF arrays that do not fit them...).
    """
    shown = f"index: {os.fspath(path)!r}"
    file = open_file(path, MAX_INDEX_BYTES, "index")
    try:
        with file, np.load(file, allow_pickle=False) as arrays:
            current = "key_ends" in arrays.files
    except Exception as e:  # not a zip of numpy arrays
        raise ValueError(f"{shown} is not a readable embedding index ({e})") from None
    if not current:
        return _read_earlier(path, shown)
    segment = read_segment(Path(path), extra=_IVF, name="index")
    meta = segment.meta
    problem = _inconsistency(meta, segment.keys)
    neighbours = None
    if not problem and len(segment.extra) == len(_IVF):
        centroids, assignment, trained = (segment.extra[n] for n in _IVF)
        try:
            neighbours = Neighbours(segment.vectors, IVFParts(centroids, assignment, trained))
        except ValueError as e:
            problem = str(e)
    elif not problem and segment.extra:
        problem = "its IVF arrays are incomplete"
    if problem:
        raise ValueError(f"{shown} is not a valid embedding index: {problem}")
    return IndexFile(meta, segment.keys, segment.vectors, segment.stamps, neighbours)


def _read_earlier(path: str | os.PathLike[str], shown: str) -> IndexFile:
    """An index saved by 0.2.x (formats 1-3): its serialised IVF index is not read."""
    file = open_file(path, MAX_INDEX_BYTES, "index")
    try:
        with file, np.load(file, allow_pickle=False) as arrays:
            meta = json.loads(str(arrays["meta"][()]))
            if not isinstance(meta, dict):
                raise ValueError("its metadata is not a JSON object")
            if meta.get("format") not in (1, 2, 3):
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT}")
            if meta["format"] == 1:
                stamps = [f"{size}:{mtime}" for size, mtime in arrays["stats"].tolist()]
            else:
                stamps = [str(s) for s in arrays["stamps"]]
            keys = [str(k) for k in arrays["paths"]]
            if "ann" in arrays.files:
                logger.info("%s: its saved IVF index is not read (built again if needed)", shown)
            mapped = memory_map(Path(path), arrays.zip.getinfo("embeddings.npy"))
            embeddings = mapped if mapped is not None else arrays["embeddings"]
    except Exception as e:  # zip, npy, JSON and key errors all mean: not an index
        raise ValueError(f"{shown} is not a readable embedding index ({e})") from None
    problem = _inconsistency(meta, keys)
    if not problem and (embeddings.ndim != 2 or embeddings.dtype != np.float32):
        problem = f"embeddings of shape {embeddings.shape} and type {embeddings.dtype}"
    if not problem and not len(keys) == len(embeddings) == len(stamps):
        problem = f"{len(keys)} paths, {len(embeddings)} embeddings and {len(stamps)} stamps"
    problem = problem or check_vectors(embeddings, None)
    if problem:
        raise ValueError(f"{shown} is not a valid embedding index: {problem}")
    return IndexFile(meta, keys, embeddings, stamps, None)


def _inconsistency(meta: dict[str, Any], keys: list[str]) -> str:
    """What is wrong with an index's metadata and keys read back, or ``""``."""
    if not isinstance(meta.get("root"), str) or not isinstance(meta.get("model"), dict):
        return "its metadata lacks a root folder or model"
    if not isinstance(meta.get("failed", {}), dict):
        return "its list of failed files is not an object"
    if not isinstance(meta.get("options") or {}, dict):
        return "its options are not an object"
    if len(set(keys)) != len(keys):
        return "a path is listed twice"
    return ""

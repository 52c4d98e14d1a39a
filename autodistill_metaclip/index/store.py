"""Embeddings kept once: an append-only folder of segments, per model identity.

Encoding images is the only expensive step of this package; everything else (classes, splits,
near-duplicate groups, the review page, search, dedup) is a cheap function of the embeddings. So
every readable image's embedding is kept here, under its **key and stamp** (the path relative
to the folder and its size and modification time, as listed by
:mod:`autodistill_metaclip.inputs.sources`), with the SHA-256 of the bytes that were embedded.

Why key + stamp rather than a content hash as the lookup key: knowing whether an image is
already embedded then costs one ``stat`` (a listing), never a read, so a no-op run over a million
files reads no image. The SHA-256 is kept too: a dataset copy is made only from bytes whose hash
is the one that was embedded.

Why numpy segments rather than Parquet/Arrow/Lance: numpy is the one format every tool of this
field reads without another dependency (``np.load``), a segment's vectors are memory-mapped (a
million ViT-B/32 embeddings open without a 2 GB copy), and nothing in it is pickled. Exports to
Parquet and LanceDB exist for the tools that want them
(:mod:`autodistill_metaclip.index.export`).

Layout of a store folder::

    store.json              the model identity (:func:`model_identity`) and the source
                            (where the images are listed from), written once
    segment-000000.npz      one append: vectors (n, D) float32, uncompressed (memory-mapped),
    segment-000001.npz      keys, stamps (UTF-8 bytes + offsets), sha256 (n, 32), meta (JSON)
    groups-2-0.980000.npz   near-duplicate leaders at a threshold, by key and stamp (a cache)

Each segment is written atomically (a temporary file, then one rename), so a kill loses at most
the segment being written. A later row of a key supersedes earlier ones; :meth:`compact`
rewrites the live rows into one segment (streamed: no copy of the vectors in memory) and then
removes the segments it replaces (its ``meta.replaces``; a kill in between is finished on the
next open). Several writers (Ray workers) may add segments under names of their own
(:meth:`segment_name`).

Example:
    >>> store = EmbeddingStore.open("photos.store", model_identity(model))  # doctest: +SKIP
    >>> store.append(["a.jpg"], ["1200:1700000000"], [digest], vectors)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import re
import secrets
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autodistill_metaclip.index.groups import gather, leaders
from autodistill_metaclip.index.segments import (
    CHUNK_ROWS,
    FORMAT,
    MAX_SEGMENT_BYTES,
    digest_array,
    pack,
    read_segment,
    unpack,
    write_segment,
)
from autodistill_metaclip.inputs.files import PARTIAL_PREFIX, atomic_write, open_file, read_file

DATASET_STORES = (".autodistill-metaclip", "embeddings")
"""Where ``label()`` keeps a dataset's stores: ``<dataset>/.autodistill-metaclip/embeddings/``,
one folder per model identity and input folder."""
STORE_FILE = "store.json"
_SEGMENT = re.compile(r"^segment-([0-9]{6})(?:-([0-9a-f]{16}))?\.npz$")
PROBE_TEXT = "autodistill-metaclip probe: a photo of a red circle"
GROUPING_RULE = 2
"""The version of :func:`~autodistill_metaclip.index.groups.leaders`' rule the kept groups were
made by (2: a near-copy stays with what it copies)."""
logger = logging.getLogger(__name__)
_IDENTITIES: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def model_identity(model: Any) -> dict[str, Any]:
    """What decides a model's embeddings: checkpoint, architecture, weights, precision, the
    decoding option, the dimension, and the embeddings of a fixed text and a fixed image
    (rounded), which tell apart weights that share a name. Computed once per model."""
    try:
        known = _IDENTITIES.get(model)
    except TypeError:  # a model that cannot be weakly referenced or hashed: not cached
        known = None
    if known is not None:
        return copy.deepcopy(known)
    from autodistill_metaclip.synthetic import make_image

    probe_image = make_image("red", "circle", seed=0)
    spec = model.spec
    identity = {
        **model.identity,
        "spec": {"checkpoint": spec.checkpoint, "weights": spec.weights},
        "precision": model.precision,
        "draft_decoding": bool(model.spec.draft_decoding),
        "dim": int(model.dim),
        "probe_text": [round(float(v), 4) for v in model.embed_text(PROBE_TEXT)],
        "probe_image": [round(float(v), 4) for v in model.embed_image(probe_image)],
    }
    with contextlib.suppress(TypeError):
        _IDENTITIES[model] = identity
    return copy.deepcopy(identity)


def identity_name(identity: dict[str, Any], source: dict[str, Any] | None = None) -> str:
    """A folder name for a store of this identity and source (the same, the same name; the
    paths the model was built from do not count, only what they hold)."""
    named = {k: v for k, v in identity.items() if k != "spec"}
    text = json.dumps([named, source], sort_keys=True, separators=(",", ":"))
    return f"{identity.get('checkpoint', 'model')}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class _Segment:
    number: int
    path: Path
    rows: int
    vectors: np.ndarray  # (rows, D), memory-mapped when stored uncompressed


class EmbeddingStore:
    """The embeddings of one model identity, by ``(key, stamp)``; see the module docstring.

    Attributes:
        folder: The store's folder.
        identity: The model identity it holds embeddings of (:func:`model_identity`).
        keys: Every row's key, in the order rows were appended (a key may repeat).
        stamps: Every row's stamp.
        digests: Every row's SHA-256 of the embedded bytes, ``(rows, 32)`` uint8.
    """

    def __init__(self, folder: Path, identity: dict[str, Any], source: dict[str, Any] | None,
                 segments: list[_Segment], keys: list[str], stamps: list[str],
                 digests: np.ndarray) -> None:  # fmt: skip
        self.folder, self.identity, self.source = folder, identity, source
        self.dim = int(identity["dim"])
        self.keys, self.stamps, self.digests = keys, stamps, digests
        self._segments = segments
        self._vectors: np.ndarray | None = None
        self._latest = {key: row for row, key in enumerate(keys)}  # a later row wins

    # opening ---------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        folder: str | os.PathLike[str],
        identity: dict[str, Any] | None = None,
        source: dict[str, Any] | None = None,
    ) -> EmbeddingStore:
        """Open the store in ``folder``; with ``identity``, create it if it does not exist
        (``source``: where its images are listed from, e.g. ``{"input_folder": ..., "extensions":
        [...], "recursive": ...}``), and refuse a store of another identity.

        Raises:
            ValueError: The folder holds no store (and no ``identity`` was given), a store of
                another model, or a damaged segment.
        """
        path = Path(folder)
        found = _read_store_file(path)
        if found is None:
            if identity is None:
                raise ValueError(f"store: {str(path)!r} holds no embedding store")
            path.mkdir(parents=True, exist_ok=True)
            with atomic_write(path / STORE_FILE, "w") as f:
                json.dump({"format": FORMAT, "identity": identity, "source": source}, f)
            found = identity, source
        stored, stored_source = found
        if identity is not None and not same_identity(stored, identity):
            raise ValueError(
                f"store: {str(path)!r} holds embeddings of another model "
                f"({stored.get('checkpoint')!r}, {stored.get('weights')!r})"
            )
        segments, keys, stamps, digests = _read_segments(path, int(stored["dim"]))
        return cls(path, stored, stored_source, segments, keys, stamps, digests)

    # reading ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def segments(self) -> int:
        """How many segment files the store reads (:meth:`compact` makes it one)."""
        return len(self._segments)

    @property
    def vectors(self) -> np.ndarray:
        """Every row's vector, ``(rows, D)`` float32: memory-mapped when the store is one
        segment (see :meth:`compact`), else gathered once into memory."""
        if self._vectors is None:
            parts = [s.vectors for s in self._segments]
            if len(parts) == 1:
                self._vectors = parts[0]
            else:
                self._vectors = np.concatenate(parts or [np.zeros((0, self.dim), np.float32)])
        return self._vectors

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of ``rows``, ``(len(rows), D)`` float32 in memory, read in file order."""
        return gather(self.vectors, np.asarray(rows, np.int64))

    def leaders(self, rows: np.ndarray, threshold: float) -> np.ndarray:
        """The near-duplicate group of each of ``rows`` (:func:`~autodistill_metaclip.index.
        groups.leaders` at ``threshold``, rows placed in the order they were embedded), as the
        row of its leader. Kept in the store by key and stamp, so only rows that are new, or
        whose leader is gone, are placed again."""
        rows = np.asarray(rows, np.int64)
        order = np.argsort(rows, kind="stable")
        placed = rows[order]
        position = {int(r): i for i, r in enumerate(placed.tolist())}
        known = np.full(len(placed), -1, np.int64)
        for row, leader in self._cached_leaders(threshold).items():
            if row in position and leader in position:
                known[position[row]] = position[leader]
        keeps = known >= 0
        known[keeps & (known[np.maximum(known, 0)] != known)] = -1  # its leader must still lead
        vectors = (
            self.vectors if np.array_equal(placed, np.arange(len(self))) else self.gather(placed)
        )
        found = leaders(vectors, threshold, known)
        self._save_leaders(threshold, placed, placed[found])
        out = np.empty(len(rows), np.int64)
        out[order] = placed[found]
        return out

    def _groups_file(self, threshold: float, rule: int = GROUPING_RULE) -> Path:
        """Where the groups of ``threshold`` are kept, by the grouping rule that made them (a
        new rule never reads groups of an old one)."""
        return self.folder / (f"groups-{threshold:.6f}.npz" if rule == 1 else
                              f"groups-{rule}-{threshold:.6f}.npz")  # fmt: skip

    def _cached_leaders(self, threshold: float) -> dict[int, int]:
        """``{row: leader row}`` from the cache of this threshold (nothing if unreadable)."""
        path = self._groups_file(threshold)
        if not path.is_file():
            return {}
        try:
            file = open_file(path, MAX_SEGMENT_BYTES, "store")
            with file, np.load(file, allow_pickle=False) as arrays:
                keys = unpack(arrays["keys"], arrays["key_ends"])
                stamps = unpack(arrays["stamps"], arrays["stamp_ends"])
                leader = np.asarray(arrays["leader"], np.int64)
        except (ValueError, OSError, KeyError) as e:
            logger.warning("ignoring an unreadable group cache %s (%s)", path, e)
            return {}
        if (
            len(leader) != len(keys)
            or len(stamps) != len(keys)
            or (len(leader) and (leader.min() < 0 or leader.max() >= len(keys)))
        ):
            return {}
        rows = [self.find(k, s) for k, s in zip(keys, stamps, strict=True)]
        return {r: rows[int(j)] for r, j in zip(rows, leader.tolist(), strict=True) if r >= 0}

    def _save_leaders(self, threshold: float, rows: np.ndarray, leader_rows: np.ndarray) -> None:
        index = {int(r): i for i, r in enumerate(rows.tolist())}
        key_bytes, key_ends = pack([self.keys[r] for r in rows.tolist()])
        stamp_bytes, stamp_ends = pack([self.stamps[r] for r in rows.tolist()])
        leader = np.array([index[int(r)] for r in leader_rows.tolist()], np.int64)
        with atomic_write(self._groups_file(threshold)) as f:
            np.savez(f, keys=key_bytes, key_ends=key_ends, stamps=stamp_bytes,
                     stamp_ends=stamp_ends, leader=leader)  # fmt: skip
        for rule in range(1, GROUPING_RULE):  # groups of an earlier rule, made by this tool
            self._groups_file(threshold, rule).unlink(missing_ok=True)

    def latest(self) -> np.ndarray:
        """The latest row of each key, in key order: the images the store holds now."""
        return np.array([self._latest[k] for k in sorted(self._latest)], np.int64)

    def find(self, key: str, stamp: str) -> int:
        """The row of ``key`` embedded at ``stamp``, or -1."""
        row = self._latest.get(key, -1)
        return row if row >= 0 and self.stamps[row] == stamp else -1

    def rows(self, files: Iterable[Any]) -> np.ndarray:
        """:meth:`find` for each listed file (anything with ``key`` and ``stamp``)."""
        return np.array([self.find(f.key, f.stamp) for f in files], np.int64)

    # writing ---------------------------------------------------------------------------------

    def append(
        self,
        keys: Sequence[str],
        stamps: Sequence[str],
        digests: Sequence[bytes],
        vectors: np.ndarray,
        *,
        name: str | None = None,
    ) -> list[int]:
        """Add rows as one new segment, written atomically; returns their row numbers.

        ``name``: the segment's file name (default: the next number); writers that may run at
        once (Ray workers) pass :meth:`segment_name` names.
        """
        vectors = np.ascontiguousarray(vectors, np.float32).reshape(-1, self.dim)
        if not len(keys) == len(stamps) == len(digests) == len(vectors):
            raise ValueError("store: keys, stamps, digests and vectors differ in length")
        if not len(keys):
            return []
        target = self.folder / (name or _numbered(self._next_number()))
        write_segment(target, keys, stamps, digests, [vectors])
        start = len(self.keys)
        self._segments.append(_open_segment(target, self.dim))
        self.keys += list(keys)
        self.stamps += list(stamps)
        self.digests = np.concatenate([self.digests, digest_array(digests)])
        self._vectors = None
        self._latest.update((key, start + i) for i, key in enumerate(keys))
        return list(range(start, start + len(keys)))

    @staticmethod
    def segment_name(number: int = 0) -> str:
        """A segment file name no other writer picks (a number, then random hex)."""
        return f"segment-{number:06d}-{secrets.token_hex(8)}.npz"

    def compact(self, keep: Iterable[str] | None = None) -> None:
        """Rewrite the latest row of each key (of ``keep`` only, if given) into one segment, in
        key order, then remove the segments it replaces. Rows are renumbered."""
        wanted = set(keep) if keep is not None else None
        rows = [self._latest[k] for k in sorted(self._latest) if wanted is None or k in wanted]
        if len(self._segments) == 1 and rows == list(range(len(self.keys))):
            return  # already one segment of live rows in key order
        replaced = [s.path.name for s in self._segments]
        target = self.folder / _numbered(self._next_number())
        write_segment(
            target,
            [self.keys[r] for r in rows],
            [self.stamps[r] for r in rows],
            [bytes(self.digests[r]) for r in rows],
            (self.vectors[rows[i : i + CHUNK_ROWS]] for i in range(0, len(rows), CHUNK_ROWS)),
            replaces=replaced,
        )
        for name in replaced:
            (self.folder / name).unlink(missing_ok=True)
        compacted = EmbeddingStore.open(self.folder)
        self.__dict__.update(compacted.__dict__)

    def _next_number(self) -> int:
        numbers = [s.number for s in self._segments]
        return max(numbers, default=-1) + 1


def same_identity(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two identities name the same embeddings: equal names and options, and probe
    embeddings within rounding (cosine >= 0.9999)."""
    names = ("checkpoint", "architecture", "weights", "precision", "draft_decoding", "dim")
    if any(a.get(n) != b.get(n) for n in names):
        return False
    for probe in ("probe_text", "probe_image"):
        x, y = np.asarray(a.get(probe, []), float), np.asarray(b.get(probe, []), float)
        if (
            x.shape != y.shape
            or not x.size
            or float(x @ y) < 0.9999 * np.linalg.norm(x) * np.linalg.norm(y)
        ):
            return False
    return True


def _read_store_file(folder: Path) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """The identity and source a store was made for, or ``None`` if there is no store."""
    if not (folder / STORE_FILE).is_file():
        return None
    try:
        data = json.loads(read_file(folder / STORE_FILE, 1 << 20, "store"))
        identity, source = data["identity"], data.get("source")
        if data.get("format") != FORMAT or not isinstance(identity, dict):
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
        if source is not None and not isinstance(source, dict):
            raise ValueError("its source is not an object")
        int(identity["dim"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"store: {str(folder)!r} has an unreadable {STORE_FILE} ({e})") from None
    return identity, source


def _read_segments(
    folder: Path, dim: int
) -> tuple[list[_Segment], list[str], list[str], np.ndarray]:
    """The segments in order, without those a compaction replaced (removed now) and without
    temporary files of a killed write (removed too)."""
    found = sorted(p for p in folder.iterdir() if _SEGMENT.match(p.name))
    for leftover in folder.glob(f"{PARTIAL_PREFIX}*"):
        if leftover.is_file() and not leftover.is_symlink():
            leftover.unlink()
    read = {path.name: _read_segment(path, dim) for path in found}
    replaced = {name for _, meta, *_ in read.values() for name in meta["replaces"]}
    for name in replaced & set(read):  # a compaction was killed before its clean-up
        (folder / name).unlink(missing_ok=True)
    kept = [read[path.name] for path in found if path.name not in replaced]
    keys = [key for part in kept for key in part[2]]
    stamps = [stamp for part in kept for stamp in part[3]]
    digests = np.concatenate([np.zeros((0, 32), np.uint8), *(part[4] for part in kept)])
    return [part[0] for part in kept], keys, stamps, digests


def _open_segment(path: Path, dim: int) -> _Segment:
    return _read_segment(path, dim)[0]


def _read_segment(
    path: Path, dim: int
) -> tuple[_Segment, dict[str, Any], list[str], list[str], np.ndarray]:
    number = int(_SEGMENT.match(path.name)[1])  # type: ignore[index]
    read = read_segment(path, dim=dim)
    segment = _Segment(number, path, len(read.keys), read.vectors)
    return segment, read.meta, read.keys, read.stamps, read.digests


def _numbered(number: int) -> str:
    return f"segment-{number:06d}.npz"

"""An embedding index of a folder: search by text or image, near-duplicates, clusters.

Built once with the model's streaming API and saved as one ``.npz`` (plain numpy arrays:
``paths``, ``embeddings``, and above :data:`~autodistill_metaclip.neighbours.EXACT_LIMIT`
images the serialised IVF index as bytes; no pickle), written atomically. The embeddings are
stored uncompressed, so :meth:`EmbeddingIndex.load` memory-maps them (and checks them once for
NaN, in chunks): a million images open without a second copy of 2 GB in memory. Search,
near-duplicates and k-means run on faiss
(:mod:`autodistill_metaclip.neighbours`). The folder may be local or a
filesystem URI (:mod:`autodistill_metaclip.sources`). :meth:`EmbeddingIndex.update` embeds only
files that are new or changed (size or modification time) and drops deleted ones. The index
records which model made it, including the embedding of a fixed probe text, so embeddings of
another checkpoint are never mixed in or compared.

Example:
    >>> index = EmbeddingIndex.build(model, "photos/")  # doctest: +SKIP
    >>> index.search(model, "a dog on a beach", k=5)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import weakref
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from autodistill_metaclip import sources
from autodistill_metaclip.files import atomic_write, open_file
from autodistill_metaclip.neighbours import Neighbours, kmeans

if TYPE_CHECKING:
    from autodistill_metaclip.model import MetaCLIP

FORMAT = 3  # 3: an optional "ann" member (the IVF index); 2: no "ann"; 1: "stats" for "stamps"
MAX_INDEX_BYTES = 64 << 30
"""Largest index file read (32 million ViT-B/32 embeddings)."""
_PROBE = "autodistill-metaclip index probe: a photo of a red circle"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    """One search result."""

    path: Path | str  # a str for an index of a filesystem URI
    score: float


@dataclass(frozen=True)
class Cluster:
    """One k-means cluster of an index."""

    id: int
    members: list[Path | str]
    representatives: list[Path | str]  # closest to the centre first
    name: str | None = None
    name_score: float | None = None


@dataclass(frozen=True)
class Clustering:
    """Clusters, and each indexed image's cluster id (in ``index.paths`` order)."""

    labels: np.ndarray
    clusters: list[Cluster]


class EmbeddingIndex:
    """Normalised image embeddings of the files in one folder.

    Attributes:
        root: The indexed folder (absolute) or filesystem URI.
        keys: File paths relative to ``root`` (POSIX), one per row of ``embeddings``.
        embeddings: ``(N, D)`` float32, L2-normalised.
        failed: ``{key: reason}`` for files that could not be read (retried by ``update``).
        options: The listing options: ``extensions`` and ``recursive``.
    """

    def __init__(
        self,
        root: str,
        keys: list[str],
        embeddings: np.ndarray,
        stamps: list[str],
        model_info: dict[str, Any],
        failed: dict[str, str] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.keys = keys
        self.embeddings = embeddings
        self.stamps = stamps  # per key: size and modification time when it was embedded
        self.model_info = model_info
        self.failed = failed or {}
        self.options = options or {"extensions": None, "recursive": True}
        self._compatible: weakref.WeakSet[MetaCLIP] = weakref.WeakSet()
        self._neighbours: Neighbours | None = None

    @property
    def neighbours(self) -> Neighbours:
        """Nearest-neighbour search over the embeddings (built on first use)."""
        if self._neighbours is None or self._neighbours.vectors is not self.embeddings:
            self._neighbours = Neighbours(self.embeddings)
        return self._neighbours

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def paths(self) -> list[Path | str]:
        """Absolute paths (URIs for a remote index), one per row of ``embeddings``."""
        return [self.location(key) for key in self.keys]

    def location(self, key: str) -> Path | str:
        """The path of one key: a ``Path``, or a URI string for a remote index."""
        joined = sources.join(self.root, key)
        return joined if sources.is_uri(joined) else Path(joined)

    @classmethod
    def build(
        cls,
        model: MetaCLIP,
        folder: str | os.PathLike[str],
        *,
        extensions: Sequence[str] | None = None,
        recursive: bool = True,
        progress: bool = True,
    ) -> EmbeddingIndex:
        """Embed every image file in ``folder``, a local folder or filesystem URI
        (``extensions=None``: every suffix of ``sources.IMAGE_FORMATS``)."""
        location = os.fspath(folder)
        root = location if sources.is_uri(location) else os.path.abspath(location)
        index = cls(
            root,
            [],
            np.zeros((0, model.dim), np.float32),
            [],
            model_info(model),
            {},
            {"extensions": list(extensions) if extensions else None, "recursive": recursive},
        )
        index.update(model, progress=progress)
        return index

    @classmethod
    def sync(
        cls,
        model: MetaCLIP,
        folder: str | os.PathLike[str],
        path: str | os.PathLike[str],
        *,
        extensions: Sequence[str] | None = None,
        recursive: bool = True,
        progress: bool = True,
    ) -> tuple[EmbeddingIndex, dict[str, int]]:
        """Bring the index file at ``path`` up to date with ``folder`` (build it if missing),
        save it, and return it with the counts of :meth:`update`.

        An existing index of another folder, or listed with other ``extensions`` or
        ``recursive``, is refused rather than silently updated with its own settings.
        """
        location = os.fspath(folder)
        root = location if sources.is_uri(location) else os.path.abspath(location)
        options = {"extensions": list(extensions) if extensions else None, "recursive": recursive}
        if not Path(path).exists():
            index = cls.build(
                model, root, extensions=extensions, recursive=recursive, progress=progress
            )
            counts = {"added": len(index), "changed": 0, "removed": 0, "failed": len(index.failed)}
        else:
            index = cls.load(path, model)
            built = index.options
            differences = [
                f"{name}={theirs!r} (given: {ours!r})"
                for name, theirs, ours, same in [
                    ("input_folder", index.root, root, index.root == root),
                    ("extensions", built["extensions"], extensions, _same_suffixes(built, options)),
                    ("recursive", built["recursive"], recursive, built["recursive"] == recursive),
                ]
                if not same
            ]
            if differences:
                raise ValueError(
                    f"index: {os.fspath(path)!r} was built with {', '.join(differences)}; give "
                    "the same folder and options to update it, or another index file"
                )
            counts = index.update(model, progress=progress)
        index.save(path)
        return index, counts

    def update(self, model: MetaCLIP, *, progress: bool = True) -> dict[str, int]:
        """Embed new and changed files (and retry failed ones), forget deleted ones.

        Returns the counts: ``added`` and ``changed`` (embedded now), ``removed``, ``failed``.
        """
        self.check_model(model)
        listed = sources.list_images(
            self.root, self.options["extensions"], recursive=self.options["recursive"]
        )
        current = {f.key: f for f in listed}
        known = dict(zip(self.keys, self.stamps, strict=True))
        keep = [
            i
            for i, key in enumerate(self.keys)
            if key in current and current[key].stamp == known[key]
        ]
        todo = [f for f in listed if known.get(f.key) != f.stamp]
        counts = {"added": 0, "changed": 0, "removed": sum(k not in current for k in known)}
        new_keys, new_vectors, failed = [], [], {}
        bar = tqdm(total=len(todo), desc="Indexing", unit="img", disable=not progress)
        for item in model.iter_embeddings(f.location for f in todo):
            key = todo[item.index].key
            if item.vector is None:
                failed[key] = str(item.error)
            else:
                counts["changed" if key in known else "added"] += 1
                new_keys.append(key)
                new_vectors.append(item.vector)
            bar.update()
        bar.close()
        counts["failed"] = len(failed)
        self.failed = failed
        if not todo and not counts["removed"]:  # nothing to change: keep the (mapped) arrays
            return counts
        keys = [self.keys[i] for i in keep] + new_keys
        order = np.argsort(keys, kind="stable")
        self.keys = [keys[i] for i in order]
        self.stamps = [current[key].stamp for key in self.keys]
        self.embeddings = np.concatenate(
            [self.embeddings[keep], np.array(new_vectors, np.float32).reshape(-1, model.dim)]
        )[order]
        logger.info("index of %s: %d images (%s)", self.root, len(self), counts)
        return counts

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to exactly ``path`` (``.npz`` format), atomically: a failed write
        leaves an earlier file there as it was. Returns the path."""
        target = Path(path)
        ann = self.neighbours.serialised()
        meta = {
            "format": FORMAT if ann is not None else 2,  # 2: readable by earlier versions
            "root": self.root,
            "model": self.model_info,
            "failed": self.failed,
            "options": self.options,
        }
        arrays: dict[str, Any] = {
            "paths": np.array(self.keys, dtype=str),
            "embeddings": np.asarray(self.embeddings, np.float32),
            "stamps": np.array(self.stamps, dtype=str),
            "meta": np.array(json.dumps(meta)),
        }
        if ann is not None:
            arrays["ann"] = ann
        with atomic_write(target) as file:
            np.savez(file, **arrays)  # uncompressed: the embeddings can be memory-mapped
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: MetaCLIP | None = None) -> EmbeddingIndex:
        """Read an index written by :meth:`save`; with ``model``, refuse another model's index.

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
        if not problem:
            embeddings = embeddings.astype(np.float32, copy=False)
            try:  # the saved IVF index, read once and kept for searches
                neighbours = None if ann is None else Neighbours(embeddings, ann)
            except ValueError as e:
                problem = str(e)
        if problem:
            raise ValueError(f"{shown} is not a valid embedding index: {problem}")
        index = cls(
            meta["root"],
            keys,
            embeddings,
            stamps,
            meta["model"],
            meta.get("failed", {}),
            meta.get("options"),
        )
        index._neighbours = neighbours
        if model is not None:
            index.check_model(model)
        return index

    def search(
        self, model: MetaCLIP, query: Any, k: int = 10, *, text: bool | None = None
    ) -> list[Hit]:
        """The ``k`` most similar images to a query, by cosine, best first.

        Args:
            model: The model that built the index (or one with the same weights).
            query: A text, or an image (path, URL, URI, PIL image, array, bytes).
            k: How many hits.
            text: ``True``: ``query`` is text; ``False``: an image. ``None`` guesses: a ``str``
                is an image if it is a URL, a URI or an existing file, else text; a ``str``
                that ends in an image suffix but names no file is refused, not searched as text.
        """
        self.check_model(model)
        if text is None:
            text = _is_text_query(query)
        vector = model.embed_text(query) if text else model.embed_image(query)
        scores, ids = self.neighbours.search(vector[None], k)
        return [
            Hit(self.location(self.keys[i]), float(s))
            for s, i in zip(scores[0], ids[0], strict=True)
            if i >= 0
        ]

    def duplicates(self, threshold: float = 0.95) -> list[list[Path | str]]:
        """Groups of images whose embeddings are at least ``threshold`` cosine-similar to another
        member (connected components), largest group first: all pairs compared up to
        ``neighbours.EXACT_LIMIT`` images, found through the IVF index above."""
        return [[self.location(k) for k in g] for g in self.duplicate_keys(threshold)]

    def duplicate_keys(self, threshold: float = 0.95) -> list[list[str]]:
        """:meth:`duplicates` as keys (paths relative to :attr:`root`)."""
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold: expected a cosine in (0, 1], but got {threshold!r}")
        component = self.neighbours.groups(threshold)
        groups: dict[int, list[str]] = {}
        for key, group in zip(self.keys, component, strict=True):
            groups.setdefault(int(group), []).append(key)
        found = [sorted(g) for g in groups.values() if len(g) > 1]
        return sorted(found, key=lambda g: (-len(g), g[0]))

    def clusters(
        self,
        k: int,
        *,
        seed: int = 0,
        representatives: int = 6,
        names: Sequence[str] | None = None,
        model: MetaCLIP | None = None,
    ) -> Clustering:
        """k-means (``neighbours.kmeans``) on the embeddings; each cluster lists its members closest
        to the centre first. With candidate ``names`` (and ``model``), each cluster is named by
        the candidate whose text embedding is closest to its centre."""
        if not 1 <= k <= len(self):
            raise ValueError(f"k: expected 1 to {len(self)} (the number of images), but got {k}")
        centres, labels = kmeans(self.embeddings, k, seed=seed)
        name_scores = None
        if names:
            if model is None:
                raise ValueError("model: naming clusters needs the model that embeds the names")
            self.check_model(model)
            name_scores = centres @ model.embed_text(list(names)).T
        clusters = []
        for c in range(k):
            members = np.flatnonzero(labels == c)
            if not len(members):
                continue  # k close to the number of distinct images leaves some empty
            closest = members[np.argsort(-(self.embeddings[members] @ centres[c]), kind="stable")]
            best = int(np.argmax(name_scores[c])) if name_scores is not None else None
            clusters.append(
                Cluster(
                    id=c,
                    members=[self.location(self.keys[i]) for i in closest],
                    representatives=[
                        self.location(self.keys[i]) for i in closest[:representatives]
                    ],
                    name=None if best is None or names is None else names[best],
                    name_score=None
                    if best is None or name_scores is None
                    else float(name_scores[c, best]),
                )
            )
        return Clustering(labels=labels, clusters=clusters)

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path``/``embedding`` rows for vector databases (needs ``pyarrow``)."""
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ImportError("parquet export needs pyarrow: pip install pyarrow") from e
        pq.write_table(self._arrow("embedding"), Path(path))
        return Path(path)

    def to_lancedb(self, uri: str | os.PathLike[str], table: str = "images") -> Any:
        """Write the index as a LanceDB table (``path``, ``vector``) and return it.

        LanceDB is an embedded vector database: ``uri`` is a local folder or an object-store
        URI (``s3://bucket/db``); ``overwrite`` semantics: the table is replaced. Search it with
        ``table.search(vector).metric("dot").limit(k)``, the cosine of these unit vectors
        (needs ``pip install "autodistill-metaclip[lancedb]"``).
        """
        try:
            import lancedb
        except ImportError as e:
            raise ImportError(
                'LanceDB export needs lancedb: pip install "autodistill-metaclip[lancedb]"'
            ) from e
        database = lancedb.connect(os.fspath(uri))
        return database.create_table(table, self._arrow("vector"), mode="overwrite")

    def _arrow(self, vector_column: str) -> Any:
        """``path`` and the embeddings as an Arrow table, with which model made them."""
        import pyarrow as pa

        vectors = pa.FixedSizeListArray.from_arrays(
            pa.array(np.asarray(self.embeddings).reshape(-1), pa.float32()),
            self.embeddings.shape[1],
        )
        table = pa.table({"path": [str(p) for p in self.paths], vector_column: vectors})
        return table.replace_schema_metadata({"model": json.dumps(self.model_info)})

    def check_model(self, model: MetaCLIP) -> None:
        """Refuse a model whose embeddings cannot be compared with this index's."""
        if model in self._compatible:  # its probe embedding was compared already
            return
        mine, theirs = self.model_info, model_info(model)
        same = (
            mine["dim"] == theirs["dim"] and float(np.dot(mine["probe"], theirs["probe"])) > 0.999
        )
        if not same:
            raise ValueError(
                f"model: this index was made by checkpoint {mine['checkpoint']!r} "
                f"({mine['architecture']}); its embeddings cannot be compared with those of "
                f"{theirs['checkpoint']!r} ({theirs['architecture']}). Rebuild the index."
            )
        self._compatible.add(model)


def model_info(model: MetaCLIP) -> dict[str, Any]:
    """Which model made an embedding: names, how to build it again (``spec``: checkpoint and
    weights as given), and a probe embedding that tells models apart."""
    spec = model.spec
    return {
        **model.identity,
        "dim": model.dim,
        "spec": {"checkpoint": spec.checkpoint, "weights": spec.weights},
        "probe": [round(float(v), 6) for v in model.embed_text(_PROBE)],
    }


def _same_suffixes(a: dict[str, Any], b: dict[str, Any]) -> bool:
    normalise = sources.normalise_extensions
    return normalise(a["extensions"]) == normalise(b["extensions"])


def _is_text_query(query: Any) -> bool:
    if not isinstance(query, str):
        return False
    if query.lower().startswith(("http://", "https://")) or sources.is_uri(query):
        return False
    if Path(query).is_file():
        return False
    if Path(query).suffix.lower() in sources.normalise_extensions(None):
        raise ValueError(
            f"query: {query!r} looks like an image path, but there is no such file; "
            "to search for it as text, say so (text=True)"
        )
    return True


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
    import struct

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

"""An embedding index of a folder: search by text or image, near-duplicates, clusters.

An index is an embedding store (:mod:`autodistill_metaclip.index.store`) plus its search
structure: :meth:`EmbeddingIndex.build` embeds a folder with the model's streaming API,
:meth:`EmbeddingIndex.open` opens the embeddings a store or a ``label()`` dataset keeps already
(nothing embedded again), :meth:`EmbeddingIndex.save` writes one segment file with the IVF
structure as checked plain arrays (:mod:`autodistill_metaclip.index.storage`; no pickle, no
faiss bytes), memory-mapped on :meth:`EmbeddingIndex.load`. Search, near-duplicate groups and
k-means run on faiss (:mod:`autodistill_metaclip.index.neighbours`). The folder may be local or
a filesystem URI (:mod:`autodistill_metaclip.inputs.sources`). :meth:`EmbeddingIndex.update`
embeds only files that are new or changed (size or modification time) and drops deleted ones.
The index records which model made it, including the embedding of a fixed probe text, so
embeddings of another checkpoint are never mixed in or compared.

Examples:
    >>> index = EmbeddingIndex.build(model, "photos/")  # doctest: +SKIP
    >>> index.search(model, "a dog on a beach", k=5)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from autodistill_metaclip.errors import ArgumentError
from autodistill_metaclip.index import export
from autodistill_metaclip.index.clusters import Clustering, cluster
from autodistill_metaclip.index.groups import group_members, leaders
from autodistill_metaclip.index.neighbours import Neighbours
from autodistill_metaclip.index.storage import read_index_file, write_index
from autodistill_metaclip.index.store import (
    DATASET_STORES,
    STORE_FILE,
    EmbeddingStore,
    model_identity,
    same_identity,
)
from autodistill_metaclip.inputs import sources
from autodistill_metaclip.results import gather

if TYPE_CHECKING:
    from autodistill_metaclip.model import MetaCLIP

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    """One search result."""

    path: Path | str  # a str for an index of a filesystem URI
    score: float


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
            built_with = {}
            differences = []
            for name, theirs, ours, same in [
                ("input_folder", index.root, root, index.root == root),
                ("extensions", built["extensions"], extensions, _same_suffixes(built, options)),
                ("recursive", built["recursive"], recursive, built["recursive"] == recursive),
            ]:
                if not same:
                    built_with[name] = theirs
                    differences.append(f"{{{name}}} (given: {ours!r})")
            if differences:
                raise ArgumentError(
                    "index",
                    f"{os.fspath(path)!r} was built with {', '.join(differences)}; give "
                    "the same folder and options to update it, or another index file",
                    **built_with,
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
            self.root,
            self.options["extensions"],
            recursive=self.options["recursive"],
            policy=model.spec.inputs,
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
        stream = model.iter_embeddings(f.location for f in todo)
        bar = tqdm(stream, total=len(todo), desc="Indexing", unit="img", disable=not progress)
        embedded = gather(bar, model.dim)
        new_keys = [todo[i].key for i in embedded.indices]
        failed = {todo[i].key: str(error) for i, error in embedded.failures.items()}
        counts["changed"] = sum(key in known for key in new_keys)
        counts["added"] = len(new_keys) - counts["changed"]
        counts["failed"] = len(failed)
        self.failed = failed
        if not todo and not counts["removed"]:  # nothing to change: keep the (mapped) arrays
            return counts
        keys = [self.keys[i] for i in keep] + new_keys
        order = np.argsort(keys, kind="stable")
        self.keys = [keys[i] for i in order]
        self.stamps = [current[key].stamp for key in self.keys]
        self.embeddings = np.concatenate([self.embeddings[keep], embedded.vectors])[order]
        logger.info("index of %s: %d images (%s)", self.root, len(self), counts)
        return counts

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to exactly ``path`` (``.npz`` format, :mod:`.storage`), atomically: a
        failed write leaves an earlier file there as it was. Returns the path."""
        return write_index(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: MetaCLIP | None = None) -> EmbeddingIndex:
        """Read an index written by :meth:`save`; with ``model``, refuse another model's index.

        Raises:
            ValueError: The file is not a regular file, or not a whole, consistent index (each
                problem named: truncated, wrong types, counts that disagree, NaN vectors...).
        """
        parts = read_index_file(path)
        index = cls(
            parts.meta["root"],
            parts.keys,
            parts.embeddings,
            parts.stamps,
            parts.meta["model"],
            parts.meta.get("failed", {}),
            parts.meta.get("options"),
        )
        index._neighbours = parts.neighbours
        if model is not None:
            index.check_model(model)
        return index

    @classmethod
    def open(cls, folder: str | os.PathLike[str], model: MetaCLIP | None = None) -> EmbeddingIndex:
        """The index of embeddings kept already, nothing embedded again: the folder of an
        :class:`~autodistill_metaclip.index.store.EmbeddingStore`, or a dataset written by
        ``label()`` (its store; of ``model`` if given, else the one written last). Its images
        are those the store holds now, its root the folder they were listed from.

        Raises:
            ValueError: The folder holds no store (of ``model``), or a damaged one.
        """
        store = _open_store(Path(folder), model)
        source = store.source or {}
        rows = store.latest()
        in_order = np.array_equal(rows, np.arange(len(store)))
        index = cls(
            str(source.get("input_folder", "")),
            [store.keys[r] for r in rows.tolist()],
            store.vectors if in_order else store.gather(rows),
            [store.stamps[r] for r in rows.tolist()],
            dict(store.identity),
            {},
            {"extensions": source.get("extensions"), "recursive": source.get("recursive", True)},
        )
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
        """Groups of near-duplicate images, largest first: leader groups
        (:mod:`~autodistill_metaclip.index.groups`), so every member is at least ``threshold``
        cosine-similar to its group's first image (its leader, in index order) and groups never
        chain through a drift of similar images."""
        return [[self.location(k) for k in g] for g in self.duplicate_keys(threshold)]

    def duplicate_keys(self, threshold: float = 0.95) -> list[list[str]]:
        """:meth:`duplicates` as keys (paths relative to :attr:`root`), leader first."""
        if not 0.0 < threshold <= 1.0:
            raise ArgumentError("threshold", f"expected a cosine in (0, 1], but got {threshold!r}")
        groups = group_members(leaders(self.embeddings, threshold))
        found = [[self.keys[i] for i in g.tolist()] for g in groups if len(g) > 1]
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
        """k-means on the embeddings (:func:`~autodistill_metaclip.index.clusters.cluster`);
        each cluster lists its members closest to the centre first. With candidate ``names``
        (and ``model``), clusters are named by the candidates whose text embeddings are closest
        to their centres, each name given once while names last, then again with a number."""
        if not 1 <= k <= len(self):
            raise ArgumentError(
                "k", f"expected 1 to {len(self)} (the number of images), but got {k}"
            )
        name_vectors = None
        if names:
            if model is None:
                raise ArgumentError(
                    "model", "naming clusters needs the model that embeds the names"
                )
            self.check_model(model)
            name_vectors = model.embed_text(list(names))
        return cluster(
            self.embeddings,
            lambda row: self.location(self.keys[row]),
            k,
            seed=seed,
            representatives=representatives,
            names=list(names) if names else None,
            name_vectors=name_vectors,
        )

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path``/``embedding`` rows for vector databases (needs ``pyarrow``)."""
        return export.to_parquet(self, path)

    def to_lancedb(self, uri: str | os.PathLike[str], table: str = "images") -> Any:
        """Write the index as a LanceDB table (``path``, ``vector``) and return it
        (see :func:`autodistill_metaclip.index.export.to_lancedb`)."""
        return export.to_lancedb(self, uri, table)

    def check_model(self, model: MetaCLIP) -> None:
        """Refuse a model whose embeddings cannot be compared with this index's."""
        if model in self._compatible:  # its probe embedding was compared already
            return
        mine, theirs = self.model_info, model_info(model)
        a, b = _probe(mine), _probe(theirs)
        same = mine["dim"] == theirs["dim"] and len(a) == len(b) and float(np.dot(a, b)) > 0.999
        if not same:
            raise ArgumentError(
                "model",
                f"this index was made by checkpoint {mine['checkpoint']!r} "
                f"({mine['architecture']}); its embeddings cannot be compared with those of "
                f"{theirs['checkpoint']!r} ({theirs['architecture']}). Rebuild the index.",
            )
        self._compatible.add(model)


def model_info(model: MetaCLIP) -> dict[str, Any]:
    """Which model made an embedding: its identity (:func:`~.store.model_identity`: names, how
    to build it again, probe embeddings that tell models apart)."""
    return model_identity(model)


def _probe(info: dict[str, Any]) -> list[float]:
    """The probe text's embedding (``probe`` in indexes saved before 0.3)."""
    return list(info.get("probe_text", info.get("probe", [])))


def _open_store(folder: Path, model: MetaCLIP | None) -> EmbeddingStore:
    """The store in ``folder``, or among a dataset's stores the one of ``model`` (without one:
    the one written last)."""
    if (folder / STORE_FILE).is_file():
        return EmbeddingStore.open(folder)
    kept = folder.joinpath(*DATASET_STORES)
    found = sorted(p for p in kept.glob(f"*/{STORE_FILE}") if p.is_file()) if kept.is_dir() else []
    if not found:
        raise ArgumentError(
            "folder",
            f"{str(folder)!r} holds no embeddings (no store, no dataset written by label())",
        )
    if model is not None:
        identity = model_identity(model)
        for path in found:
            store = EmbeddingStore.open(path.parent)
            if same_identity(store.identity, identity):
                return store
        raise ArgumentError(
            "model",
            f"{str(folder)!r} holds no embeddings of this model; label it with this model first",
        )
    newest = max(
        found,
        key=lambda p: max(
            (s.stat().st_mtime_ns for s in p.parent.glob("segment-*.npz")), default=0
        ),
    )
    return EmbeddingStore.open(newest.parent)


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
        raise ArgumentError(
            "query",
            f"{query!r} looks like an image path, but there is no such file; "
            "to search for it as text, say so ({text})",
            text=True,
        )
    return True

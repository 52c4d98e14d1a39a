"""An embedding index of a folder: search by text or image, near-duplicates, clusters.

Built once with the batched engine and saved as one ``.npz`` (plain numpy arrays: ``paths``,
``embeddings``; no pickle). :meth:`EmbeddingIndex.update` embeds only files that are new or
changed (size or modification time) and drops deleted ones. The index records which model made
it, including the embedding of a fixed probe text, so embeddings of another checkpoint are
never mixed in or compared.

Example:
    >>> index = EmbeddingIndex.build(model, "photos/")  # doctest: +SKIP
    >>> index.search(model, "a dog on a beach", k=5)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from autodistill_metaclip.images import find_images
from autodistill_metaclip.pipeline import encode_images

if TYPE_CHECKING:
    from autodistill_metaclip.model import MetaCLIP

FORMAT = 1
_PROBE = "autodistill-metaclip index probe: a photo of a red circle"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    """One search result."""

    path: Path
    score: float


@dataclass(frozen=True)
class Cluster:
    """One k-means cluster of an index."""

    id: int
    members: list[Path]
    representatives: list[Path]  # closest to the centre first
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
        root: The indexed folder.
        keys: File paths relative to ``root`` (POSIX), one per row of ``embeddings``.
        embeddings: ``(N, D)`` float32, L2-normalised.
        failed: ``{key: reason}`` for files that could not be read (retried by ``update``).
    """

    def __init__(
        self,
        root: Path,
        keys: list[str],
        embeddings: np.ndarray,
        stats: np.ndarray,
        model_info: dict[str, Any],
        failed: dict[str, str] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.keys = keys
        self.embeddings = embeddings
        self.stats = stats  # (N, 2) int64: size, mtime_ns
        self.model_info = model_info
        self.failed = failed or {}
        self.options = options or {"extensions": None, "recursive": True}
        self._compatible: weakref.WeakSet[MetaCLIP] = weakref.WeakSet()

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def paths(self) -> list[Path]:
        """Absolute paths, one per row of ``embeddings``."""
        return [self.root / key for key in self.keys]

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
        """Embed every image file in ``folder`` (``extensions=None``: every suffix Pillow opens)."""
        root = Path(folder).absolute()
        index = cls(
            root,
            [],
            np.zeros((0, model.encoder.dim), np.float32),
            np.zeros((0, 2), np.int64),
            model_info(model),
            {},
            {"extensions": list(extensions) if extensions else None, "recursive": recursive},
        )
        index.update(model, progress=progress)
        return index

    def update(self, model: MetaCLIP, *, progress: bool = True) -> dict[str, int]:
        """Embed new and changed files, forget deleted ones; returns the counts."""
        self.check_model(model)
        files = find_images(
            self.root, self.options["extensions"], recursive=self.options["recursive"]
        )
        current = {f.relative_to(self.root).as_posix(): _stat(f) for f in files}
        known = dict(zip(self.keys, map(tuple, self.stats), strict=True))
        keep = [i for i, key in enumerate(self.keys) if current.get(key) == known[key]]
        todo = [key for key, stat in current.items() if known.get(key) != stat]
        counts = {
            "added": sum(key not in known for key in todo),
            "changed": sum(key in known for key in todo),
            "removed": sum(key not in current for key in known),
        }
        new_keys, new_vectors, new_stats, failed = [], [], [], {}
        bar = tqdm(total=len(todo), desc="Indexing", unit="img", disable=not progress)
        for item in encode_images(
            model.encoder, [self.root / k for k in todo], batch_size=model.batch_size
        ):
            key = todo[item.index]
            if item.embedding is None:
                failed[key] = str(item.error)
            else:
                new_keys.append(key)
                new_vectors.append(item.embedding)
                new_stats.append(current[key])
            bar.update()
        bar.close()
        keys = [self.keys[i] for i in keep] + new_keys
        order = np.argsort(keys, kind="stable")
        self.keys = [keys[i] for i in order]
        self.embeddings = np.concatenate(
            [
                self.embeddings[keep],
                np.array(new_vectors, np.float32).reshape(-1, model.encoder.dim),
            ]
        )[order]
        self.stats = np.concatenate(
            [self.stats[keep], np.array(new_stats, np.int64).reshape(-1, 2)]
        )[order]
        self.failed = failed
        counts["failed"] = len(failed)
        logger.info("index of %s: %d images (%s)", self.root, len(self), counts)
        return counts

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index as one ``.npz`` file; returns its path."""
        target = Path(path)
        meta = {
            "format": FORMAT,
            "root": str(self.root),
            "model": self.model_info,
            "failed": self.failed,
            "options": self.options,
        }
        with open(target, "wb") as f:
            np.savez(
                f,
                paths=np.array(self.keys, dtype=str),
                embeddings=self.embeddings,
                stats=self.stats,
                meta=np.array(json.dumps(meta)),
            )
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: MetaCLIP | None = None) -> EmbeddingIndex:
        """Read an index written by :meth:`save`; with ``model``, refuse another model's index."""
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                index = cls(
                    Path(meta["root"]),
                    [str(k) for k in data["paths"]],
                    data["embeddings"].astype(np.float32),
                    data["stats"].astype(np.int64),
                    meta["model"],
                    meta.get("failed", {}),
                    meta.get("options"),
                )
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"index: cannot read {str(path)!r} as an embedding index ({e})") from e
        if meta.get("format") != FORMAT:
            raise ValueError(
                f"index: {str(path)!r} has format {meta.get('format')}, expected {FORMAT}"
            )
        if model is not None:
            index.check_model(model)
        return index

    def search(self, model: MetaCLIP, query: Any, k: int = 10) -> list[Hit]:
        """The ``k`` most similar images to a query, by cosine, best first. A ``str`` is a text
        query unless it is a URL or an existing file; anything else is an image."""
        self.check_model(model)
        is_text = isinstance(query, str) and not (
            query.lower().startswith(("http://", "https://")) or Path(query).is_file()
        )
        vector = model.embed_text(query) if is_text else model.embed_image(query)
        scores = self.embeddings @ vector
        top = np.argsort(-scores, kind="stable")[: max(0, k)]
        return [Hit(self.root / self.keys[i], float(scores[i])) for i in top]

    def duplicates(self, threshold: float = 0.95, *, block: int = 2048) -> list[list[Path]]:
        """Groups of images whose embeddings are at least ``threshold`` cosine-similar to another
        member (connected components), largest group first. Compares all pairs, in blocks."""
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold: expected a cosine in [-1, 1], but got {threshold!r}")
        parent = list(range(len(self)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for start in range(0, len(self), block):
            similar = self.embeddings[start : start + block] @ self.embeddings.T >= threshold
            for i, j in zip(*np.nonzero(similar), strict=True):
                if j > i + start:
                    parent[find(int(j))] = find(int(i) + start)
        groups: dict[int, list[Path]] = {}
        for i, path in enumerate(self.paths):
            groups.setdefault(find(i), []).append(path)
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
        """k-means (scikit-learn) on the embeddings; each cluster lists its members closest to
        the centre first. With candidate ``names`` (and ``model``), each cluster is named by the
        candidate whose text embedding is closest to its centre."""
        from sklearn.cluster import KMeans

        if not 1 <= k <= len(self):
            raise ValueError(f"k: expected 1 to {len(self)} (the number of images), but got {k}")
        kmeans = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(self.embeddings)
        centres = kmeans.cluster_centers_ / np.linalg.norm(
            kmeans.cluster_centers_, axis=1, keepdims=True
        )
        name_scores = None
        if names:
            if model is None:
                raise ValueError("model: naming clusters needs the model that embeds the names")
            self.check_model(model)
            name_scores = centres @ model.embed_text(list(names)).T
        clusters = []
        for c in range(k):
            members = np.flatnonzero(kmeans.labels_ == c)
            closest = members[np.argsort(-(self.embeddings[members] @ centres[c]), kind="stable")]
            best = int(np.argmax(name_scores[c])) if name_scores is not None else None
            clusters.append(
                Cluster(
                    id=c,
                    members=[self.root / self.keys[i] for i in closest],
                    representatives=[self.root / self.keys[i] for i in closest[:representatives]],
                    name=None if best is None or names is None else names[best],
                    name_score=None
                    if best is None or name_scores is None
                    else float(name_scores[c, best]),
                )
            )
        return Clustering(labels=kmeans.labels_.astype(np.int64), clusters=clusters)

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path``/``embedding`` rows for vector databases (needs ``pyarrow``)."""
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ImportError("parquet export needs pyarrow: pip install pyarrow") from e
        vectors = pa.FixedSizeListArray.from_arrays(
            pa.array(self.embeddings.reshape(-1), pa.float32()), self.embeddings.shape[1]
        )
        table = pa.table({"path": [str(p) for p in self.paths], "embedding": vectors})
        table = table.replace_schema_metadata({"model": json.dumps(self.model_info)})
        pq.write_table(table, Path(path))
        return Path(path)

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
    """Which model made an embedding: names, and a probe embedding that tells models apart."""
    resolved = model.encoder.resolved
    return {
        "checkpoint": resolved.name,
        "architecture": resolved.architecture,
        "weights": resolved.tag or (resolved.weights_file.name if resolved.weights_file else None),
        "dim": model.encoder.dim,
        "probe": [round(float(v), 6) for v in model.embed_text(_PROBE)],
    }


def _stat(path: Path) -> tuple[int, int]:
    try:
        info = path.stat()
    except OSError:
        return (-1, -1)
    return (info.st_size, info.st_mtime_ns)

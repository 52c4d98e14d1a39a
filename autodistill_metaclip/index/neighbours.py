"""Nearest neighbours and k-means of L2-normalised vectors, with faiss.

Up to :data:`EXACT_LIMIT` vectors every search is exact (``faiss.knn``: blocked BLAS, no copy
of the vectors). Above it an inverted-file index of 8-bit scalar-quantised vectors (IVF-SQ8,
a quarter of the vectors' size) proposes :data:`CANDIDATES` x k candidates from
:data:`PROBES` cells, and those are re-scored exactly against the vectors, so the scores
returned are exact cosines and only a true neighbour outside the probed cells can be missed.
Measured in ``benchmarks/index_scale.py`` (recall@10 against exact search).

K-means runs on a sample and faiss assigns every vector to its centre. Near-duplicate groups are
:mod:`~autodistill_metaclip.index.groups`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

EXACT_LIMIT = 20_000
"""Largest number of vectors searched exactly; above it the IVF-SQ8 index takes over."""
PROBES = 16
"""Cells of the IVF index visited per query."""
CANDIDATES = 4
"""Candidates per wanted neighbour that the IVF index proposes for exact re-scoring."""
_CHUNK = 65_536
_ASSIGNMENT_SAMPLE = 2048  # vectors whose cells are checked when an index is read


def _faiss() -> Any:
    import faiss

    return faiss


@dataclass(frozen=True)
class IVFParts:
    """An IVF-SQ8 index of some vectors as plain arrays, kept with them instead of faiss's
    serialised bytes, which faiss reads without cross-checking (a crafted file could crash,
    hang or mislead it): the index is built again from these, checked first.

    Attributes:
        centroids: ``(cells, D)`` float32, the cells' centres.
        assignment: ``(N,)`` int64, each vector's cell.
        trained: ``(2 D,)`` float32, the scalar quantiser's range of each dimension.
    """

    centroids: np.ndarray
    assignment: np.ndarray
    trained: np.ndarray

    def check(self, vectors: np.ndarray) -> None:
        """Refuse parts that are not an IVF index of ``vectors``: wrong shapes or types, values
        that are not finite, cells out of range, or cells that are not the nearest centre of a
        random sample of the vectors (as faiss assigns them: shuffled cells or other centres
        would silently lose neighbours).

        Raises:
            ValueError: Saying which.
        """
        n, d = vectors.shape
        c, a, t = self.centroids, self.assignment, self.trained
        if c.dtype != np.float32 or c.ndim != 2 or c.shape[1] != d or not 1 <= len(c) <= n:
            raise ValueError(f"its IVF centres are not 1 to {n} vectors of {d} values")
        if a.dtype != np.int64 or a.shape != (n,) or t.dtype != np.float32 or t.shape != (2 * d,):
            raise ValueError(f"its IVF cells or quantiser do not fit {n} vectors of {d} values")
        if not (np.isfinite(c).all() and np.isfinite(t).all() and (t[d:] >= 0).all()):
            raise ValueError("its IVF centres or quantiser are not finite")
        if len(a) and (a.min() < 0 or a.max() >= len(c)):
            raise ValueError(f"its IVF cells are not all in 0..{len(c) - 1}")
        sample = np.sort(
            np.random.default_rng().choice(n, min(n, _ASSIGNMENT_SAMPLE), replace=False)
        )
        scores = np.ascontiguousarray(vectors[sample], np.float32) @ c.T
        chosen = scores[np.arange(len(sample)), a[sample]]
        if np.any(chosen < scores.max(axis=1) - 1e-4):
            raise ValueError("its IVF cells are not the nearest centres of its vectors")


class Neighbours:
    """Search over ``vectors`` (``(N, D)`` float32, L2-normalised; a memory map is fine).

    Args:
        vectors: The vectors; never copied by exact search.
        parts: An IVF-SQ8 index of these vectors (from :meth:`parts`), if any: checked, then
            built again.
    """

    def __init__(self, vectors: np.ndarray, parts: IVFParts | None = None) -> None:
        self.vectors = vectors
        if parts is not None:
            parts.check(vectors)
        self._ivf = None if parts is None else _ivf_from(vectors, parts)

    @property
    def approximate(self) -> bool:
        """Whether searches go through the IVF index (more than :data:`EXACT_LIMIT` vectors)."""
        return len(self.vectors) > EXACT_LIMIT

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar vectors of each query: ``(scores, ids)``, each
        ``(M, min(k, N))``, best first, cosines exact; ids ``-1`` (score ``-inf``) where the
        IVF index proposed fewer."""
        queries = np.ascontiguousarray(queries, np.float32).reshape(-1, self.vectors.shape[1])
        k = max(0, min(k, len(self.vectors)))
        if k == 0 or not len(queries):
            return np.zeros((len(queries), k), np.float32), np.zeros((len(queries), k), np.int64)
        faiss = _faiss()
        if not self.approximate:
            scores, ids = faiss.knn(queries, self.vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
            return scores, ids.astype(np.int64)
        ivf = self._index()
        ivf.nprobe = PROBES
        wanted = min(len(self.vectors), max(CANDIDATES * k, 32))
        _, candidates = ivf.search(queries, wanted)
        return self._rescored(queries, candidates, k)

    def parts(self) -> IVFParts | None:
        """The IVF index as plain arrays for saving, built if this size needs one."""
        if not self.approximate:
            return None
        faiss, ivf = _faiss(), self._index()
        assignment = np.full(ivf.ntotal, -1, np.int64)
        for cell in range(ivf.nlist):
            size = ivf.invlists.list_size(cell)
            if size:
                assignment[faiss.rev_swig_ptr(ivf.invlists.get_ids(cell), size)] = cell
        return IVFParts(
            np.ascontiguousarray(ivf.quantizer.reconstruct_n(0, ivf.nlist), np.float32),
            assignment,
            faiss.vector_to_array(ivf.sq.trained).astype(np.float32),
        )

    def _index(self) -> Any:
        if self._ivf is None:
            self._ivf = _build_ivf(self.vectors)
        return self._ivf

    def _rescored(
        self, queries: np.ndarray, candidates: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for row, (query, found) in enumerate(zip(queries, candidates, strict=True)):
            found = np.sort(found[found >= 0])  # ascending: memory-map reads in file order
            exact = self.vectors[found] @ query
            order = np.argsort(-exact, kind="stable")[:k]
            scores[row, : len(order)] = exact[order]
            ids[row, : len(order)] = found[order]
        return scores, ids


def _ivf_from(vectors: np.ndarray, parts: IVFParts) -> Any:
    """The IVF-SQ8 index that :meth:`Neighbours.parts` took apart (checked): its centres and
    quantiser as they were, each vector encoded again into its cell."""
    faiss = _faiss()
    d = vectors.shape[1]
    quantiser = faiss.IndexFlatIP(d)
    quantiser.add(np.ascontiguousarray(parts.centroids))
    ivf = faiss.IndexIVFScalarQuantizer(
        quantiser, d, len(parts.centroids), faiss.ScalarQuantizer.QT_8bit,
        faiss.METRIC_INNER_PRODUCT,
    )  # fmt: skip
    faiss.copy_array_to_vector(np.ascontiguousarray(parts.trained), ivf.sq.trained)
    ivf.is_trained = True
    for start in range(0, len(vectors), _CHUNK):
        chunk = np.ascontiguousarray(vectors[start : start + _CHUNK], np.float32)
        cells = np.ascontiguousarray(parts.assignment[start : start + len(chunk)])
        ids = np.arange(start, start + len(chunk), dtype=np.int64)
        ivf.add_core(len(chunk), faiss.swig_ptr(chunk), faiss.swig_ptr(ids), faiss.swig_ptr(cells))
    return ivf


def _build_ivf(vectors: np.ndarray) -> Any:
    """IVF-SQ8 with about 4 sqrt(N) cells (at least 40 vectors each), trained on a seeded
    sample of 40 a cell."""
    faiss = _faiss()
    n, d = vectors.shape
    cells = max(1, min(int(4 * math.sqrt(n)), n // 40))
    quantiser = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFScalarQuantizer(
        quantiser, d, cells, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    sample = np.sort(np.random.default_rng(0).choice(n, min(n, 40 * cells), replace=False))
    ivf.train(np.ascontiguousarray(vectors[sample]))
    for start in range(0, n, _CHUNK):
        ivf.add(np.ascontiguousarray(vectors[start : start + _CHUNK]))
    return ivf


def kmeans(vectors: np.ndarray, k: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means on a seeded sample of up to 512 points a cluster (scikit-learn, k-means++ starts,
    the best of up to 10), then every vector assigned to its nearest centre by faiss:
    ``(centres (k, D) normalised, labels (N,))``. The sample keeps the cost flat past 50k."""
    from sklearn.cluster import KMeans

    faiss = _faiss()
    size = min(len(vectors), 512 * k)
    sample = np.sort(np.random.default_rng(seed).choice(len(vectors), size, replace=False))
    starts = max(1, min(10, 150_000 // size))  # best of 10 on small sets, of 2 from 75k points
    fitted = KMeans(n_clusters=k, random_state=seed, n_init=starts).fit(np.asarray(vectors[sample]))
    centres = fitted.cluster_centers_ / np.linalg.norm(
        fitted.cluster_centers_, axis=1, keepdims=True
    )
    centres = np.ascontiguousarray(centres, np.float32)
    labels = np.zeros(len(vectors), np.int64)
    for start in range(0, len(vectors), _CHUNK):
        chunk = np.ascontiguousarray(vectors[start : start + _CHUNK], np.float32)
        labels[start : start + len(chunk)] = faiss.knn(
            chunk, centres, 1, metric=faiss.METRIC_INNER_PRODUCT
        )[1][:, 0]
    return centres, labels

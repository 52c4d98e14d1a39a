"""Nearest neighbours and k-means of L2-normalised vectors, with faiss.

Up to :data:`EXACT_LIMIT` vectors every search is exact (``faiss.knn``: blocked BLAS, no copy
of the vectors). Above it an inverted-file index of 8-bit scalar-quantised vectors (IVF-SQ8,
a quarter of the vectors' size) proposes :data:`CANDIDATES` x k candidates from
:data:`PROBES` cells, and those are re-scored exactly against the vectors, so the scores
returned are exact cosines and only a true neighbour outside the probed cells can be missed.
Measured in ``benchmarks/index_scale.py`` (recall@10 against exact search).

Near-duplicate pairs come from a range search over the same index (a margin below the
threshold for the quantisation, then checked exactly); k-means runs on a sample and faiss
assigns every vector to its centre.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

EXACT_LIMIT = 20_000
"""Largest number of vectors searched exactly; above it the IVF-SQ8 index takes over."""
PROBES = 16
"""Cells of the IVF index visited per query."""
CANDIDATES = 4
"""Candidates per wanted neighbour that the IVF index proposes for exact re-scoring."""
_DUPLICATE_PROBES = 4  # near-duplicates share a cell (or a neighbouring one) all but always
_QUANTISATION_MARGIN = 0.02  # how far an 8-bit score may fall below the exact cosine
_FLOAT_SLACK = 1e-6  # float32 cosines of identical images can come out just below 1
_CHUNK = 65_536


def _faiss() -> Any:
    import faiss

    return faiss


class Neighbours:
    """Search over ``vectors`` (``(N, D)`` float32, L2-normalised; a memory map is fine).

    Args:
        vectors: The vectors; never copied by exact search.
        index: A serialised IVF-SQ8 index of these vectors (from :meth:`serialised`), if any.
    """

    def __init__(self, vectors: np.ndarray, index: np.ndarray | None = None) -> None:
        self.vectors = vectors
        self._ivf = None if index is None else read_index(index, vectors.shape)

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

    def pairs(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """Every pair ``(i, j)``, ``i < j``, of vectors at least ``threshold`` cosine-similar
        (exhaustive up to :data:`EXACT_LIMIT`; above, found through the IVF index)."""
        n = len(self.vectors)
        found_i, found_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        if not self.approximate:
            for start in range(0, n, 2048):  # each block against itself and the vectors after it
                block = self.vectors[start : start + 2048] @ np.asarray(self.vectors[start:]).T
                i, j = np.nonzero(block >= threshold - _FLOAT_SLACK)
                found_i.append(i + start)
                found_j.append(j + start)
        else:
            ivf = self._index()
            ivf.nprobe = _DUPLICATE_PROBES
            for start in range(0, n, _CHUNK):
                chunk = np.ascontiguousarray(self.vectors[start : start + _CHUNK])
                limits, _, ids = ivf.range_search(chunk, threshold - _QUANTISATION_MARGIN)
                rows = np.repeat(np.arange(len(chunk)), np.diff(limits.astype(np.int64))) + start
                exact = np.einsum("ij,ij->i", self.vectors[rows], self.vectors[ids])
                keep = exact >= threshold - _FLOAT_SLACK
                found_i.append(rows[keep])
                found_j.append(ids[keep].astype(np.int64))
        i, j = np.concatenate(found_i), np.concatenate(found_j)
        # A pair may be found from one side only (its other end probed other cells).
        pairs = np.unique(np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1), axis=0)
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        return pairs[:, 0], pairs[:, 1]

    def groups(self, threshold: float) -> np.ndarray:
        """A group id per vector: vectors at least ``threshold`` cosine-similar (transitively,
        through :meth:`pairs`) share one."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        n = len(self.vectors)
        i, j = self.pairs(threshold)
        graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
        return np.asarray(connected_components(graph, directed=False)[1], np.int64)

    def serialised(self) -> np.ndarray | None:
        """The IVF index as bytes (``uint8``) for saving, built if this size needs one."""
        if not self.approximate:
            return None
        return np.asarray(_faiss().serialize_index(self._index()))

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


def members_of(group_ids: np.ndarray) -> list[np.ndarray]:
    """The positions of each group's members, given a group id per position: groups in order
    of their ids, members in order of position."""
    order = np.argsort(group_ids, kind="stable")
    boundaries = np.flatnonzero(np.diff(group_ids[order])) + 1
    return np.split(order, boundaries) if len(order) else []


def read_index(data: np.ndarray, shape: tuple[int, ...]) -> Any:
    """A serialised IVF index, checked to be one of ``shape`` vectors.

    Raises:
        ValueError: It cannot be read, or is not an IVF index of that many vectors of that
            dimension.
    """
    faiss = _faiss()
    try:
        index = faiss.deserialize_index(np.ascontiguousarray(data, np.uint8))
    except RuntimeError as e:
        raise ValueError(f"its IVF index cannot be read ({str(e).splitlines()[0]})") from None
    if not isinstance(index, faiss.IndexIVF) or (index.ntotal, index.d) != tuple(shape):
        raise ValueError(f"its IVF index is not one of {shape[0]} vectors of {shape[1]} values")
    return index


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

"""Near-duplicate groups that do not chain: leader grouping, in bounded memory.

Rows are taken in order (for a store: the order images were embedded). Each row joins the
group of its most similar row placed before it (earlier, or kept from an earlier answer) when
that group's **leader** is at least ``threshold`` cosine-similar to it too (so a near-copy stays
with what it copies), else the group of the most similar leader at least ``threshold``
similar, or becomes the leader of a new group. So every member of a group is within the
threshold of its leader, whatever the other members are like: a slow drift of similar images
(a video, a class the model packs tightly) never becomes one group, as connected components of
the threshold graph do. Leaders are less than ``threshold`` similar to each other (while the
search is exact; above that, an inverted-file search may miss a leader in reach, rarely).

No pair list is ever built: each row needs only its nearest placed row and nearest leader
(faiss, exact while that is cheap, an inverted-file index above; the search for a near-copy
scans a bounded number of 8-bit codes per row), so a folder of identical frames costs memory
in proportion to its size. Groups can be updated: rows whose leader is gone, and new rows, are
placed again; the others keep their group.

Example:
    >>> import numpy as np
    >>> v = np.array([[1, 0], [0.999, 0.045], [0.995, 0.0999], [0, 1]], np.float32)
    >>> leaders(v / np.linalg.norm(v, axis=1, keepdims=True), 0.998).tolist()
    [0, 0, 2, 3]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autodistill_metaclip.index.neighbours import EXACT_LIMIT

_BLOCK = 2048  # rows placed together (their similarities to each other: 16 MB)
_FLOAT_SLACK = 1e-6  # float32 cosines of identical images can come out just below 1
_CHUNK = 65_536  # rows gathered at once for an exact search
_EXACT_BUDGET = 4e10  # multiply-adds above which a search gets an inverted-file index
_MAX_CODES = 8192  # codes one query for a near-copy scans at most
_CODE_SLACK = 0.01  # how far below its true cosine an 8-bit code's score may come out


def leaders(vectors: np.ndarray, threshold: float, known: np.ndarray | None = None) -> np.ndarray:
    """The leader of each row's group, as a row number (a leader is its own).

    Args:
        vectors: ``(N, D)`` L2-normalised float32 (a memory map is fine), in the order rows are
            placed.
        threshold: The cosine a row needs to its leader.
        known: An earlier answer to keep: ``known[i]`` is row ``i``'s leader, or -1 for a row to
            place (new, or its leader is gone). A kept row's leader must be a kept leader.
    """
    n = len(vectors)
    leader = np.full(n, -1, np.int64) if known is None else np.asarray(known, np.int64).copy()
    if n == 0:
        return leader
    todo = np.flatnonzero(leader < 0)
    coarse = _coarse(vectors, len(todo))
    led = _Nearest(vectors, np.flatnonzero(leader == np.arange(n)), coarse)
    placed = _Nearest(vectors, np.flatnonzero(leader >= 0), coarse, copies_only=True)
    floor = threshold - _FLOAT_SLACK
    for start in range(0, len(todo), _BLOCK):
        block = todo[start : start + _BLOCK]
        queries = np.ascontiguousarray(vectors[block], np.float32)
        leader_scores, leader_found = led.nearest(queries)
        near_scores, near_found = placed.nearest(queries)
        within = queries @ queries.T  # the rows of this block to each other
        new: list[int] = []  # positions in the block of rows that became leaders
        for j, row in enumerate(block.tolist()):
            near, closest = float(near_scores[j]), int(near_found[j])
            if j and float(within[j, :j].max()) > near:  # an earlier row of this block
                k = int(np.argmax(within[j, :j]))
                near, closest = float(within[j, k]), int(block[k])
            if closest >= 0 and near >= floor - _CODE_SLACK:  # stay with a near-copy it follows
                candidate = int(leader[closest])
                copy = float(queries[j] @ np.asarray(vectors[closest], np.float32))
                reach = float(queries[j] @ np.asarray(vectors[candidate], np.float32))
                if copy >= floor and reach >= floor:
                    leader[row] = candidate
                    continue
            best, chosen = float(leader_scores[j]), int(leader_found[j])
            if new:
                similar = within[j, new]
                k = int(np.argmax(similar))
                if similar[k] > best:
                    best, chosen = float(similar[k]), int(block[new[k]])
            if chosen >= 0 and best >= floor:
                leader[row] = chosen
            else:
                leader[row] = row
                new.append(j)
        led.add(block[new], queries[new])
        placed.add(block, queries)
    return leader


def group_members(leader: np.ndarray) -> list[np.ndarray]:
    """The rows of each group (leader first, then in row order), groups in the order of their
    leaders."""
    rows = np.arange(len(leader))
    order = np.lexsort((rows, rows != leader, leader))
    bounds = np.flatnonzero(np.diff(leader[order])) + 1
    return np.split(order, bounds) if len(order) else []


class _Nearest:
    """The nearest of a growing set of rows to each query: exact (blocks of rows gathered from
    the memory map) without a ``coarse`` quantiser, else an inverted-file index on it. With
    ``copies_only`` the index keeps 8-bit codes (a quarter of the vectors' size) and each query
    scans at most :data:`_MAX_CODES` of them (a folder of identical images, all in one cell,
    costs no more per query): it is asked only for a near-copy, whose score the caller checks
    exactly."""

    def __init__(
        self, vectors: np.ndarray, initial: np.ndarray, coarse: Any, *, copies_only: bool = False
    ) -> None:
        import faiss

        self.faiss, self.vectors = faiss, vectors
        self.rows = np.asarray(initial, np.int64)  # the rows searched, in the order added
        self.ivf: Any = None
        if coarse is None:
            return
        d, cells = vectors.shape[1], coarse.ntotal
        metric = faiss.METRIC_INNER_PRODUCT
        self.params = faiss.SearchParametersIVF()
        self.params.nprobe = 8
        if copies_only:
            self.ivf = faiss.IndexIVFScalarQuantizer(
                coarse, d, cells, faiss.ScalarQuantizer.QT_8bit, metric
            )
            self.ivf.train(_sample(vectors, cells))  # the codes' ranges: the cells are trained
            self.params.max_codes = _MAX_CODES
        else:
            self.ivf = faiss.IndexIVFFlat(coarse, d, cells, metric)
        for start in range(0, len(initial), _CHUNK):
            self.ivf.add(gather(vectors, initial[start : start + _CHUNK]))

    def nearest(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(score, row)`` of each query; row -1 (score -inf) where there is none."""
        best = np.full(len(queries), -np.inf, np.float32)
        row = np.full(len(queries), -1, np.int64)
        if not len(self.rows):
            return best, row
        if self.ivf is not None:
            scores, ids = self.ivf.search(queries, 1, params=self.params)
            ok = ids[:, 0] >= 0
            best[ok], row[ok] = scores[ok, 0], self.rows[ids[ok, 0]]
            return best, row
        for start in range(0, len(self.rows), _CHUNK):
            chunk = self.rows[start : start + _CHUNK]
            scores, ids = self.faiss.knn(
                queries, gather(self.vectors, chunk), 1, metric=self.faiss.METRIC_INNER_PRODUCT
            )
            better = scores[:, 0] > best
            best[better], row[better] = scores[better, 0], chunk[ids[better, 0]]
        return best, row

    def add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Search ``rows`` (with these vectors) too."""
        if not len(rows):
            return
        self.rows = np.concatenate([self.rows, rows])
        if self.ivf is not None:
            self.ivf.add(np.ascontiguousarray(vectors, np.float32))


def _coarse(vectors: np.ndarray, queries: int) -> Any:
    """The trained cells of an inverted-file index over ``vectors``, or ``None`` while exact
    search of ``queries`` against all rows is cheap."""
    import faiss

    n, d = vectors.shape
    if n <= EXACT_LIMIT or queries * n * d <= _EXACT_BUDGET:
        return None
    cells = max(1, min(int(4 * math.sqrt(n)), n // 40))
    coarse = faiss.IndexFlatIP(d)
    clustering = faiss.Clustering(d, cells)
    clustering.spherical = True  # as an inner-product IVF trains its cells
    clustering.train(_sample(vectors, cells), coarse)
    return coarse


def _sample(vectors: np.ndarray, cells: int) -> np.ndarray:
    n = len(vectors)
    rows = np.sort(np.random.default_rng(0).choice(n, min(n, 40 * cells), replace=False))
    return np.ascontiguousarray(vectors[rows], np.float32)


def gather(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``vectors[rows]`` as a float32 array in memory, read in file order (for a memory map:
    each page once)."""
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), vectors.shape[1]), np.float32)
    out[order] = vectors[rows[order]]
    return out

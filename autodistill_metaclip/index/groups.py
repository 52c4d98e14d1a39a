"""Near-duplicate groups that do not chain: leader grouping, in bounded memory.

Rows are taken in order (for a store: the order images were embedded). Each row joins the
group of its most similar earlier row when that group's **leader** is at least ``threshold``
cosine-similar to it too (so a near-copy stays with what it copies), else the group of the most
similar leader at least ``threshold`` similar, or becomes the leader of a new group. So every
member of a group is within the threshold of its leader, whatever the other members are like: a
slow drift of similar images (a video, a class the model packs tightly) never becomes one
group, as connected components of the threshold graph do. Leaders are less than ``threshold``
similar to each other.

No pair list is ever built: each row needs only its nearest earlier row and nearest leader
(faiss, exact while that is cheap, an inverted-file index above, each query's work capped),
so a folder of identical frames costs memory in proportion to its size. Groups can be
updated: rows whose leader is gone, and new rows, are placed again; the others keep their group.

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
_MAX_CODES = 8192  # vectors one query of an inverted-file index scans at most


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
    led = _Nearest(vectors, np.flatnonzero(leader == np.arange(n)), len(todo))
    placed = _Nearest(vectors, np.flatnonzero(leader >= 0), len(todo))
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
            if closest >= 0 and near >= floor:  # stay with the near-duplicate it follows
                candidate = int(leader[closest])
                if float(queries[j] @ np.asarray(vectors[candidate], np.float32)) >= floor:
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
    the memory map) while that is cheap, else an inverted-file index trained on a sample of all
    rows, each query scanning at most :data:`_MAX_CODES` vectors (so that a folder of identical
    images, all in one cell, costs no more per query)."""

    def __init__(self, vectors: np.ndarray, initial: np.ndarray, queries: int) -> None:
        import faiss

        self.faiss, self.vectors = faiss, vectors
        self.rows = list(initial.tolist())  # the rows searched, in the order added
        n, d = vectors.shape
        expected = len(initial) + queries
        self.ivf: Any = None
        if n > EXACT_LIMIT and queries * expected * d > _EXACT_BUDGET:
            cells = max(1, min(int(4 * math.sqrt(n)), n // 40))
            sample = np.sort(np.random.default_rng(0).choice(n, min(n, 40 * cells), replace=False))
            quantiser = faiss.IndexFlatIP(d)
            self.ivf = faiss.IndexIVFFlat(quantiser, d, cells, faiss.METRIC_INNER_PRODUCT)
            self.ivf.train(np.ascontiguousarray(vectors[sample], np.float32))
            self.params = faiss.SearchParametersIVF()
            self.params.nprobe, self.params.max_codes = 8, _MAX_CODES
            for start in range(0, len(initial), _CHUNK):
                self.ivf.add(gather(vectors, initial[start : start + _CHUNK]))

    def nearest(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(score, row)`` of each query; row -1 (score -inf) where there is none."""
        best = np.full(len(queries), -np.inf, np.float32)
        row = np.full(len(queries), -1, np.int64)
        if not self.rows:
            return best, row
        if self.ivf is not None:
            scores, ids = self.ivf.search(queries, 1, params=self.params)
            ok = ids[:, 0] >= 0
            rows = np.asarray(self.rows, np.int64)
            best[ok], row[ok] = scores[ok, 0], rows[ids[ok, 0]]
            return best, row
        rows = np.asarray(self.rows, np.int64)
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
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
        self.rows += rows.tolist()
        if self.ivf is not None:
            self.ivf.add(np.ascontiguousarray(vectors, np.float32))


def gather(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``vectors[rows]`` as a float32 array in memory, read in file order (for a memory map:
    each page once)."""
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), vectors.shape[1]), np.float32)
    out[order] = vectors[rows[order]]
    return out

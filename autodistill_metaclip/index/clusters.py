"""k-means clusters of embeddings: members closest to the centre first, named from candidates.

Example:
    >>> clustering = index.clusters(8, names=["dogs", "cats"], model=model)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autodistill_metaclip.index.neighbours import kmeans


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
    """Clusters, and each row's cluster id (for an index: in ``index.paths`` order)."""

    labels: np.ndarray
    clusters: list[Cluster]


def cluster(
    embeddings: np.ndarray,
    location: Callable[[int], Path | str],
    k: int,
    *,
    seed: int = 0,
    representatives: int = 6,
    names: list[str] | None = None,
    name_vectors: np.ndarray | None = None,
) -> Clustering:
    """k-means on ``embeddings`` (unit rows); ``location(row)`` names a member. With candidate
    ``names`` and their text embeddings ``name_vectors``, each cluster is named by the candidate
    closest to its centre, each name given once while names last (the best total match), then
    again with a number: no two clusters share a name."""
    if (names is None) != (name_vectors is None) or (
        names is not None and name_vectors is not None and len(names) != len(name_vectors)
    ):
        raise ValueError("cluster: give names and name_vectors together, one vector per name")
    centres, labels = kmeans(embeddings, k, seed=seed)
    scores = None if name_vectors is None else centres @ name_vectors.T
    chosen = _names(scores, names or [], labels)
    clusters = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        if not len(members):
            continue  # k close to the number of distinct images leaves some empty
        closest = members[np.argsort(-(embeddings[members] @ centres[c]), kind="stable")]
        best = chosen.get(c)
        clusters.append(
            Cluster(
                id=c,
                members=[location(i) for i in closest.tolist()],
                representatives=[location(i) for i in closest[:representatives].tolist()],
                name=None if best is None else best[0],
                name_score=None if best is None else best[1],
            )
        )
    return Clustering(labels=labels, clusters=clusters)


def _names(
    scores: np.ndarray | None, names: list[str], labels: np.ndarray
) -> dict[int, tuple[str, float]]:
    """Each non-empty cluster's name and its score: names matched to clusters one to one by
    the best total score, then the clusters left over named by their best name and a number."""
    if scores is None or not names:
        return {}
    from scipy.optimize import linear_sum_assignment

    used = [c for c in range(len(scores)) if np.any(labels == c)]
    rows, columns = linear_sum_assignment(-scores[used])
    chosen = {
        used[r]: (names[c], float(scores[used[r], c])) for r, c in zip(rows, columns, strict=True)
    }
    times: dict[str, int] = {}
    for c in used:
        if c not in chosen:
            best = int(np.argmax(scores[c]))
            times[names[best]] = times.get(names[best], 1) + 1
            chosen[c] = (f"{names[best]} ({times[names[best]]})", float(scores[c, best]))
    return chosen

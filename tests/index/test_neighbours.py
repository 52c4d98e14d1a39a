"""faiss-backed neighbours: exact below the limit; above it, IVF candidates re-scored exactly,
measured against exact search on clustered vectors with planted near-duplicates."""

from __future__ import annotations

import numpy as np
import pytest

from autodistill_metaclip.index import neighbours
from autodistill_metaclip.index.neighbours import Neighbours, kmeans
from tests.helpers import clustered


@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(neighbours, "EXACT_LIMIT", 500)


def test_approximate_search_finds_the_exact_neighbours(small_limit) -> None:
    vectors = clustered(5000)
    queries = clustered(200, seed=1)[:, :]
    exact = (queries @ vectors.T).argsort(axis=1)[:, ::-1][:, :10]
    search = Neighbours(vectors)
    assert search.approximate
    scores, ids = search.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact, strict=True)])
    assert recall >= 0.95
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, ids, 1), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_kmeans_recovers_the_centres() -> None:
    vectors = clustered(2000, d=32, seed=4)[:, :]
    centres, labels = kmeans(vectors, 40, seed=0)
    assert centres.shape == (40, 32) and labels.shape == (2000,)
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 1, atol=1e-5)
    assert (labels == (vectors @ centres.T).argmax(axis=1)).mean() > 0.99

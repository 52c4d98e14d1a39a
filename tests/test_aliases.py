"""The 0.2 module names still import, with a DeprecationWarning naming the new place."""

from __future__ import annotations

import importlib
import sys

import pytest

MOVED = {
    "neighbours": "index.neighbours",
    "dedup": "index.dedup",
    "review": "labeling.review",
    "corrections": "labeling.corrections",
}


@pytest.mark.parametrize(("old", "new"), MOVED.items())
def test_an_old_module_name_warns_and_gives_the_new_module(old: str, new: str) -> None:
    sys.modules.pop(f"autodistill_metaclip.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"is now autodistill_metaclip.{new}"):
        alias = importlib.import_module(f"autodistill_metaclip.{old}")
    current = importlib.import_module(f"autodistill_metaclip.{new}")
    public = [n for n in vars(current) if not n.startswith("_") and n in vars(alias)]
    assert public and all(getattr(alias, n) is getattr(current, n) for n in public)


def test_the_index_names_of_0_2_still_import() -> None:
    from autodistill_metaclip.index import Cluster, Clustering, EmbeddingIndex, Hit, model_info
    from autodistill_metaclip.index.clusters import Cluster as MovedCluster
    from autodistill_metaclip.index.core import EmbeddingIndex as MovedIndex

    assert Cluster is MovedCluster and EmbeddingIndex is MovedIndex
    assert callable(model_info) and Clustering.__name__ == "Clustering" and Hit.__name__ == "Hit"

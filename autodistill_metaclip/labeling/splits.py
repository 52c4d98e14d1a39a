"""Train/valid/test splits that keep classes in proportion and near-duplicates together.

Within each predicted class, images whose embeddings are at least ``threshold`` cosine-similar
are grouped (connected components: a burst, re-encodes and resized copies of one photo), and
each group goes to one split, so no near-copy sits in train while its twin is in test. Groups
are dealt to the split furthest below its share of the class, largest groups first, ties in a
seeded random order: the same images, embeddings and seed always give the same split, and every
class of a few images or more reaches every split with a non-zero fraction.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from autodistill_metaclip.index.neighbours import Neighbours, members_of
from autodistill_metaclip.labeling.options import Split


def near_duplicate_groups(vectors: np.ndarray, threshold: float | None) -> np.ndarray:
    """A group id per row: rows at least ``threshold`` cosine-similar (transitively) share one.

    ``vectors`` are L2-normalised; ``None`` puts every row in a group of its own.
    """
    if threshold is None or len(vectors) < 2:
        return np.arange(len(vectors))
    return Neighbours(vectors).groups(threshold)


def assign(
    classes: Sequence[str],
    vectors: np.ndarray,
    fractions: Split,
    *,
    seed: int,
    threshold: float | None,
) -> np.ndarray:
    """A split index (0 train, 1 valid, 2 test) for each image, given its predicted class and
    embedding (rows in a fixed order, e.g. sorted by file)."""
    target = np.asarray(fractions, np.float64)
    out = np.zeros(len(classes), np.int64)
    labels = np.asarray(classes, dtype=object)
    for name in sorted(set(classes)):
        # One generator per class: a class's split does not move when another class changes.
        rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
        members = np.flatnonzero(labels == name)
        groups = [
            members[g] for g in members_of(near_duplicate_groups(vectors[members], threshold))
        ]
        shuffled = rng.permutation(len(groups))
        order = sorted(shuffled, key=lambda g: -len(groups[g]))  # stable: random among equals
        counts = np.zeros(3)
        for g in order:
            deficit = target * len(members) - counts
            deficit[target == 0] = -np.inf  # a split of fraction 0 gets nothing
            chosen = int(rng.choice(np.flatnonzero(deficit == deficit.max())))  # ties: random
            out[groups[g]] = chosen
            counts[chosen] += len(groups[g])
    return out

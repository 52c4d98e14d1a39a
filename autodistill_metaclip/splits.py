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
from typing import Any, TypeAlias

import numpy as np

from autodistill_metaclip.neighbours import Neighbours

Split: TypeAlias = tuple[float, float, float]


def check_split(split: Any) -> Split:
    """Three finite, non-negative fractions (train, valid, test) that sum to 1."""
    try:
        values = tuple(float(v) for v in split)
    except (TypeError, ValueError):
        values = ()
    if (
        len(values) != 3
        or not all(np.isfinite(values))
        or min(values) < 0
        or abs(sum(values) - 1) > 1e-6
    ):
        raise ValueError(
            f"split: expected three fractions (train, valid, test) summing to 1, but got {split!r}"
        )
    return values[0], values[1], values[2]


def check_threshold(threshold: Any) -> float | None:
    """``None`` (no grouping) or a cosine in (0, 1]."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise TypeError(f"near_duplicates: expected a cosine or None, but got {threshold!r}")
    if not 0 < float(threshold) <= 1:
        raise ValueError(f"near_duplicates: expected a cosine in (0, 1], but got {threshold!r}")
    return float(threshold)


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
        group_of = near_duplicate_groups(vectors[members], threshold)
        order_by_group = np.argsort(group_of, kind="stable")
        boundaries = np.flatnonzero(np.diff(group_of[order_by_group])) + 1
        groups = np.split(members[order_by_group], boundaries)
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

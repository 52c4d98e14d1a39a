"""Train/valid/test splits that keep classes in proportion, near-duplicates together, and
images where they are when others come and go.

A near-duplicate group (:mod:`autodistill_metaclip.index.groups`: every member within the
threshold of its leader) goes to one split whole, so no near-copy sits in train while its twin is
in test; a group belongs to the class most of its members have (ties: the first class by
name). Within each class, the groups are ordered by a seeded hash of their leader's key, and
cut in that order at the split fractions (each group by where its middle falls). So:

- the same images, groups and seed always give the same split (a fresh run and a re-derived
  one agree);
- a group's place in the order does not depend on the other images: adding or removing an
  image moves only the few groups next to a cut, never the rest;
- every split of non-zero fraction gets at least one group of each class that has enough
  groups (a split left empty by the cuts takes the nearest small group from a split that can
  spare it).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from autodistill_metaclip.labeling.options import Split


def assign(
    keys: Sequence[str],
    classes: Sequence[str],
    leaders: Sequence[str],
    fractions: Split,
    *,
    seed: int,
) -> np.ndarray:
    """A split index (0 train, 1 valid, 2 test) for each image.

    Args:
        keys: The images (their keys), each once.
        classes: Each image's class (the model's, so a human's correction moves no split).
        leaders: Each image's group, named by its leader's key (``keys[i]`` itself for an image
            alone).
        fractions: Train, valid and test fractions (summing to 1).
        seed: Seed of the order.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, leader in enumerate(leaders):
        groups[leader].append(i)
    by_class: dict[str, list[str]] = defaultdict(list)
    for leader, members in groups.items():
        votes = Counter(classes[i] for i in members)
        by_class[min(votes, key=lambda c: (-votes[c], c))].append(leader)  # ties: by name
    out = np.zeros(len(keys), np.int64)
    bounds = np.cumsum(np.asarray(fractions, np.float64))
    for name, leaders_of_class in by_class.items():
        ordered = sorted(leaders_of_class, key=lambda leader: _rank(seed, name, leader))
        sizes = np.array([len(groups[leader]) for leader in ordered], np.float64)
        middles = (np.cumsum(sizes) - sizes / 2) / sizes.sum()
        chosen = np.searchsorted(bounds, middles, side="right").clip(0, 2)
        chosen = _fill_empty(chosen, middles, sizes, np.asarray(fractions, np.float64), bounds)
        for leader, split in zip(ordered, chosen.tolist(), strict=True):
            out[groups[leader]] = split
    return out


def _rank(seed: int, name: str, leader: str) -> bytes:
    """A group's place in its class's order: a hash of the seed, the class and the leader."""
    return hashlib.sha256(f"{seed}\x00{name}\x00{leader}".encode()).digest()


def _fill_empty(
    chosen: np.ndarray,
    middles: np.ndarray,
    sizes: np.ndarray,
    fractions: np.ndarray,
    bounds: np.ndarray,
) -> np.ndarray:
    """Give each empty split of non-zero fraction the smallest group nearest to its interval,
    taken from a split that keeps at least one group."""
    chosen = chosen.copy()
    for split in np.flatnonzero(fractions > 0):
        while not np.any(chosen == split):
            counts = np.bincount(chosen, minlength=3)
            movable = np.flatnonzero(counts[chosen] > 1)
            if not len(movable):
                return chosen  # fewer groups than splits
            low = bounds[split - 1] if split else 0.0
            distance = np.maximum(low - middles[movable], middles[movable] - bounds[split])
            pick = movable[np.lexsort((sizes[movable], distance))[0]]  # nearest, then smallest
            chosen[pick] = split
    return chosen

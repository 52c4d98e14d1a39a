"""Leader grouping: every member within the threshold of its leader (no chaining), each row
placed once, bounded memory for a folder of identical images."""

from __future__ import annotations

import tracemalloc

import numpy as np

from autodistill_metaclip.index.groups import gather, group_members, leaders


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_a_slow_drift_does_not_chain_into_one_group() -> None:
    angles = np.linspace(0, 1.0, 500)  # neighbours 0.998 apart, ends 0.54 apart
    vectors = _unit(np.stack([np.cos(angles), np.sin(angles)], axis=1))
    found = leaders(vectors, 0.99)
    groups = group_members(found)
    assert 5 < len(groups) < 20
    for members in groups:
        assert members[0] == found[members[0]]  # the leader comes first
        assert float((vectors[members] @ vectors[members[0]]).min()) >= 0.99 - 1e-6


def test_each_row_joins_its_most_similar_leader() -> None:
    vectors = _unit([[1, 0, 0], [0, 1, 0], [0.9, 0.1, 0], [0.3, 0.95, 0]])
    assert leaders(vectors, 0.9).tolist() == [0, 1, 0, 1]
    assert leaders(vectors, 0.9999).tolist() == [0, 1, 2, 3]


def test_a_near_copy_stays_with_what_it_copies() -> None:
    # B joins A's group (8 degrees apart, within 10); C, 16 degrees from A, leads. B', a copy
    # of B, is nearer C (7.99) than A (8.01) as leaders go, yet must stay with B: A is in reach.
    degrees = np.radians([0, 8, 16, 8.01])
    vectors = _unit(np.stack([np.cos(degrees), np.sin(degrees)], axis=1))
    assert leaders(vectors, float(np.cos(np.radians(10)))).tolist() == [0, 0, 2, 0]
    # with the copy's own leader out of reach, it goes to the nearest leader in reach
    assert leaders(vectors, float(np.cos(np.radians(8.005)))).tolist() == [0, 0, 2, 2]


def test_identical_images_are_one_group_in_memory_proportional_to_them() -> None:
    def peak(n: int) -> int:
        vectors = np.tile(_unit(np.ones((1, 64))), (n, 1))
        tracemalloc.start()
        found = leaders(vectors, 0.98)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert set(found.tolist()) == {0}
        return top

    small, large = peak(5_000), peak(40_000)
    assert large < 12 * small  # 8x the images: no N^2 pair list (that would be 64x)


def test_known_leaders_are_kept_and_the_rest_placed() -> None:
    vectors = _unit([[1, 0], [1, 0.001], [0, 1], [0.001, 1]])
    known = np.array([0, 0, -1, -1])
    assert leaders(vectors, 0.99, known).tolist() == [0, 0, 2, 2]
    groups = group_members(np.array([2, 3, 2, 3, 2]))  # rows 2 and 3 lead
    assert [g.tolist() for g in groups] == [[2, 0, 4], [3, 1]]


def test_gather_reads_rows_in_any_order() -> None:
    vectors = np.arange(20, dtype=np.float32).reshape(10, 2)
    assert gather(vectors, np.array([7, 2, 7])).tolist() == [[14, 15], [4, 5], [14, 15]]

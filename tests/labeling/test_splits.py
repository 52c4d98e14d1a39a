"""Train/valid/test splits, as label() writes them: in proportion within each class, seeded and
deterministic, near-duplicates in one split, nothing in a split of fraction 0."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.labeling.splits import assign, near_duplicate_groups
from tests.helpers import SPLITS, TIGHT, copies, manifest, write_inputs


def _splits(output: Path) -> dict[str, str]:
    return {k: r["split"] for k, r in manifest(output).items()}


def test_split_is_reproducible_and_seeded(demo_model: MetaCLIP, tmp_path: Path) -> None:
    synthetic.write_folder(tmp_path / "in", 40, suffix=".png", seed=5)
    splits = []
    for run, seed in enumerate([3, 3, 4]):
        output = tmp_path / f"out{run}"
        demo_model.label(
            tmp_path / "in", ".png", output, seed=seed, near_duplicates=None, progress=False
        )
        splits.append(_splits(output))
    assert splits[0] == splits[1]
    assert splits[0] != splits[2]
    counts = [list(splits[0].values()).count(s) for s in SPLITS]
    assert sum(counts) == 40 and counts[0] > counts[1] > 0 and counts[2] > 0


@pytest.mark.parametrize("fractions", [(0.5, 0.25, 0.25), (0.6, 0.2, 0.2)])
def test_each_class_is_split_in_proportion(
    shapes_model: MetaCLIP, tmp_path: Path, fractions: tuple[float, float, float]
) -> None:
    """Every class (by the model's class) has within one image of its share in each split."""
    write_inputs(tmp_path / "in", {"red circle": 20, "blue square": 16, "green triangle": 10})
    shapes_model.label(
        tmp_path / "in",
        ".png",
        tmp_path / "out",
        split=fractions,
        near_duplicates=None,
        confidence=0.0,
        progress=False,
    )
    rows = manifest(tmp_path / "out").values()
    per_class = Counter((r["class"], r["split"]) for r in rows)
    for name in {r["class"] for r in rows}:
        size = sum(per_class[name, s] for s in SPLITS)
        for split, fraction in zip(SPLITS, fractions, strict=True):
            assert abs(per_class[name, split] - size * fraction) <= 1, (name, split)


def test_a_split_of_fraction_zero_gets_nothing(shapes_model: MetaCLIP, tmp_path: Path) -> None:
    write_inputs(tmp_path / "in", {"red circle": 9, "blue square": 9})
    shapes_model.label(
        tmp_path / "in",
        ".png",
        tmp_path / "out",
        split=(0.8, 0.2, 0.0),
        confidence=0.0,
        progress=False,
    )
    used = Counter(_splits(tmp_path / "out").values())
    assert used["test"] == 0 and used["train"] > used["valid"] > 0
    assert copies(tmp_path / "out", splits=["test"]) == []
    assert sorted(p.name for p in (tmp_path / "out" / "test").iterdir()) == sorted(
        {"red circle", "blue square", "green triangle", "yellow circle"}
    )  # every class keeps its (empty) folder
    shapes_model.label(
        tmp_path / "in", ".png", tmp_path / "all", split=(1, 0, 0), confidence=0.0, progress=False
    )
    assert set(_splits(tmp_path / "all").values()) == {"train"}


def test_a_split_does_not_depend_on_the_order_files_are_listed(
    shapes_model: MetaCLIP, tmp_path: Path
) -> None:
    """The same images under other names in another folder get the same splits."""
    truth = write_inputs(tmp_path / "a", {"red circle": 8, "blue square": 8})
    (tmp_path / "b").mkdir()
    for name in truth:
        (tmp_path / "b" / name).write_bytes((tmp_path / "a" / name).read_bytes())
    for folder in ("a", "b"):
        shapes_model.label(
            tmp_path / folder, ".png", tmp_path / f"{folder}-out", seed=7, progress=False
        )
    assert _splits(tmp_path / "a-out") == _splits(tmp_path / "b-out")


def test_every_class_reaches_every_split_and_near_duplicates_stay_together(
    shapes_model: MetaCLIP, tmp_path: Path
) -> None:
    counts = {"red circle": 10, "blue square": 25, "green triangle": 10, "yellow circle": 40}
    write_inputs(tmp_path / "in", counts, seed=4)
    twins = {}
    for i, path in enumerate(sorted((tmp_path / "in").glob("*.png"))[::6]):
        # a near-copy: 2 levels brighter, re-encoded as BMP (the demo model is too sensitive
        # to JPEG artefacts for JPEG twins to be near-duplicates in its embedding)
        twin = tmp_path / "in" / f"twin-{i:02d}.bmp"
        with Image.open(path) as image:
            image.point(lambda v: min(255, v + 2)).save(twin)
        twins[path.name] = twin.name
    shapes_model.label(
        tmp_path / "in", [".png", ".bmp"], tmp_path / "out", near_duplicates=TIGHT, progress=False
    )
    rows = manifest(tmp_path / "out")
    for label in counts:
        splits = [r["split"] for r in rows.values() if r["class"] == label]
        if len(splits) >= 10:
            assert {"train", "valid", "test"} <= set(splits), label
    both = [(a, b) for a, b in twins.items() if rows[a]["split"] and rows[b]["split"]]
    assert len(twins) == 15 and len(both) >= 12  # an unlabelled image is in no split at all
    assert [rows[a]["split"] == rows[b]["split"] for a, b in both] == [True] * len(both)


def test_byte_copies_share_a_split_without_a_threshold_of_their_own(
    shapes_model: MetaCLIP, tmp_path: Path
) -> None:
    """With the default threshold (0.98), exact copies of a file are near-duplicates: all of
    them land in one split, whatever the seed."""
    write_inputs(tmp_path / "in", {"red circle": 12})
    original = (tmp_path / "in" / "0000.png").read_bytes()
    for n in range(5):
        (tmp_path / "in" / f"copy-{n}.png").write_bytes(original)
    for seed in range(3):
        output = tmp_path / f"out{seed}"
        shapes_model.label(tmp_path / "in", ".png", output, seed=seed, progress=False)
        splits = _splits(output)
        assert len({splits["0000.png"], *(splits[f"copy-{n}.png"] for n in range(5))}) == 1


# --- the assignment itself, on vectors made here -------------------------------------------


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    """``n`` random unit vectors in 64 dimensions: no two near-duplicates."""
    vectors = np.random.default_rng(seed).standard_normal((n, 64)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_assign_deals_each_class_in_proportion() -> None:
    classes = ["a"] * 20 + ["b"] * 10 + ["c"] * 4
    chosen = assign(classes, _vectors(34), (0.5, 0.25, 0.25), seed=0, threshold=None)
    counts = Counter(zip(classes, chosen.tolist(), strict=True))
    assert [counts["a", s] for s in range(3)] == [10, 5, 5]
    assert counts["b", 0] == 5 and sorted([counts["b", 1], counts["b", 2]]) == [2, 3]
    assert [counts["c", s] for s in range(3)] == [2, 1, 1]  # a small class reaches every split


def test_assign_is_seeded_and_each_class_keeps_its_split() -> None:
    classes = ["a"] * 30 + ["b"] * 30
    vectors = _vectors(60)
    first = assign(classes, vectors, (0.7, 0.15, 0.15), seed=1, threshold=0.98)
    assert np.array_equal(
        first, assign(classes, vectors, (0.7, 0.15, 0.15), seed=1, threshold=0.98)
    )
    assert not np.array_equal(
        first, assign(classes, vectors, (0.7, 0.15, 0.15), seed=2, threshold=0.98)
    )
    alone = assign(classes[:30], vectors[:30], (0.7, 0.15, 0.15), seed=1, threshold=0.98)
    assert np.array_equal(first[:30], alone)  # class b's images do not move class a's


def test_assign_keeps_near_duplicates_in_one_split() -> None:
    vectors = _vectors(40)
    # rows 0-4: one picture and four copies a little off it; rows 10 and 11: a pair
    noise = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32) * 0.01
    vectors[1:5] = vectors[0] + noise
    vectors[11] = vectors[10]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert (vectors[1:5] @ vectors[0]).min() > 0.99
    for seed in range(5):
        chosen = assign(["a"] * 40, vectors, (0.6, 0.2, 0.2), seed=seed, threshold=0.98)
        assert len(set(chosen[:5].tolist())) == 1 and chosen[10] == chosen[11]
    groups = near_duplicate_groups(vectors, 0.98)
    assert len(set(groups[:5].tolist())) == 1 and groups[10] == groups[11]
    assert len(set(groups.tolist())) == 40 - 4 - 1
    assert near_duplicate_groups(vectors, None).tolist() == list(range(40))


def test_assign_gives_a_split_of_fraction_zero_nothing() -> None:
    classes = ["a"] * 13 + ["b"] * 7
    chosen = assign(classes, _vectors(20), (0.8, 0.2, 0.0), seed=3, threshold=None)
    assert 2 not in chosen.tolist() and (chosen == 1).sum() >= 2
    everything = assign(classes, _vectors(20), (0.0, 0.0, 1.0), seed=3, threshold=None)
    assert everything.tolist() == [2] * 20
    assert (
        assign(
            [], np.zeros((0, 64), np.float32), (0.7, 0.15, 0.15), seed=0, threshold=0.98
        ).tolist()
        == []
    )

"""Train/valid/test splits, as label() writes them: in proportion within each class, seeded and
deterministic, near-duplicates in one split, nothing in a split of fraction 0."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.labeling.splits import assign
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


# --- the assignment itself, on groups made here --------------------------------------------


def _keys(n: int) -> list[str]:
    return [f"img-{i:03d}.png" for i in range(n)]


def test_assign_deals_each_class_in_proportion() -> None:
    keys, classes = _keys(34), ["a"] * 20 + ["b"] * 10 + ["c"] * 4
    chosen = assign(keys, classes, keys, (0.5, 0.25, 0.25), seed=0)
    counts = Counter(zip(classes, chosen.tolist(), strict=True))
    assert [counts["a", s] for s in range(3)] == [10, 5, 5]
    assert counts["b", 0] == 5 and sorted([counts["b", 1], counts["b", 2]]) == [2, 3]
    assert [counts["c", s] for s in range(3)] == [2, 1, 1]  # a small class reaches every split


@pytest.mark.parametrize("size", [3, 4, 10, 11, 37])
def test_assign_gives_every_class_every_split_it_can(size: int) -> None:
    keys = _keys(size)
    for seed in range(20):
        chosen = assign(keys, ["a"] * size, keys, (0.7, 0.15, 0.15), seed=seed)
        assert set(chosen.tolist()) == {0, 1, 2}, (size, seed)


def test_assign_is_seeded_and_each_class_keeps_its_split() -> None:
    keys, classes = _keys(60), ["a"] * 30 + ["b"] * 30
    first = assign(keys, classes, keys, (0.7, 0.15, 0.15), seed=1)
    assert np.array_equal(first, assign(keys, classes, keys, (0.7, 0.15, 0.15), seed=1))
    assert not np.array_equal(first, assign(keys, classes, keys, (0.7, 0.15, 0.15), seed=2))
    alone = assign(keys[:30], classes[:30], keys[:30], (0.7, 0.15, 0.15), seed=1)
    assert np.array_equal(first[:30], alone)  # class b's images do not move class a's


def test_adding_or_removing_an_image_moves_at_most_a_few_others() -> None:
    keys, classes = _keys(200), ["a"] * 200
    before = dict(zip(keys, assign(keys, classes, keys, (0.7, 0.15, 0.15), seed=0), strict=True))
    more = [*keys, "new.png"]
    after = dict(
        zip(more, assign(more, [*classes, "a"], more, (0.7, 0.15, 0.15), seed=0), strict=True)
    )
    assert sum(before[k] != after[k] for k in keys) <= 2  # only groups next to a cut
    fewer = keys[1:]
    after = dict(
        zip(fewer, assign(fewer, classes[1:], fewer, (0.7, 0.15, 0.15), seed=0), strict=True)
    )
    assert sum(before[k] != after[k] for k in fewer) <= 2


def test_assign_keeps_a_group_in_one_split_and_gives_it_its_members_class() -> None:
    keys = _keys(40)
    leaders = list(keys)
    leaders[1:5] = [keys[0]] * 4  # rows 0-4: one group
    leaders[11] = keys[10]  # rows 10 and 11: a pair, predicted as different classes
    classes = ["a"] * 40
    classes[11] = "b"
    classes[3] = classes[4] = "b"  # the group of five: three a, two b
    for seed in range(10):
        chosen = assign(keys, classes, leaders, (0.6, 0.2, 0.2), seed=seed)
        assert len(set(chosen[:5].tolist())) == 1 and chosen[10] == chosen[11]
    # a group belongs to most of its members' class: the five split as if all were "a"
    mixed = assign(keys, classes, leaders, (0.6, 0.2, 0.2), seed=0)
    all_a = ["b" if i == 11 else "a" for i in range(40)]
    assert np.array_equal(mixed[:5], assign(keys, all_a, leaders, (0.6, 0.2, 0.2), seed=0)[:5])


def test_assign_gives_a_split_of_fraction_zero_nothing() -> None:
    keys, classes = _keys(20), ["a"] * 13 + ["b"] * 7
    chosen = assign(keys, classes, keys, (0.8, 0.2, 0.0), seed=3)
    assert 2 not in chosen.tolist() and (chosen == 1).sum() >= 2
    assert assign(keys, classes, keys, (0.0, 0.0, 1.0), seed=3).tolist() == [2] * 20
    assert assign([], [], [], (0.7, 0.15, 0.15), seed=0).tolist() == []


def test_a_class_the_model_packs_tightly_still_reaches_every_split(
    demo_model: MetaCLIP, tmp_path: Path
) -> None:
    """At 0.98 the demo model puts most images of a class within the threshold of some other
    (connected components made one group of a whole class, in one split); leader groups do not
    chain, so every class of ten or more images reaches every split."""
    synthetic.write_folder(tmp_path / "in", 120, suffix=".png", seed=6)
    demo_model.label(
        tmp_path / "in", ".png", tmp_path / "out", near_duplicates=0.98, progress=False
    )
    rows = [r for r in manifest(tmp_path / "out").values() if r["status"] == "labeled"]
    for name in {r["class"] for r in rows}:
        splits = [r["split"] for r in rows if r["class"] == name]
        if len(splits) >= 10:
            assert set(splits) == set(SPLITS), name

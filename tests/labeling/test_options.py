"""label()'s options, declared and checked once: each bad value is refused naming its option,
before any work; an unknown option suggests the one meant."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.errors import ArgumentError, ArgumentTypeError
from autodistill_metaclip.labeling.options import LAYOUTS, LabelOptions
from tests.helpers import write_inputs

NAN = float("nan")


UNIT = r"expected a number in \[0, 1\], but got"
FRACTIONS = r"expected three fractions \(train, valid, test\) summing to 1, but got"
COSINE = r"expected a cosine in \(0, 1\], but got"
BOOLEAN = "expected True or False, but got"
SEED = "expected a non-negative integer, but got"


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"confidence": -0.1}, ArgumentError, rf"^confidence: {UNIT} -0\.1$"),
        ({"confidence": 1.5}, ArgumentError, rf"^confidence: {UNIT} 1\.5$"),
        ({"confidence": NAN}, ArgumentError, rf"^confidence: {UNIT} nan$"),
        ({"confidence": "0.5"}, ArgumentTypeError, rf"^confidence: {UNIT} str$"),
        ({"confidence": True}, ArgumentTypeError, rf"^confidence: {UNIT} bool$"),
        ({"seed": -1}, ArgumentError, rf"^seed: {SEED} -1$"),
        ({"seed": 0.5}, ArgumentError, rf"^seed: {SEED} 0\.5$"),
        ({"seed": None}, ArgumentError, rf"^seed: {SEED} None$"),
        ({"seed": True}, ArgumentError, rf"^seed: {SEED} True$"),
        ({"split": (0.5, 0.5)}, ArgumentError, rf"^split: {FRACTIONS} \(0\.5, 0\.5\)$"),
        ({"split": (0.5, 0.3, 0.3)}, ArgumentError, rf"^split: {FRACTIONS} \(0\.5, 0\.3, 0\.3\)$"),
        ({"split": (1.2, -0.1, -0.1)}, ArgumentError, rf"^split: {FRACTIONS} \(1\.2, "),
        ({"split": (NAN, NAN, NAN)}, ArgumentError, rf"^split: {FRACTIONS} \(nan, nan, nan\)$"),
        ({"split": (math.inf, 0, 0)}, ArgumentError, rf"^split: {FRACTIONS} \(inf, 0, 0\)$"),
        ({"split": "abc"}, ArgumentError, rf"^split: {FRACTIONS} 'abc'$"),
        ({"split": 1}, ArgumentError, rf"^split: {FRACTIONS} 1$"),
        ({"layout": "yolo"}, ArgumentError, r"^layout: expected one of valid, val, but got 'yolo'"),
        ({"near_duplicates": 0}, ArgumentError, rf"^near_duplicates: {COSINE} 0$"),
        ({"near_duplicates": 1.01}, ArgumentError, rf"^near_duplicates: {COSINE} 1\.01$"),
        ({"near_duplicates": True}, ArgumentTypeError,
         r"^near_duplicates: expected a cosine, 'auto' or None, but got True$"),
        ({"near_duplicates": "high"}, ArgumentTypeError,
         r"^near_duplicates: expected a cosine, 'auto' or None, but got 'high'$"),
        ({"recursive": "yes"}, ArgumentTypeError, rf"^recursive: {BOOLEAN} 'yes'$"),
        ({"follow_links": 1}, ArgumentTypeError, rf"^follow_links: {BOOLEAN} 1$"),
        ({"review": None}, ArgumentTypeError, rf"^review: {BOOLEAN} None$"),
        ({"progress": "no"}, ArgumentTypeError, rf"^progress: {BOOLEAN} 'no'$"),
        ({"overwrite": True, "resume": True}, ArgumentError,
         r"^overwrite, resume: expected at most one of them, but got both$"),
    ],
    ids=lambda x: ",".join(f"{k}={v!r}" for k, v in x.items()) if isinstance(x, dict) else "",
)  # fmt: skip
def test_each_bad_value_is_refused_naming_its_option(fields, error, match) -> None:
    with pytest.raises(error, match=match) as raised:
        LabelOptions(**fields)
    assert raised.value.argument == ", ".join(fields)
    assert isinstance(raised.value, ValueError)  # a type error is also a ValueError


def test_defaults_and_normalised_values() -> None:
    options = LabelOptions()
    assert (options.confidence, options.seed, options.split, options.layout) == (
        0.5, 0, (0.7, 0.15, 0.15), "valid",
    )  # fmt: skip
    assert options.near_duplicates == "auto" and options.review and options.progress
    assert not (options.recursive or options.follow_links or options.overwrite or options.resume)
    assert options.splits == ("train", "valid", "test")
    assert LabelOptions(layout="val").splits == ("train", "val", "test") == LAYOUTS["val"]
    given = LabelOptions(confidence=1, seed=np.int64(3), split=[1, 0, 0], near_duplicates=1)
    assert given.confidence == 1.0 and isinstance(given.confidence, float)
    assert given.seed == 3 and type(given.seed) is int
    assert given.split == (1.0, 0.0, 0.0) and isinstance(given.split, tuple)
    assert LabelOptions(near_duplicates=None).near_duplicates is None


def test_identity_is_what_makes_a_run_the_same_run() -> None:
    assert LabelOptions(confidence=0.6, progress=False, resume=True).identity() == {
        "confidence": 0.6,
        "seed": 0,
        "split": [0.7, 0.15, 0.15],
        "layout": "valid",
        "recursive": False,
        "follow_links": False,
    }


@pytest.mark.parametrize(
    ("name", "suggested"),
    [("confidance", "confidence"), ("near_duplicate", "near_duplicates"), ("sead", "seed"),
     ("over_write", "overwrite")],
)  # fmt: skip
def test_an_unknown_keyword_suggests_the_close_name(name: str, suggested: str) -> None:
    with pytest.raises(
        TypeError,
        match=rf"got an unexpected keyword argument '{name}'; did "
        rf"you mean '{suggested}'\? its options are "
        r"confidence, seed, split, layout",
    ):
        LabelOptions.of({name: 1})


def test_an_unknown_keyword_names_the_caller() -> None:
    with pytest.raises(
        TypeError,
        match=r"^label_with_ray\(\) got an unexpected keyword argument "
        r"'colour'; its options are confidence, ",
    ):
        LabelOptions.of({"colour": "red"}, caller="label_with_ray()")
    assert LabelOptions.of({"seed": 2, "layout": "val"}) == LabelOptions(seed=2, layout="val")


def test_label_refuses_an_unknown_keyword_before_any_work(
    demo_model: MetaCLIP, tmp_path: Path
) -> None:
    synthetic.write_folder(tmp_path / "in", 2, suffix=".png")
    with pytest.raises(
        TypeError, match="label\\(\\) got an unexpected keyword argument 'treshold'"
    ):
        demo_model.label(tmp_path / "in", ".png", tmp_path / "out", treshold=0.5)
    assert not (tmp_path / "out").exists()


def test_split_values_must_be_finite(demo_model: MetaCLIP, tmp_path: Path) -> None:
    synthetic.write_folder(tmp_path / "in", 2, suffix=".png")
    nan = float("nan")
    with pytest.raises(ValueError, match="split"):
        demo_model.label(tmp_path / "in", ".png", tmp_path / "out", split=(nan, nan, nan))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("seed", [-1, 0.5, None, True])
def test_a_bad_seed_is_refused_before_any_work(
    shapes_model: MetaCLIP, tmp_path: Path, seed
) -> None:
    write_inputs(tmp_path / "in", {"red circle": 2})
    with pytest.raises(ValueError, match="seed: expected a non-negative integer"):
        shapes_model.label(tmp_path / "in", ".png", tmp_path / "out", seed=seed, progress=False)
    assert not (tmp_path / "out").exists()

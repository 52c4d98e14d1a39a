"""Scoring models and ontologies on a hand-labelled folder, against numbers counted here from
the model's own predictions."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from autodistill.detection import CaptionOntology
from PIL import Image

from autodistill_metaclip import ExampleOntology, MetaCLIP, synthetic
from autodistill_metaclip.evaluation import evaluate, report
from tests.helpers import hand_labelled


def _expected(model: MetaCLIP, folder: Path, target: float) -> dict:
    """What evaluate() must report, counted from ``model.predict`` and the folder names."""
    files = sorted(folder.rglob("*.png"), key=str)
    truth = [p.parent.name for p in files]
    results = model.predict(files, confidence=0.0)
    predicted = [model.classes[int(r.class_id[0])] for r in results]
    top = [float(r.confidence[0]) for r in results]
    correct = [t == p for t, p in zip(truth, predicted, strict=True)]
    pairs = Counter(zip(truth, predicted, strict=True))
    per_class = {}
    for name in model.classes:
        hits = pairs[name, name]
        predicted_as = sum(n for (_, p), n in pairs.items() if p == name)
        support = sum(n for (t, _), n in pairs.items() if t == name)
        per_class[name] = {
            "precision": hits / predicted_as if predicted_as else 0.0,
            "recall": hits / support if support else 0.0,
            "support": support,
        }
    # The lowest confidence one can set (an image's top probability, not shared with the next
    # one down) whose kept images are at least ``target`` right.
    ranked = sorted(zip(top, correct, strict=True), key=lambda x: -x[0])
    threshold, coverage = None, 0.0
    for n in range(1, len(ranked) + 1):
        if n < len(ranked) and ranked[n][0] == ranked[n - 1][0]:
            continue
        if np.mean([c for _, c in ranked[:n]]) >= target:
            threshold, coverage = ranked[n - 1][0], n / len(ranked)
    return {
        "pairs": pairs,
        "accuracy": sum(correct) / len(correct),
        "per_class": per_class,
        "threshold": threshold,
        "coverage": coverage,
    }


def test_evaluate_scores_and_compares_ontologies(demo_model, demo_ontology, tmp_path) -> None:
    hand_labelled(tmp_path / "truth", 48, seed=31)
    # A human's three mistakes: red circles filed as blue squares.
    (tmp_path / "truth" / "blue square").mkdir(exist_ok=True)
    for path in sorted((tmp_path / "truth" / "red circle").glob("*.png"))[:3]:
        shutil.move(path, tmp_path / "truth" / "blue square" / path.name)
    prompts = dict(zip(demo_ontology.prompts(), demo_ontology.classes(), strict=True))
    names = list(prompts.values())
    # The same prompts with two classes' names swapped: a worse ontology, by construction.
    swapped = {p: {names[0]: names[1], names[1]: names[0]}.get(c, c) for p, c in prompts.items()}
    worse = MetaCLIP(CaptionOntology(swapped), checkpoint="demo")
    good, bad = evaluate(
        {"demo": demo_model, "swapped": worse}, tmp_path / "truth", target_accuracy=0.9
    )
    expected = _expected(demo_model, tmp_path / "truth", 0.9)

    assert good.name == "demo" and good.classes == demo_model.classes and good.failed == {}
    confusion = {
        (t, p): int(good.confusion[i, j])
        for i, t in enumerate(good.classes)
        for j, p in enumerate(good.classes)
        if good.confusion[i, j]
    }
    assert confusion == dict(expected["pairs"])
    assert expected["pairs"]["blue square", "red circle"] >= 3  # the mistakes show
    assert good.accuracy == pytest.approx(expected["accuracy"]) and good.accuracy <= 45 / 48
    assert good.accuracy > 0.8
    assert set(good.per_class) == set(expected["per_class"])
    for name, scores in expected["per_class"].items():
        assert good.per_class[name] == pytest.approx(scores), name
    assert good.threshold == pytest.approx(expected["threshold"], abs=1e-6)
    assert good.coverage_at_target == pytest.approx(expected["coverage"])
    assert good.coverage[-1] == 1.0 and good.kept_accuracy[-1] == pytest.approx(good.accuracy)
    assert list(good.thresholds) == sorted(good.thresholds, reverse=True)

    assert bad.accuracy == pytest.approx(_expected(worse, tmp_path / "truth", 0.9)["accuracy"])
    assert bad.accuracy < good.accuracy
    assert bad.per_class[names[0]]["recall"] < good.per_class[names[0]]["recall"]

    text = report([good, bad])
    assert text.splitlines()[0] == (
        f"demo: accuracy {expected['accuracy']:.3f}; for 90%, "
        f"confidence >= {expected['threshold']:.3f} keeps {expected['coverage']:.0%}"
    )
    assert text.splitlines()[2] == "recall per class (best marked *):"
    assert f"{names[0]}: demo" in text and "*" in text
    assert good.to_dict()["confusion"] == good.confusion.tolist()


def test_evaluate_an_example_ontology(tmp_path: Path) -> None:
    hand_labelled(tmp_path / "truth", 24, seed=5)
    examples = {}
    for sample in synthetic.samples(24, seed=77):
        examples.setdefault(sample.label, []).append(sample.image)
    model = MetaCLIP(ExampleOntology(examples), checkpoint="demo")
    (result,) = evaluate(model, tmp_path / "truth")
    assert result.name == "model" and set(result.per_class) == set(examples)
    assert result.accuracy == pytest.approx(_expected(model, tmp_path / "truth", 0.95)["accuracy"])
    assert result.accuracy > 0.5


def test_unreadable_images_are_listed_not_scored(demo_model: MetaCLIP, tmp_path: Path) -> None:
    truth = hand_labelled(tmp_path / "truth", 12, seed=2)
    broken = tmp_path / "truth" / next(iter(truth.values())) / "broken.png"
    broken.write_bytes(b"not a png")
    (result,) = evaluate(demo_model, tmp_path / "truth")
    assert list(result.failed) == [str(broken)] and "not an image" in result.failed[str(broken)]
    assert int(result.confusion.sum()) == 12


def test_a_class_folder_may_be_its_safe_folder_name(tmp_path: Path) -> None:
    """label() writes class "red/circle" into the folder red_circle; evaluate reads it back."""
    model = MetaCLIP(
        {"a photo of a red circle": "red/circle", "a photo of a blue square": "blue square"},
        checkpoint="demo",
    )
    for name, (colour, shape) in (
        ("red_circle", ("red", "circle")),
        ("blue square", ("blue", "square")),
    ):
        (tmp_path / "truth" / name).mkdir(parents=True)
        for seed in range(3):
            synthetic.make_image(colour, shape, seed=seed).save(
                tmp_path / "truth" / name / f"{seed}.png"
            )
    (result,) = evaluate(model, tmp_path / "truth")
    assert result.accuracy == 1.0 and result.per_class["red/circle"]["support"] == 3


def test_evaluate_refuses_a_folder_that_is_not_a_class(demo_model, tmp_path) -> None:
    (tmp_path / "truth" / "unicorn").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "truth" / "unicorn" / "u.png")
    with pytest.raises(ValueError, match="'unicorn' are not classes of 'model'"):
        evaluate(demo_model, tmp_path / "truth")


@pytest.mark.parametrize(
    ("models", "folder", "target", "match"),
    [
        ({}, "truth", 0.9, "models: expected at least one model"),
        (None, "truth", 0.0, r"target_accuracy: expected a number in \(0, 1\]"),
        (None, "truth", 1.5, r"target_accuracy: expected a number in \(0, 1\]"),
        (None, "absent", 0.9, "folder: .*absent.* is not a folder"),
        (None, "empty", 0.9, "folder: .*empty.* has no class folders with images"),
    ],
)
def test_evaluate_refuses_bad_arguments(
    demo_model, tmp_path, models, folder: str, target: float, match: str
) -> None:
    hand_labelled(tmp_path / "truth", 2, seed=1)
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match=match):
        evaluate(
            demo_model if models is None else models, tmp_path / folder, target_accuracy=target
        )


def _shapes(folder: Path, pictures: dict[str, tuple[str, str]], n: int = 3) -> None:
    """``n`` shapes in each class folder of ``pictures`` (``{folder: (colour, shape)}``)."""
    for name, (colour, shape) in pictures.items():
        (folder / name).mkdir(parents=True)
        for seed in range(n):
            synthetic.make_image(colour, shape, seed=seed).save(folder / name / f"{seed}.png")


@pytest.mark.parametrize(
    ("classes", "claimed"),
    [
        (["red/circle", "red_circle"], "'red/circle' and 'red_circle'"),  # a safe name, a name
        (["red_circle", "red/circle"], "'red/circle' and 'red_circle'"),  # in either order
        (["red/circle", "red:circle"], "'red/circle' and 'red:circle'"),  # one safe name
    ],
)
def test_a_folder_two_classes_could_claim_is_refused(tmp_path: Path, classes, claimed) -> None:
    """``red_circle/`` holds red circles; with classes ``red/circle`` and ``red_circle`` it
    could be either: refused naming both, never scored against a guess."""
    prompts = ["a photo of a red circle", "a photo of a blue square"]
    model = MetaCLIP(dict(zip(prompts, classes, strict=True)), checkpoint="demo")
    _shapes(tmp_path / "truth", {"red_circle": ("red", "circle")})
    with pytest.raises(ValueError, match=rf"^folder: .*'red_circle' could be {claimed} of 'm'"):
        evaluate({"m": model}, tmp_path / "truth")


def test_a_folder_matches_the_class_of_its_exact_name(tmp_path: Path) -> None:
    """Classes whose names differ only in case (``Red circle``, ``red circle``) each have their
    own folder; ``red circle_2`` (label()'s folder for the second) is that class too."""
    model = MetaCLIP(
        {"a photo of a blue square": "Red circle", "a photo of a red circle": "red circle"},
        checkpoint="demo",
    )
    _shapes(tmp_path / "truth", {"red circle": ("red", "circle"), "Red circle": ("blue", "square")})
    (result,) = evaluate(model, tmp_path / "truth")
    assert result.accuracy == 1.0 and result.skipped == {}
    assert result.per_class["red circle"]["support"] == 3
    (tmp_path / "truth" / "red circle").rename(tmp_path / "truth" / "red circle_2")
    (result,) = evaluate(model, tmp_path / "truth")
    assert result.accuracy == 1.0 and result.per_class["red circle"]["support"] == 3


def test_what_is_not_read_is_reported(demo_model: MetaCLIP, tmp_path: Path) -> None:
    truth, elsewhere = tmp_path / "truth", tmp_path / "elsewhere"
    _shapes(truth, {"red circle": ("red", "circle")})
    _shapes(elsewhere, {"blue square": ("blue", "square")})
    (truth / "blue square").symlink_to(elsewhere / "blue square")
    (truth / "green square").mkdir()
    (truth / "loose.png").write_bytes((truth / "red circle" / "0.png").read_bytes())
    (result,) = evaluate(demo_model, truth)
    assert result.skipped == {
        "blue square": "a symbolic link to a folder; links are not followed",
        "green square": "a class folder with no images",
        "loose.png": "a file, not a class folder",
    }
    assert int(result.confusion.sum()) == 3 and result.to_dict()["skipped"] == result.skipped
    assert report([result]).splitlines()[1:] == [
        "skipped blue square: a symbolic link to a folder; links are not followed",
        "skipped green square: a class folder with no images",
        "skipped loose.png: a file, not a class folder",
    ]

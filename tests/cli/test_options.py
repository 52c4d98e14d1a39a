"""The options commands share: the classes (-c, --ontology, --examples), the model options, and
image arguments that name folders or URIs."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import numpy as np
import pytest

from autodistill_metaclip import ExampleOntology, MetaCLIP, synthetic
from tests.helpers import run_cli

CLASSES = ["-c", "red circle", "-c", "a photo of a blue square=blue square", "-c", "green triangle"]


def test_bare_names_are_prompted_as_a_photo_of(photos: Path) -> None:
    image = photos / "00000_red_circle.png"
    code, out, _ = run_cli("predict", "-m", "demo", image, *CLASSES, "-k", "3", "--json")
    expected = MetaCLIP(
        {
            "a photo of a red circle": "red circle",
            "a photo of a blue square": "blue square",
            "a photo of a green triangle": "green triangle",
        },
        checkpoint="demo",
    ).predict(str(image), confidence=0.0)
    top = json.loads(out)[0]["top"]
    assert code == 0
    np.testing.assert_allclose([t["confidence"] for t in top], expected.confidence, atol=1e-6)


def test_templates_apply_to_bare_class_names(photos: Path) -> None:
    """With --templates, ``-c cat`` is prompted through the templates, not as "a photo of a"."""
    image = photos / "00000_red_circle.png"
    code, out, _ = run_cli(
        "predict", "-m", "demo", image, "-c", "red circle", "-c", "blue square",
        "--templates", "openai", "--json",
    )  # fmt: skip
    expected = MetaCLIP(
        {"red circle": "red circle", "blue square": "blue square"},
        checkpoint="demo",
        prompt_templates="openai",
    ).predict(str(image), confidence=0.0)
    top = json.loads(out)[0]["top"]
    assert code == 0
    np.testing.assert_allclose([t["confidence"] for t in top], expected.confidence, atol=1e-6)


def test_examples_folder_defines_classes_by_example(photos: Path, tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    for sample in synthetic.samples(12, seed=40):
        folder = examples / sample.label
        folder.mkdir(parents=True, exist_ok=True)
        sample.image.save(folder / f"{len(list(folder.iterdir()))}.png")
    image = photos / "00000_red_circle.png"
    code, out, _ = run_cli("predict", "-m", "demo", image, "--examples", examples, "--json")
    per_class = {p.name: [str(f) for f in sorted(p.iterdir())] for p in sorted(examples.iterdir())}
    expected = MetaCLIP(ExampleOntology(per_class), "demo").predict(str(image), confidence=0.0)
    assert code == 0
    top = json.loads(out)[0]["top"]
    np.testing.assert_allclose([t["confidence"] for t in top], expected.confidence[:3], atol=1e-6)


@pytest.mark.parametrize(
    "given",
    [[], ["-c", "cat", "--ontology", "o.json"], ["-c", "cat", "--examples", "."]],
    ids=["none", "-c and --ontology", "-c and --examples"],
)
def test_classes_come_from_exactly_one_option(photos: Path, given: list[str]) -> None:
    code, out, err = run_cli("predict", "-m", "demo", photos, *given)
    assert code == 2 and out == ""
    assert "exactly one of -c/--class, --ontology or --examples" in err


def test_malformed_ontology_names_the_option_and_file(photos: Path, tmp_path: Path) -> None:
    broken, listed = tmp_path / "broken.json", tmp_path / "list.json"
    broken.write_text('{"a photo of a cat": ')
    listed.write_text('["cat", "dog"]')
    for path, problem in ((broken, "not valid JSON"), (listed, "expected a JSON object")):
        code, out, err = run_cli("predict", "-m", "demo", photos, "--ontology", path)
        assert code == 2 and out == "" and "--ontology" in err and str(path) in err
        assert problem in err
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"a photo of a red circle": "red", "a photo of a cat": "cat"}))
    code, out, _ = run_cli(
        "predict", "-m", "demo", photos / "00000_red_circle.png", "--ontology", good, "--json"
    )
    assert code == 0 and json.loads(out)[0]["predictions"][0]["class"] == "red"


def test_cache_dir_is_where_weights_are_looked_for(photos: Path, tmp_path: Path) -> None:
    cache = tmp_path / "weights-cache"
    code, _, err = run_cli(
        "predict", "-m", "b32-400m", "--cache-dir", cache, photos / "00000_red_circle.png",
        *CLASSES,
    )  # fmt: skip
    assert code == 1 and str(cache) in err and "--weights" in err


def test_predict_and_embed_expand_uri_folders() -> None:
    fs = fsspec.filesystem("memory")
    for i, sample in enumerate(synthetic.samples(3, seed=8)):
        with fs.open(f"memory://cli-photos/{i}.png", "wb") as f:
            sample.image.save(f, format="PNG")
    try:
        memory = ("--allow-scheme", "memory")  # not reachable from inputs unless enabled
        code, out, _ = run_cli(
            "predict", "-m", "demo", "memory://cli-photos", *CLASSES, *memory, "--json"
        )
        assert code == 0 and [r["image"] for r in json.loads(out)] == [
            f"memory://cli-photos/{i}.png" for i in range(3)
        ]
        code, out, _ = run_cli("embed", "-m", "demo", "memory://cli-photos", *memory, "--json")
        assert code == 0 and len(json.loads(out)["embeddings"]) == 3
    finally:
        fs.rm("/cli-photos", recursive=True)

"""What the classes are: caption ontologies and dicts, classes by example images (files,
images, precomputed embeddings, autodistill's EmbeddingOntologyImage), checked when given."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from autodistill.core import EmbeddingOntologyImage
from autodistill.detection import CaptionOntology

from autodistill_metaclip import ExampleOntology, ImageLoadError, MetaCLIP, synthetic
from autodistill_metaclip.engine.ontology import (
    MAX_PROMPT_CHARACTERS,
    MAX_PROMPTS,
    as_ontology,
    ontology_identity,
)

HELD_OUT = list(synthetic.samples(360, seed=77))


def _examples(per_class: int, seed: int = 5) -> dict[str, list]:
    examples: dict[str, list] = {}
    for sample in synthetic.samples(12 * per_class, seed=seed):
        examples.setdefault(sample.label, []).append(sample.image)
    return examples


def test_classes_by_example_images(tmp_path: Path) -> None:
    model = MetaCLIP(ExampleOntology(_examples(3)), "demo")
    results = model.predict([s.image for s in HELD_OUT], confidence=0.0)
    classes = model.ontology.classes()
    accuracy = np.mean(
        [classes[r.class_id[0]] == s.label for r, s in zip(results, HELD_OUT, strict=True)]
    )
    assert accuracy >= 0.95
    # softmax over classes, like caption ontologies
    assert all(r.confidence.sum() == pytest.approx(1.0, abs=1e-4) for r in results[:10])

    synthetic.write_folder(tmp_path / "in", 24, seed=9)
    dataset = model.label(tmp_path / "in", ".png", tmp_path / "out", progress=False)
    truth = {
        p.name: p.stem.split("_", 1)[1].replace("_", " ") for p in (tmp_path / "in").glob("*.png")
    }
    right = [
        dataset.classes[dataset.annotations[p].class_id[0]] == truth[Path(p).name]
        for p in dataset.image_paths
    ]
    assert len(right) >= 20 and np.mean(right) >= 0.9


def test_autodistill_embedding_ontology_image_works(tmp_path: Path) -> None:
    """autodistill's own EmbeddingOntologyImage ({class: [image paths]}) crashes upstream."""
    paths: dict[str, list[str]] = {}
    for name, images in _examples(2).items():
        for i, image in enumerate(images):
            path = tmp_path / f"{name.replace(' ', '_')}_{i}.png"
            image.save(path)
            paths.setdefault(name, []).append(str(path))
    model = MetaCLIP(EmbeddingOntologyImage(paths), "demo")
    result = model.predict(synthetic.make_image("yellow", "square", seed=123))
    assert model.ontology.classes()[result.class_id[0]] == "yellow square"


def test_precomputed_embeddings_as_examples(demo_model: MetaCLIP) -> None:
    examples = {name: demo_model.embed_image(images) for name, images in _examples(2).items()}
    model = MetaCLIP(ExampleOntology(examples), "demo")
    result = model.predict(synthetic.make_image("green", "circle", seed=1))
    assert model.ontology.classes()[result.class_id[0]] == "green circle"


def test_example_ontology_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one class"):
        ExampleOntology({})
    with pytest.raises(ValueError, match="'cat' has no examples"):
        ExampleOntology({"cat": []})
    with pytest.raises(ValueError, match="captions for classes without examples"):
        ExampleOntology({"cat": ["a.png"]}, {"dog": "a dog"})
    with pytest.raises(ValueError, match="expected class names as text"):
        ExampleOntology({" ": ["a.png"]})
    with pytest.raises(ImageLoadError, match=r"an example of 'cat'.*missing\.png.*not found"):
        MetaCLIP(ExampleOntology({"cat": [tmp_path / "missing.png"]}), "demo")


@pytest.mark.parametrize(
    ("ontology", "error", "match"),
    [
        ({}, ValueError, "ontology: expected at least one prompt"),
        ({"": "cat"}, ValueError, "expected each prompt to be non-empty text"),
        ({"a cat": " "}, ValueError, "expected each class to be non-empty text"),
        (["a cat"], TypeError, "expected a CaptionOntology, a {prompt: class} dict"),
        (CaptionOntology({"a photo of a cat": 3}), ValueError, "expected each class to be"),
    ],
    ids=["empty", "empty prompt", "blank class", "list", "class not text"],
)
def test_bad_ontologies_are_refused(ontology, error, match: str) -> None:
    with pytest.raises(error, match=match.replace("{", r"\{").replace("}", r"\}")):
        as_ontology(ontology)


def test_an_ontology_is_described_as_data(tmp_path: Path) -> None:
    assert ontology_identity(None) is None
    caption = as_ontology({"a photo of a cat": "cat", "a photo of a dog": "dog"})
    assert ontology_identity(caption) == [["a photo of a cat", "cat"], ["a photo of a dog", "dog"]]
    examples = ExampleOntology(
        {"cat": [tmp_path / "c.png", "d.png"], "dog": np.zeros((2, 4), np.float32)},
        {"cat": ["a cat", "a kitten"], "dog": "a dog"},
    )
    assert ontology_identity(examples) == {
        "examples": {"cat": [str(tmp_path / "c.png"), "d.png"], "dog": ["ndarray"]},
        "captions": {"cat": ["a cat", "a kitten"], "dog": "a dog"},
    }


# --- sizes: an ontology from an untrusted file costs bounded work ---------------------------


def test_an_ontology_holds_at_most_ten_thousand_prompts() -> None:
    assert len(as_ontology({f"p{i}": f"c{i}" for i in range(MAX_PROMPTS)}).prompts()) == 10_000
    with pytest.raises(ValueError, match=r"^ontology: 10001 prompts; at most 10000 are allowed"):
        as_ontology({f"p{i}": "c" for i in range(MAX_PROMPTS + 1)})
    with pytest.raises(ValueError, match=r"^ontology: 10001 classes; at most 10000"):
        ExampleOntology({f"c{i}": [np.ones(4)] for i in range(MAX_PROMPTS + 1)})
    with pytest.raises(ValueError, match=r"^ontology: 10001 captions; at most 10000"):
        ExampleOntology({"a": [np.ones(4)]}, {"a": ["x"] * (MAX_PROMPTS + 1)})


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda t: as_ontology({t: "long"}), r"prompt 'aaaa.*\.\.\.' has 10001 characters"),
        (lambda t: as_ontology({"a photo": t}), r"class name 'aaaa.*\.\.\.' has 10001 characters"),
        (
            lambda t: ExampleOntology({"a": [np.ones(4)]}, {"a": t}),
            r"caption 'aaaa.*\.\.\.' has 10001 characters",
        ),
        (lambda t: ExampleOntology({t: [np.ones(4)]}), r"class name 'aaaa.*' has 10001 characters"),
    ],
    ids=["prompt", "class", "caption", "example-class"],
)
def test_prompts_and_names_hold_at_most_ten_thousand_characters(make, match) -> None:
    make("a" * MAX_PROMPT_CHARACTERS)  # at the limit
    with pytest.raises(ValueError, match=rf"^ontology: {match}; at most 10000 are allowed") as e:
        make("a" * (MAX_PROMPT_CHARACTERS + 1))
    assert len(str(e.value)) < 200  # the message shows the start of the text, not all of it


def test_an_ontology_of_long_random_prompts_is_embedded_in_bounded_time() -> None:
    """300 prompts of 10,000 random letters each (the merges of one took 3.4 s before)."""
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", np.uint8)
    ontology = {
        rng.choice(letters, MAX_PROMPT_CHARACTERS).tobytes().decode(): f"class {i}"
        for i in range(300)
    }
    started = time.monotonic()
    model = MetaCLIP(ontology, "demo")
    assert time.monotonic() - started < 10 and len(model.classes) == 300

"""Prompt template ensembles and classes defined by example images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from autodistill.core import EmbeddingOntologyImage

from autodistill_metaclip import (
    TEMPLATE_PRESETS,
    ExampleOntology,
    ImageLoadError,
    MetaCLIP,
    synthetic,
)

HELD_OUT = list(synthetic.samples(360, seed=77))


def _mean_true_probability(model: MetaCLIP, attribute: str, options: list[str]) -> float:
    predictions = model.iter_predictions([s.image for s in HELD_OUT], confidence=0.0)
    true_probability = [
        float(p.probabilities[list(p.class_ids).index(options.index(getattr(s, attribute)))])
        for p, s in zip(predictions, HELD_OUT, strict=True)
    ]
    return float(np.mean(true_probability))


def test_template_ensemble_is_the_normalised_mean(demo_model: MetaCLIP) -> None:
    templates = ["a photo of a {}", "a picture of a {}", "{}"]
    model = MetaCLIP({"red circle": "rc", "blue square": "bs"}, "demo", prompt_templates=templates)
    singles = demo_model.embed_text([t.replace("{}", "blue square") for t in templates])
    expected = singles.mean(axis=0) / np.linalg.norm(singles.mean(axis=0))
    assert model._head is not None
    np.testing.assert_allclose(model._head.prompt_embeddings[1], expected, atol=1e-6)
    one = MetaCLIP({"red circle": "rc"}, "demo", prompt_templates="a picture of a {}")
    assert one._head is not None
    np.testing.assert_allclose(
        one._head.prompt_embeddings[0],
        demo_model.embed_text("a picture of a red circle"),
        atol=1e-6,
    )


def test_ensembles_cancel_what_a_single_template_biases() -> None:
    """Classifying shapes with a template that names a colour biases it towards that colour's
    images; averaging over every colour removes the bias and raises confidence in the truth."""
    shapes, colours = list(synthetic.SHAPES), list(synthetic.COLOURS)
    ontology = {s: s for s in shapes}
    single = [
        _mean_true_probability(
            MetaCLIP(ontology, "demo", prompt_templates=f"a photo of a {c} {{}}"), "shape", shapes
        )
        for c in colours
    ]
    ensemble = _mean_true_probability(
        MetaCLIP(ontology, "demo", prompt_templates=[f"a photo of a {c} {{}}" for c in colours]),
        "shape",
        shapes,
    )
    assert ensemble > max(single) + 0.005
    colour_ontology = {c: c for c in colours}
    biased = _mean_true_probability(
        MetaCLIP(colour_ontology, "demo", prompt_templates="a photo of a {} circle"),
        "colour",
        colours,
    )
    averaged = _mean_true_probability(
        MetaCLIP(
            colour_ontology, "demo", prompt_templates=[f"a photo of a {{}} {s}" for s in shapes]
        ),
        "colour",
        colours,
    )
    assert averaged > biased


def test_presets() -> None:
    assert len(TEMPLATE_PRESETS["openai"]) == 80
    assert TEMPLATE_PRESETS["openai"][0] == "a bad photo of a {}."
    model = MetaCLIP({"red circle": "rc", "blue square": "bs"}, "demo", prompt_templates="openai")
    assert model.prompt_templates == TEMPLATE_PRESETS["openai"]


@pytest.mark.parametrize(
    ("templates", "match"),
    [
        ("imagenet", "expected a preset"),
        (["a {} and {}"], "exactly one {}"),
        ([], "exactly one {}"),
    ],
)
def test_bad_templates(templates, match) -> None:
    with pytest.raises(ValueError, match=match):
        MetaCLIP(None, "demo", prompt_templates=templates)


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


def test_captions_mix_into_the_prototype(demo_model: MetaCLIP) -> None:
    examples = _examples(2)
    captions = {name: f"a photo of a {name}" for name in examples}
    mixed = MetaCLIP(ExampleOntology(examples, captions), "demo")
    images_only = MetaCLIP(ExampleOntology(examples), "demo")
    assert mixed._head is not None and images_only._head is not None
    text = demo_model.embed_text(captions["red circle"])
    expected = images_only._head.prompt_embeddings[0] + text
    np.testing.assert_allclose(
        mixed._head.prompt_embeddings[0], expected / np.linalg.norm(expected), atol=1e-6
    )


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
    with pytest.raises(ImageLoadError, match=r"an example of 'cat'.*missing\.png.*not found"):
        MetaCLIP(ExampleOntology({"cat": [tmp_path / "missing.png"]}), "demo")

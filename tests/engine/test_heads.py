"""Classification heads: prompt template ensembles, example-image prototypes mixed with
captions, prompts of one class summed. Each head is compared with a head whose entries are
the vectors this test computes by hand from the model's own text and image embeddings
(an ExampleOntology of precomputed embeddings takes them as they are): same scores for any
image embedding means the same entries."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from autodistill.detection import CaptionOntology

from autodistill_metaclip import ExampleOntology, MetaCLIP, MetaCLIPWarning, synthetic

HELD_OUT = list(synthetic.samples(360, seed=77))


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def probes(demo_model: MetaCLIP) -> np.ndarray:
    """Image embeddings to score: real shapes, and random unit vectors in every direction."""
    images = demo_model.embed_image([s.image for s in synthetic.samples(24, seed=9)])
    noise = np.random.default_rng(0).standard_normal((96, demo_model.dim)).astype(np.float32)
    return np.concatenate([images, _unit(noise)])


def _same_head(model: MetaCLIP, entries: dict[str, np.ndarray], probes: np.ndarray) -> bool:
    reference = MetaCLIP(ExampleOntology(entries), "demo")
    assert model.classes == reference.classes
    return np.allclose(model.probabilities(probes), reference.probabilities(probes), atol=2e-5)


def _mean_true_probability(model: MetaCLIP, attribute: str, options: list[str]) -> float:
    predictions = model.iter_predictions([s.image for s in HELD_OUT], confidence=0.0)
    true_probability = [
        float(p.probabilities[list(p.class_ids).index(options.index(getattr(s, attribute)))])
        for p, s in zip(predictions, HELD_OUT, strict=True)
    ]
    return float(np.mean(true_probability))


def test_template_ensemble_is_the_normalised_mean(demo_model: MetaCLIP, probes) -> None:
    templates = ["a photo of a {}", "a picture of a {}", "{}"]
    ontology = {"red circle": "rc", "blue square": "bs", "green triangle": "gt"}
    model = MetaCLIP(ontology, "demo", prompt_templates=templates)
    expected = {}
    for prompt, name in ontology.items():
        singles = demo_model.embed_text([t.replace("{}", prompt) for t in templates])
        expected[name] = _unit(_unit(singles).mean(axis=0))
    assert _same_head(model, expected, probes)
    plain = {name: demo_model.embed_text(prompt) for prompt, name in ontology.items()}
    assert not _same_head(model, plain, probes)  # the comparison can tell heads apart

    one = MetaCLIP(ontology, "demo", prompt_templates="a picture of a {}")
    expected = {n: demo_model.embed_text(f"a picture of a {p}") for p, n in ontology.items()}
    assert _same_head(one, expected, probes)


def test_captions_mix_into_the_prototype(demo_model: MetaCLIP, probes) -> None:
    examples: dict[str, list] = {}
    for sample in synthetic.samples(24, seed=5):
        examples.setdefault(sample.label, []).append(sample.image)
    captions = {name: f"a photo of a {name}" for name in examples}
    mixed = MetaCLIP(ExampleOntology(examples, captions), "demo")
    expected = {}
    for name, images in examples.items():
        prototype = _unit(demo_model.embed_image(images).mean(axis=0))
        expected[name] = _unit(prototype + demo_model.embed_text(captions[name]))
    assert _same_head(mixed, expected, probes)
    images_only = {n: _unit(demo_model.embed_image(i).mean(axis=0)) for n, i in examples.items()}
    assert _same_head(MetaCLIP(ExampleOntology(examples), "demo"), images_only, probes)
    assert not _same_head(mixed, images_only, probes)


def test_prompts_of_one_class_are_summed(shape_file) -> None:
    image = shape_file("red", "circle")
    split = MetaCLIP(
        CaptionOntology(
            {
                "a photo of a red circle": "red circle",
                "a red circle": "red circle",
                "a photo of a blue square": "blue square",
            }
        ),
        checkpoint="demo",
    )
    single = MetaCLIP(
        CaptionOntology(
            {
                "a photo of a red circle": "c1",
                "a red circle": "c2",
                "a photo of a blue square": "c3",
            }
        ),
        checkpoint="demo",
    )
    summed = split.predict(image, confidence=0.0)
    parts = single.predict(image, confidence=0.0)
    assert summed.class_id.tolist() == [0, 2]
    by_id = dict(zip(parts.class_id.tolist(), parts.confidence.tolist(), strict=True))
    assert summed.confidence[0] == pytest.approx(by_id[0] + by_id[1], abs=1e-6)
    assert summed.confidence[1] == pytest.approx(by_id[2], abs=1e-6)


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


def test_classes_the_model_cannot_tell_apart_are_warned_about(demo_model: MetaCLIP) -> None:
    """The demo model embeds words it never saw alike: 'cat', 'person', 'texture' score the
    same for every image; the warning names the pairs and what to do."""
    with pytest.warns(MetaCLIPWarning, match="can hardly tell these classes apart") as caught:
        model = MetaCLIP({f"a photo of a {n}": n for n in ("cat", "person", "texture")}, "demo")
    message = str(next(w.message for w in caught if "apart" in str(w.message)))
    assert "'cat' and 'person'" in message and "rephrase the prompts" in message
    probabilities = model.probabilities(model.embed_image([synthetic.make_image("red", "circle")]))
    assert np.allclose(probabilities, 1 / 3, atol=0.01)  # the warning is about a real failure
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetaCLIPWarning)  # the shapes' prompts are distinct
        demo_model.set_ontology(CaptionOntology(synthetic.caption_ontology()))

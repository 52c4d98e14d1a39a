"""MetaCLIP end to end: the quick start, fidelity to open_clip, the embedding contract."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import open_clip
import pytest
import supervision as sv
import torch
from autodistill.detection import CaptionOntology
from PIL import Image

from autodistill_metaclip import ImageLoadError, MetaCLIP, synthetic
from tests.helpers import folder_handler, random_weights, serve

CAPTIONS = {
    "a photo of a red circle": "red circle",
    "a photo of a blue square": "blue square",
    "a photo of a green triangle": "green triangle",
    "a photo of a yellow circle": "yellow circle",
}


def test_published_quick_start(shape_file, tmp_path: Path) -> None:
    image = shape_file("blue", "square", name="image.png")
    base_model = MetaCLIP(ontology=CaptionOntology(CAPTIONS), checkpoint="demo")
    results = base_model.predict(str(image), confidence=0.5)
    assert isinstance(results, sv.Classifications)
    assert base_model.ontology.classes()[results.class_id[0]] == "blue square"
    assert results.confidence[0] > 0.9

    m = MetaCLIP(None, checkpoint="demo")
    embedding = m.embed_image(str(image))
    matching = m.compare(m.embed_text("a photo of a blue square"), embedding)
    for other in ("a photo of a red circle", "a photo of a yellow triangle", "a blue circle"):
        assert matching > m.compare(m.embed_text(other), embedding)


def test_demo_model_zero_shot_accuracy(demo_model: MetaCLIP) -> None:
    held_out = list(synthetic.samples(240, seed=2024))  # training used seed 1
    results = demo_model.predict([s.image for s in held_out], confidence=0.0)
    classes = demo_model.ontology.classes()
    correct = [classes[r.class_id[0]] == s.label for r, s in zip(results, held_out, strict=True)]
    assert np.mean(correct) >= 0.95


def _open_clip_probabilities(
    architecture: str, weights: Path, images: list[Image.Image], prompts: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CLIP's zero-shot recipe written out with open_clip alone."""
    model, _, preprocess = open_clip.create_model_and_transforms(
        architecture, pretrained=str(weights)
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(architecture)
    with torch.no_grad():
        image_features = model.encode_image(torch.stack([preprocess(i) for i in images]))
        text_features = model.encode_text(tokenizer(prompts))
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        logits = model.logit_scale.exp() * image_features @ text_features.T
        probabilities = logits.softmax(dim=-1)
    return probabilities.numpy(), image_features.numpy(), text_features.numpy()


def _check_fidelity(model: MetaCLIP, architecture: str, weights: Path) -> None:
    images = [
        synthetic.make_image(c, s, size=96, seed=i)
        for i, (c, s) in enumerate([("red", "circle"), ("blue", "square"), ("green", "triangle")])
    ]
    prompts = list(CAPTIONS)
    expected, image_features, text_features = _open_clip_probabilities(
        architecture, weights, images, prompts
    )
    assert expected.max() > 0.5  # a sharp softmax, so that errors would show
    for image, row in zip(images, expected, strict=True):
        result = model.predict(image, confidence=0.0)
        ours = np.zeros(len(prompts))
        ours[result.class_id] = result.confidence
        np.testing.assert_allclose(ours, row, atol=1e-5)
    ours_image = model.embed_image(images)
    ours_text = model.embed_text(prompts)
    np.testing.assert_allclose(ours_image, image_features, atol=1e-5)
    np.testing.assert_allclose(ours_text, text_features, atol=1e-5)
    assert model.compare(ours_text[1], ours_image[1]) == pytest.approx(
        float(text_features[1] @ image_features[1]), abs=1e-5
    )


def test_fidelity_tiny_config(tiny_config: Path, tiny_weights: Path) -> None:
    model = MetaCLIP(CaptionOntology(CAPTIONS), checkpoint=tiny_config, weights=tiny_weights)
    _check_fidelity(model, tiny_config.stem, tiny_weights)


@pytest.mark.slow
def test_fidelity_vit_b32_quickgelu(tmp_path: Path) -> None:
    weights = random_weights("ViT-B-32-quickgelu", tmp_path / "b32.safetensors")
    model = MetaCLIP(CaptionOntology(CAPTIONS), checkpoint="ViT-B-32-quickgelu", weights=weights)
    _check_fidelity(model, "ViT-B-32-quickgelu", weights)


def test_threshold_filters_and_sorts(demo_model: MetaCLIP, shape_file) -> None:
    image = shape_file("green", "square")
    everything = demo_model.predict(image, confidence=0.0)
    assert len(everything) == 12
    assert np.all(np.diff(everything.confidence) <= 0)
    assert everything.confidence.sum() == pytest.approx(1.0, abs=1e-5)
    confident = demo_model.predict(image, confidence=0.5)
    assert len(confident) == 1 and confident.class_id[0] == everything.class_id[0]
    top = float(everything.confidence[0])  # "at or above": the threshold itself is kept
    assert demo_model.predict(image, confidence=top).class_id.tolist() == [everything.class_id[0]]
    assert len(demo_model.predict(image, confidence=top + 1e-6)) == 0


@pytest.mark.parametrize("confidence", [-0.1, 1.5, float("nan")])
def test_threshold_outside_unit_interval(demo_model: MetaCLIP, shape_file, confidence) -> None:
    with pytest.raises(ValueError, match=r"confidence: expected a number in \[0, 1\]"):
        demo_model.predict(shape_file(), confidence=confidence)


def test_batch_equals_one_at_a_time(demo_model: MetaCLIP) -> None:
    images = [s.image for s in synthetic.samples(37, seed=3)]
    batched = demo_model.predict(images, confidence=0.0)
    for image, result in zip(images, batched, strict=True):
        alone = demo_model.predict(image, confidence=0.0)
        assert alone.class_id.tolist() == result.class_id.tolist()
        np.testing.assert_allclose(alone.confidence, result.confidence, atol=1e-5)
    np.testing.assert_allclose(
        demo_model.embed_image(images),
        np.stack([demo_model.embed_image(i) for i in images]),
        atol=1e-5,
    )


def test_embedding_contract(demo_model: MetaCLIP, shape_file) -> None:
    path = shape_file()
    one = demo_model.embed_image(path)
    many = demo_model.embed_image([path, path, str(path)])
    assert one.shape == (64,) and one.dtype == np.float32
    assert many.shape == (3, 64) and many.dtype == np.float32
    assert np.linalg.norm(one) == pytest.approx(1.0, abs=1e-5)
    assert demo_model.embed_image([]).shape == (0, 64)
    assert demo_model.embed_text("a red circle").shape == (64,)
    texts = demo_model.embed_text(["a red circle", "a blue square"])
    assert texts.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert demo_model.embed_text([]).shape == (0, 64)


def test_a_single_input_is_not_taken_for_a_stream(demo_model: MetaCLIP) -> None:
    for single in (
        "photo.png",
        b"\x89PNG",
        np.zeros((5, 40, 3), np.uint8),
        Image.new("RGB", (4, 4)),
    ):
        with pytest.raises(TypeError, match="inputs: expected an iterable of images"):
            demo_model.iter_embeddings(single)


def test_compare_accepts_numpy_and_torch_shapes(demo_model: MetaCLIP) -> None:
    a = demo_model.embed_text("a red circle")
    b = demo_model.embed_text("a blue square")
    cosine = float(a @ b)
    for x, y in [
        (a, b),
        (a[None], b),
        (torch.from_numpy(a), b[None]),
        (a * 3, torch.from_numpy(b)),
    ]:
        assert demo_model.compare(x, y) == pytest.approx(cosine, abs=1e-6)
    assert isinstance(demo_model.compare(a, b), float)
    with pytest.raises(ValueError, match=r"expected shape \(D,\) or \(1, D\)"):
        demo_model.compare(np.stack([a, b]), b)
    with pytest.raises(ValueError, match="same dimension"):
        demo_model.compare(a, b[:10])


def test_embedding_only_model_refuses_predict(shape_file) -> None:
    model = MetaCLIP(None, checkpoint="demo")
    with pytest.raises(ValueError, match="needs one, but this model has ontology=None"):
        model.predict(shape_file())
    model.set_ontology({"a photo of a red circle": "red circle", "a photo of a blue square": "b"})
    assert model.predict(shape_file("red", "circle")).class_id.tolist() == [0]


def test_set_ontology_refreshes_the_cached_prompts(shape_file) -> None:
    image = shape_file("yellow", "triangle")
    model = MetaCLIP(
        CaptionOntology({"a photo of a red circle": "a", "a photo of a blue square": "b"}),
        checkpoint="demo",
    )
    before = model.predict(image, confidence=0.0)
    model.set_ontology(
        CaptionOntology({"a photo of a yellow triangle": "yt", "a photo of a red circle": "rc"})
    )
    assert model.classes == ["yt", "rc"] and model.ontology.classes() == ["yt", "rc"]
    after = model.predict(image, confidence=0.0)
    assert model.ontology.classes()[after.class_id[0]] == "yt"
    reference = MetaCLIP(
        {"a photo of a yellow triangle": "yt", "a photo of a red circle": "rc"}, "demo"
    ).predict(image, confidence=0.0)
    np.testing.assert_allclose(after.confidence, reference.confidence, atol=1e-6)
    assert not np.allclose(sorted(after.confidence), sorted(before.confidence), atol=1e-3)
    model.set_ontology(None)
    assert model.classes == [] and model.ontology is None


def test_list_input_error_names_the_position(demo_model: MetaCLIP, shape_file, tmp_path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"input\[1\]: .*broken\.png.*empty"):
        demo_model.predict([shape_file(), broken])


@pytest.fixture
def http_image(shape_file) -> Iterator[str]:
    folder = shape_file("red", "circle", name="served.png").parent
    with serve(folder_handler(folder)) as url:
        yield f"{url}/served.png"


def test_url_input(demo_model: MetaCLIP, http_image: str) -> None:
    result = demo_model.predict(http_image)
    assert demo_model.ontology.classes()[result.class_id[0]] == "red circle"


def test_models_are_hashable_and_compared_by_identity(demo_ontology) -> None:
    a = MetaCLIP(demo_ontology, checkpoint="demo")
    b = MetaCLIP(demo_ontology, checkpoint="demo")
    assert a != b and a == a
    assert len({a, b}) == 2
    assert "checkpoint='demo'" in repr(a)


def test_device_and_precision_are_validated() -> None:
    with pytest.raises(ValueError, match="precision: expected one of fp32, fp16, bf16"):
        MetaCLIP(None, checkpoint="demo", precision="fp8")
    with pytest.raises(ValueError, match="device"):
        MetaCLIP(None, checkpoint="demo", device="gpu")
    model = MetaCLIP(None, checkpoint="demo", device="cpu")
    assert model.device.type == "cpu" and model.precision == "fp32"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_agrees_with_cpu(demo_ontology, shape_file) -> None:
    image = shape_file("blue", "circle")
    gpu = MetaCLIP(demo_ontology, checkpoint="demo")
    cpu = MetaCLIP(demo_ontology, checkpoint="demo", device="cpu")
    assert gpu.device.type == "cuda" and gpu.precision == "fp16"
    assert gpu.predict(image).class_id[0] == cpu.predict(image).class_id[0]
    assert gpu.compare(gpu.embed_image(image), cpu.embed_image(image)) > 0.999


def test_the_demo_model_says_once_what_it_knows() -> None:
    """A fresh process: the first demo model warns that it knows only coloured shapes, the
    second does not warn again."""
    code = (
        "import warnings\n"
        "from autodistill_metaclip import MetaCLIP\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    MetaCLIP(None, 'demo'); MetaCLIP(None, 'demo')\n"
        "print(sum('only on synthetic coloured shapes' in str(w.message) for w in caught))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "1"

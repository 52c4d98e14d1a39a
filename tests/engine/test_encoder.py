"""The encoder: open_clip's exact preprocessing by default, draft decoding only when asked,
devices and precisions validated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.engine.checkpoints import resolve
from autodistill_metaclip.engine.encoder import make_preprocessor, select_precision
from tests.helpers import random_weights


@pytest.fixture(scope="module")
def large_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1600x1200 photo-like JPEG: at least 4x the demo model's 32 px input, so draft-able."""
    path = tmp_path_factory.mktemp("jpeg") / "large.jpg"
    image = synthetic.make_image("blue", "triangle", size=(1600, 1200), seed=3)
    noise = np.random.default_rng(0).integers(0, 40, (1200, 1600, 3), dtype=np.uint8)
    Image.fromarray(np.asarray(image) // 2 + noise).save(path, quality=90)
    return path


def test_default_preprocessing_is_open_clips_exactly(
    large_jpeg: Path, tiny_config, tiny_weights
) -> None:
    architecture = tiny_config.stem
    _, _, reference = open_clip.create_model_and_transforms(
        architecture, pretrained=str(tiny_weights)
    )
    ours = make_preprocessor(architecture, {})
    expected = reference(Image.open(large_jpeg))
    assert torch.equal(ours(str(large_jpeg)), expected)
    assert torch.equal(ours(large_jpeg.read_bytes()), expected)


def test_draft_decoding_is_opt_in_close_but_not_exact(large_jpeg: Path) -> None:
    exact = MetaCLIP(None, "demo")
    draft = MetaCLIP(None, "demo", draft_decoding=True)
    assert not exact.spec.draft_decoding and draft.spec.draft_decoding
    a, b = exact.embed_image(large_jpeg), draft.embed_image(large_jpeg)
    assert not np.array_equal(a, b)
    assert float(a @ b) > 0.99
    small = synthetic.make_image("red", "circle", size=(40, 40))  # too small to draft
    np.testing.assert_array_equal(exact.embed_image(small), draft.embed_image(small))


def test_precision_defaults_and_validation() -> None:
    assert select_precision(None, torch.device("cpu")) == "fp32"
    assert select_precision(None, torch.device("cuda")) == "fp16"
    with pytest.raises(ValueError, match="precision: expected one of fp32, fp16, bf16"):
        select_precision("fp8", torch.device("cpu"))


def test_cpu_bf16_is_open_clips_bf16_model(demo_model: MetaCLIP) -> None:
    """On the CPU, bf16 means bf16 weights and inputs (open_clip's ``precision="bf16"``): the
    embeddings are that model's, not fp32's, and stay close to fp32's."""
    bf16 = MetaCLIP(None, "demo", precision="bf16", device="cpu")
    assert bf16.precision == "bf16"
    resolved = resolve("demo")
    reference, _, preprocess = open_clip.create_model_and_transforms(
        resolved.architecture, pretrained=str(resolved.weights_file), precision="bf16"
    )
    reference.eval()
    images = [s.image for s in synthetic.samples(8, seed=12)]
    with torch.no_grad():
        pixels = torch.stack([preprocess(i) for i in images]).to(torch.bfloat16)
        expected = torch.nn.functional.normalize(reference.encode_image(pixels).float(), dim=-1)
    ours = bf16.embed_image(images)
    np.testing.assert_allclose(ours, expected.numpy(), atol=1e-6)
    fp32 = demo_model.embed_image(images)
    assert not np.allclose(ours, fp32, atol=1e-4)  # not computed in fp32
    assert (ours * fp32).sum(axis=1).min() > 0.99


@pytest.mark.parametrize("size", [(1600, 100), (100, 1500), (10000, 1)])
def test_panoramas_up_to_16_to_1_are_exact_and_beyond_bounded(size, tiny_config, tiny_weights):
    architecture = tiny_config.stem
    _, _, reference = open_clip.create_model_and_transforms(
        architecture, pretrained=str(tiny_weights)
    )
    image = Image.fromarray(
        np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    )
    ours = make_preprocessor(architecture, {})(image)
    assert ours.shape == (3, 32, 32)
    if max(size) <= 16 * min(size):
        assert torch.equal(ours, reference(image))


def test_a_transformers_tokenizer_names_the_extra(tmp_path: Path, tiny_config: Path) -> None:
    """MetaCLIP 2's tokenizer comes from transformers, an optional extra: a checkpoint whose
    text tower names one (here a tiny config with h14-worldwide's tokenizer) says how to
    install it."""
    import importlib.util

    if importlib.util.find_spec("transformers") is not None:
        pytest.skip("transformers is installed: the tokenizer would be fetched instead")
    worldwide = open_clip.get_model_config(resolve("h14-worldwide").architecture)["text_cfg"]
    config = json.loads(tiny_config.read_text())
    config["text_cfg"]["hf_tokenizer_name"] = worldwide["hf_tokenizer_name"]
    path = tmp_path / "tiny-worldwide-clip.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    weights = random_weights(path.stem, tmp_path / "w.safetensors")
    with pytest.raises(ImportError, match=r"pip install 'autodistill-metaclip\[worldwide\]'"):
        MetaCLIP(None, checkpoint=path, weights=weights)

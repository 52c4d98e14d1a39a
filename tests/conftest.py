"""Shared fixtures: real models (the bundled demo, random-init open_clip architectures) and
real image files written with Pillow."""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import open_clip
import pytest
import torch
from autodistill.detection import CaptionOntology
from PIL import Image
from safetensors.torch import save_file

from autodistill_metaclip import MetaCLIP, synthetic

TINY_CONFIG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def random_weights(architecture: str, path: Path, *, seed: int = 0) -> Path:
    """Save a random-init open_clip model, with a sharp logit scale (100) so softmax outputs
    are sensitive to any error in the embeddings."""
    torch.manual_seed(seed)
    model = open_clip.create_model(architecture)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="session")
def demo_ontology() -> CaptionOntology:
    return CaptionOntology(synthetic.caption_ontology())


@pytest.fixture(scope="session")
def demo_model(demo_ontology: CaptionOntology) -> MetaCLIP:
    return MetaCLIP(demo_ontology, checkpoint="demo")


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny open_clip model-config JSON on disk (the architecture is its file stem)."""
    path = tmp_path_factory.mktemp("configs") / "tiny-test-clip.json"
    path.write_text(json.dumps(TINY_CONFIG))
    return path


@pytest.fixture(scope="session")
def tiny_weights(tiny_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    open_clip.add_model_config(tiny_config)
    return random_weights(tiny_config.stem, tmp_path_factory.mktemp("weights") / "tiny.safetensors")


@pytest.fixture
def fake_ghostscript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, io.BytesIO]:
    """A ``gs`` first on PATH that would leave a canary file, and an EPS image's bytes."""
    canary = tmp_path / "gs-ran"
    fake = tmp_path / "bin" / "gs"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ntouch {canary}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    eps = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(eps, "EPS")
    return canary, eps


@pytest.fixture
def shape_file(tmp_path: Path) -> Callable[..., Path]:
    """Write one synthetic shape image and return its path."""

    def write(colour: str = "red", shape: str = "circle", name: str = "image.png", **kw) -> Path:
        path = tmp_path / name
        synthetic.make_image(colour, shape, seed=kw.pop("seed", 7), **kw).save(path)
        return path

    return write


def solid(
    colour: tuple[int, ...], mode: str = "RGB", size: tuple[int, int] = (8, 6)
) -> Image.Image:
    return Image.new(mode, size, colour)

"""Shared fixtures: real models (the bundled demo, random-init open_clip architectures), real
image files written with Pillow, and a finished ``label()`` run. Plain helper functions are in
``tests/helpers.py``."""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import open_clip
import pytest
from autodistill.detection import CaptionOntology
from PIL import Image

from autodistill_metaclip import MetaCLIP, synthetic
from tests.helpers import ONTOLOGY, TIGHT, random_weights, write_inputs

TINY_CONFIG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def demo_ontology() -> CaptionOntology:
    """The demo model's twelve classes (four colours by three shapes)."""
    return CaptionOntology(synthetic.caption_ontology())


@pytest.fixture(scope="session")
def demo_model(demo_ontology: CaptionOntology) -> MetaCLIP:
    """The bundled demo checkpoint with its twelve classes."""
    return MetaCLIP(demo_ontology, checkpoint="demo")


@pytest.fixture(scope="session")
def shapes_model() -> MetaCLIP:
    """The demo checkpoint with four classes (``tests.helpers.ONTOLOGY``)."""
    return MetaCLIP(ONTOLOGY, checkpoint="demo")


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny open_clip model-config JSON on disk (the architecture is its file stem)."""
    path = tmp_path_factory.mktemp("configs") / "tiny-test-clip.json"
    path.write_text(json.dumps(TINY_CONFIG))
    return path


@pytest.fixture(scope="session")
def tiny_weights(tiny_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights of the tiny architecture."""
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


@pytest.fixture
def finished(shapes_model: MetaCLIP, tmp_path: Path) -> Path:
    """A finished run: ``tmp_path/in`` (``write_inputs``) labelled into ``tmp_path/out``
    with the near-duplicate threshold ``TIGHT``; returns ``tmp_path``."""
    write_inputs(tmp_path / "in")
    shapes_model.label(
        tmp_path / "in", ".png", tmp_path / "out", near_duplicates=TIGHT, progress=False
    )
    return tmp_path


@pytest.fixture
def demo_dataset(demo_model: MetaCLIP, tmp_path: Path) -> Path:
    """60 demo images labelled at confidence 0.9 into ``tmp_path/out`` (returned); two of them
    the same picture (a near-duplicate pair, ``00000_copy.png``), one unreadable
    (``broken.png``). The inputs stay in ``tmp_path/in``."""
    synthetic.write_folder(tmp_path / "in", 60, suffix=".png", seed=3)
    shutil.copy(tmp_path / "in" / "00000_red_circle.png", tmp_path / "in" / "00000_copy.png")
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    demo_model.label(tmp_path / "in", ".png", tmp_path / "out", confidence=0.9, progress=False)
    return tmp_path / "out"


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 shape PNGs named by their class (``00000_red_circle.png``...); shared, read only."""
    root = tmp_path_factory.mktemp("shared") / "photos"
    synthetic.write_folder(root, 24, seed=6)
    return root


@pytest.fixture
def with_bad(photos: Path, tmp_path: Path) -> Path:
    """Four good photos and one text file named .png."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in sorted(photos.iterdir())[:4]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "bad.png").write_text("not an image")
    return folder

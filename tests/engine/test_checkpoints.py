"""The checkpoint table against open_clip's own registry (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch

from autodistill_metaclip.engine.checkpoints import (
    CHECKPOINTS,
    get_checkpoint,
    list_checkpoints,
    markdown_table,
    resolve,
)
from autodistill_metaclip.errors import CheckpointError
from tests.helpers import ROOT

RELEASED = [c for c in CHECKPOINTS if not c.bundled]


def test_table_covers_every_metaclip_tag_in_open_clip() -> None:
    metaclip_tags = {
        "metaclip_400m",
        "metaclip_fullcc",
        "metaclip_altogether",
        "metaclip2_worldwide",
    }
    in_open_clip = {
        (arch, tag)
        for arch, tag in open_clip.list_pretrained()
        if tag in metaclip_tags
        and bool(open_clip.get_model_config(arch).get("quick_gelu", False))
        == bool(open_clip.get_pretrained_cfg(arch, tag).get("quick_gelu", False))
    }
    # Every (architecture, tag) pair that open_clip loads with the right GELU, and no other.
    assert {(c.architecture, c.pretrained) for c in RELEASED} == in_open_clip
    assert len(RELEASED) == 13


@pytest.mark.parametrize("checkpoint", RELEASED, ids=lambda c: c.name)
def test_row_matches_open_clip(checkpoint) -> None:
    config = open_clip.get_model_config(checkpoint.architecture)
    assert config is not None, f"{checkpoint.architecture} is not an open_clip architecture"
    assert checkpoint.pretrained in open_clip.list_pretrained_tags_by_model(checkpoint.architecture)
    tag = open_clip.get_pretrained_cfg(checkpoint.architecture, checkpoint.pretrained)
    assert bool(config.get("quick_gelu", False)) == bool(tag.get("quick_gelu", False))
    assert config["vision_cfg"]["image_size"] == checkpoint.resolution
    with torch.device("meta"):
        model = open_clip.create_model(checkpoint.architecture, device="meta")
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    assert params_m == pytest.approx(checkpoint.params_m, abs=0.1)
    resolved = resolve(checkpoint.name)
    assert (resolved.architecture, resolved.tag) == (checkpoint.architecture, checkpoint.pretrained)


def test_metaclip_1_uses_quickgelu_except_altogether() -> None:
    for c in RELEASED:
        quick = bool(open_clip.get_model_config(c.architecture).get("quick_gelu", False))
        if c.release == "MetaCLIP 1":
            assert quick, c.name
        if c.data == "Altogether":
            assert not quick


def test_published_accuracies() -> None:
    top1 = {c.name: c.imagenet_top1 for c in CHECKPOINTS}
    assert (top1["b32-400m"], top1["b32-fullcc"]) == (65.5, 67.6)
    assert (top1["b16-400m"], top1["b16-fullcc"]) == (70.8, 72.1)
    assert (top1["l14-400m"], top1["l14-fullcc"]) == (76.2, 79.2)
    assert (top1["h14-fullcc"], top1["bigg14-fullcc"], top1["h14-altogether"]) == (80.5, 82.1, 82.0)


@pytest.mark.parametrize(
    ("checkpoint", "weights", "match"),
    [
        ("ViT-B-32", "metaclip_fullcc", "use checkpoint='ViT-B-32-quickgelu'"),
        ("ViT-L-14", "metaclip_400m", "use checkpoint='ViT-L-14-quickgelu'"),
        ("ViT-H-14-quickgelu", "metaclip_altogether", "use checkpoint='ViT-H-14'"),
        (
            "ViT-H-14-worldwide",
            "metaclip2_worldwide",
            "use checkpoint='ViT-H-14-worldwide-quickgelu'",
        ),
        ("ViT-B-32-quickgelu", "no_such_tag", "not a pretrained tag of 'ViT-B-32-quickgelu'"),
        ("b32-fulcc", None, "Did you mean 'b32-fullcc'"),
        ("ViT-B-32-quickgelu", None, "pass weights="),
        ("demo", "missing/file.safetensors", "does not exist"),
        ("nonsense-model", None, "Valid MetaCLIP checkpoints: b32-400m"),
    ],
)
def test_resolve_refuses(checkpoint, weights, match) -> None:
    with pytest.raises(CheckpointError, match=match.replace("(", r"\(").replace("[", r"\[")):
        resolve(checkpoint, weights)


def test_resolve_accepts_tag_and_file(tmp_path: Path) -> None:
    assert resolve("ViT-B-32-quickgelu", "metaclip_400m").tag == "metaclip_400m"
    assert resolve("b32-fullcc", "metaclip_400m").tag == "metaclip_400m"
    file = tmp_path / "weights.safetensors"
    file.write_bytes(b"x")
    assert resolve("b32-fullcc", file).weights_file == file
    demo = resolve("demo")
    assert demo.weights_file is not None and demo.weights_file.is_file()


def test_config_json_that_would_shadow_open_clip_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "ViT-B-32.json"
    config.write_text(json.dumps({"embed_dim": 8, "vision_cfg": {}, "text_cfg": {}}))
    with pytest.raises(CheckpointError, match="rename the file"):
        resolve(config, tmp_path / "w.safetensors")


def test_list_and_get() -> None:
    assert [c.name for c in list_checkpoints("*worldwide")] == [
        "h14-worldwide",
        "h14-378-worldwide",
        "bigg14-worldwide",
        "bigg14-378-worldwide",
    ]
    assert get_checkpoint("B32-FULLCC").architecture == "ViT-B-32-quickgelu"


def test_readme_table_is_generated_from_the_data() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme

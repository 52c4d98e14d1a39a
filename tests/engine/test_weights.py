"""Weights files: found in the cache, vetted before open_clip sees them, refused with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import load_file

from autodistill_metaclip import CheckpointError, MetaCLIP
from autodistill_metaclip.engine.checkpoints import resolve
from autodistill_metaclip.engine.weights import check_file, obtain
from autodistill_metaclip.errors import WeightsUnavailableError


class _Payload:
    """Unpickling this runs code: it writes a canary file."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self):
        return (exec, (f"open({str(self.canary)!r}, 'w').write('pwned')",))


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    demo_weights = load_file(str(resolve("demo").weights_file))
    malicious = tmp_path / "weights.pt"
    torch.save({**demo_weights, "extra": _Payload(canary)}, malicious)
    with pytest.raises(CheckpointError, match=r"refused .*would run code"):
        MetaCLIP(None, checkpoint="demo", weights=malicious)
    assert not canary.exists()


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_plain_pickle_weights_load(tmp_path: Path, demo_model: MetaCLIP, zipped: bool) -> None:
    plain = tmp_path / "weights.bin"
    state = load_file(str(resolve("demo").weights_file))
    torch.save(state, plain, _use_new_zipfile_serialization=zipped)  # legacy: torch < 1.6
    model = MetaCLIP(None, checkpoint="demo", weights=plain)
    text = "a photo of a yellow triangle"
    np.testing.assert_allclose(model.embed_text(text), demo_model.embed_text(text), atol=1e-6)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (lambda data: data[: len(data) // 2], "cannot read .*corrupt"),
        (lambda data: b"not a weights file" * 50, "cannot read .*corrupt"),
        (lambda data: b"", "cannot read"),
    ],
    ids=["truncated", "garbage", "empty"],
)
def test_corrupt_safetensors(tmp_path: Path, content, match) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(content(resolve("demo").weights_file.read_bytes()))
    with pytest.raises(CheckpointError, match=match):
        MetaCLIP(None, checkpoint="demo", weights=broken)


def test_mismatched_weights_file_is_a_clear_error(tiny_weights: Path) -> None:
    with pytest.raises(CheckpointError, match="does not fit architecture 'metaclip-demo'"):
        MetaCLIP(None, checkpoint="demo", weights=tiny_weights)


def test_hub_cache_lookup_finds_a_cached_file_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Hugging Face cache layout: models--org--name/snapshots/<rev>/<file>, refs/main.
    A cached file is found and vetted with no network; an empty cache is no hit (offline, the
    weights are then unavailable, naming the cache looked in)."""
    resolved = resolve("b32-fullcc")
    repo = tmp_path / "models--timm--vit_base_patch32_clip_224.metaclip_2pt5b"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    weights = snapshot / "open_clip_pytorch_model.bin"
    torch.save(load_file(str(resolve("demo").weights_file)), weights)
    path, config = obtain(resolved, str(tmp_path))
    assert path == weights and config["hf_hub"] == "timm/vit_base_patch32_clip_224.metaclip_2pt5b/"
    check_file(weights)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailableError, match="HF_HUB_OFFLINE is set") as raised:
        obtain(resolved, str(tmp_path / "empty"))
    assert str(tmp_path / "empty") in str(raised.value)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match=r"cannot read .*open_clip_model\.safetensors"):
        obtain(resolved, str(tmp_path))  # the safetensors file is preferred, and vetted

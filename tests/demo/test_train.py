"""The demo model's training: the same seed and thread count give identical weights, and what it
writes loads as the demo checkpoint's weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from autodistill_metaclip import MetaCLIP
from autodistill_metaclip.demo.train import train


def _short(seed: int) -> dict[str, torch.Tensor]:
    return train(steps=12, batch_size=32, pool_size=256, seed=seed, threads=1)


def test_same_seed_same_weights_and_they_load(tmp_path: Path) -> None:
    first, again, other = _short(0), _short(0), _short(1)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["visual.proj"], other["visual.proj"])
    assert all(v.dtype == torch.float16 for v in first.values())
    rows = first["token_embedding.weight"].abs().sum(dim=1)
    assert 0 < int((rows > 0).sum()) < len(rows)  # only the tokens of its captions kept

    save_file(first, str(tmp_path / "short.safetensors"))
    model = MetaCLIP({"a photo of a red circle": "red circle"}, "demo",
                     weights=tmp_path / "short.safetensors")  # fmt: skip
    vector = model.embed_text("a red circle")
    assert vector.shape == (64,) and np.isclose(np.linalg.norm(vector), 1, atol=1e-3)
    bundled = MetaCLIP(None, "demo").embed_text("a red circle")
    assert float(vector @ bundled) < 0.99  # these weights, not the bundled ones

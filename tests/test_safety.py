"""Hostile weights files and hostile class names: no code runs, nothing escapes the output."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import torch
from autodistill.detection import CaptionOntology
from safetensors.torch import load_file

from autodistill_metaclip import CheckpointError, MetaCLIP, synthetic
from autodistill_metaclip.checkpoints import resolve


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


def test_plain_pickle_weights_load(tmp_path: Path, demo_model: MetaCLIP) -> None:
    plain = tmp_path / "weights.bin"
    torch.save(load_file(str(resolve("demo").weights_file)), plain)
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


HOSTILE = {
    "a photo of a red circle": "../../escaped",
    "a photo of a blue square": "/etc/passwd",
    "a photo of a green triangle": "CON",
    "a photo of a yellow circle": "nul\x00byte",
    "a photo of a red square": "a/b\\c",
    "a photo of a blue circle": "..",
}


def test_hostile_class_names_stay_inside_the_output(tmp_path: Path) -> None:
    canary_dir = tmp_path / "sandbox"
    (canary_dir / "in").mkdir(parents=True)
    (tmp_path / "canary.txt").write_text("untouched")
    for colour, shape in (
        ("red", "circle"),
        ("blue", "square"),
        ("green", "triangle"),
        ("yellow", "circle"),
        ("red", "square"),
        ("blue", "circle"),
    ):
        for seed in range(3):
            synthetic.make_image(colour, shape, seed=seed).save(
                canary_dir / "in" / f"{colour}-{shape}-{seed}.png"
            )

    def snapshot() -> dict[str, str]:
        return {
            p.relative_to(tmp_path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in tmp_path.rglob("*")
            if p.is_file()
        }

    before = snapshot()
    model = MetaCLIP(CaptionOntology(HOSTILE), checkpoint="demo")
    output = canary_dir / "out"
    dataset = model.label(canary_dir / "in", ".png", output, progress=False)
    after = snapshot()

    new = set(after) - set(before)
    assert all(path.startswith("sandbox/out/") for path in new), sorted(new)
    assert {k: v for k, v in after.items() if k in before} == before
    folders = {
        p.name
        for split in ("train", "valid", "test")
        if (output / split).is_dir()
        for p in (output / split).iterdir()
    }
    assert folders and all(name not in (".", "..") and "/" not in name for name in folders)
    with open(output / "manifest.csv", encoding="utf-8", newline="") as f:
        classes = {row["class"] for row in csv.DictReader(f)}
    assert classes <= set(HOSTILE.values()) and "../../escaped" in classes
    assert len(dataset) == 18
    for split in ("train", "valid", "test"):
        if (output / split).is_dir():
            assert len(sv.ClassificationDataset.from_folder_structure(str(output / split))) > 0

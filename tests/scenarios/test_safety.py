"""Hostile class names: nothing escapes the output folder."""

from __future__ import annotations

from pathlib import Path

import supervision as sv
from autodistill.detection import CaptionOntology

from autodistill_metaclip import MetaCLIP, synthetic
from tests.helpers import SPLITS, manifest, tree

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

    before = tree(tmp_path)
    model = MetaCLIP(CaptionOntology(HOSTILE), checkpoint="demo")
    output = canary_dir / "out"
    dataset = model.label(canary_dir / "in", ".png", output, progress=False)
    after = tree(tmp_path)

    new = set(after) - set(before)
    assert all(path.startswith("sandbox/out/") for path in new), sorted(new)
    assert {k: v for k, v in after.items() if k in before} == before
    folders = {
        p.name for split in SPLITS if (output / split).is_dir() for p in (output / split).iterdir()
    }
    assert folders and all(name not in (".", "..") and "/" not in name for name in folders)
    classes = {row["class"] for row in manifest(output).values()}
    assert classes <= set(HOSTILE.values()) and "../../escaped" in classes
    assert len(dataset) == 18
    for split in SPLITS:
        if (output / split).is_dir():
            assert len(sv.ClassificationDataset.from_folder_structure(str(output / split))) > 0

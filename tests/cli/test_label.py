"""``label``: the dataset, its summary and a grid."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from autodistill_metaclip import synthetic
from tests.helpers import manifest, run_cli

CLASSES = ["-c", "red circle", "-c", "a photo of a blue square=blue square", "-c", "green triangle"]


def test_label_writes_the_dataset_and_a_grid(tmp_path: Path) -> None:
    synthetic.write_folder(tmp_path / "photos", 24, seed=6)
    code, out, _ = run_cli(
        "label", "-m", "demo", tmp_path / "photos", tmp_path / "out", *CLASSES,
        "--grid", tmp_path / "grid.png", "--json",
    )  # fmt: skip
    data = json.loads(out)
    assert code == 0 and data["labeled"] + data["unlabeled"] == 24 and data["failed"] == 0
    assert data["output"] == str(tmp_path / "out")
    rows = manifest(tmp_path / "out")
    assert len(rows) == 24
    assert data["labeled"] == sum(r["status"] == "labeled" for r in rows.values())
    assert Image.open(tmp_path / "grid.png").format == "PNG"


def test_label_options_are_the_library_s(tmp_path: Path) -> None:
    synthetic.write_folder(tmp_path / "photos", 8, seed=2)
    code, out, _ = run_cli(
        "label", "-m", "demo", tmp_path / "photos", tmp_path / "out", *CLASSES,
        "--confidence", "0", "--split", "1", "0", "0", "--layout", "val", "--seed", "3",
    )  # fmt: skip
    assert code == 0 and out.startswith("labeled 8, unlabeled 0, failed 0 -> ")
    assert {r["split"] for r in manifest(tmp_path / "out").values()} == {"train"}
    assert (tmp_path / "out" / "val").is_dir() and not (tmp_path / "out" / "valid").exists()
    code, _, err = run_cli(
        "label", "-m", "demo", tmp_path / "photos", tmp_path / "out", *CLASSES,
        "--overwrite", "--resume",
    )  # fmt: skip
    assert code == 2 and "--overwrite, --resume: expected at most one of them" in err
    code, _, err = run_cli(
        "label", "-m", "demo", tmp_path / "photos", tmp_path / "out2", *CLASSES,
        "--split", "0.5", "0.5", "0.5",
    )  # fmt: skip
    assert code == 2 and "--split: expected three fractions" in err
    assert not (tmp_path / "out2").exists()

"""``review``, ``fix``, ``evaluate`` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from autodistill_metaclip import synthetic
from autodistill_metaclip.labeling.corrections import FORMAT
from tests.helpers import hand_labelled, manifest, run_cli


def test_cli_review_fix_evaluate(demo_dataset: Path, tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    code, out, _ = run_cli("review", demo_dataset, "-o", page)
    assert code == 0 and page.stat().st_size > 10_000 and out.strip() == f"review page -> {page}"
    rows = manifest(demo_dataset)
    key = next(k for k, r in rows.items() if r["status"] == "labeled")
    corrections = tmp_path / "c.json"
    corrections.write_text(
        json.dumps({"format": FORMAT, "corrections": [{"image": key, "to": None}]})
    )
    code, out, _ = run_cli("fix", demo_dataset, corrections, "--json")
    assert code == 0, out
    assert json.loads(out)["excluded"] == 1
    code, out, _ = run_cli("evaluate", demo_dataset, "--json")
    assert code == 0 and json.loads(out)["total"]["excluded"] == 1
    hand_labelled(tmp_path / "truth", 24, seed=8)
    classes = [a for c in synthetic.class_names() for a in ("-c", c)]
    code, out, _ = run_cli(
        "evaluate", tmp_path / "truth", "-m", "demo", "--plot", tmp_path / "e.png", *classes
    )
    assert code == 0, out
    assert "demo: accuracy" in out and Image.open(tmp_path / "e.png").size[0] > 400


def test_fix_refuses_an_image_it_cannot_move(demo_dataset: Path, tmp_path: Path) -> None:
    corrections = tmp_path / "c.json"
    corrections.write_text(
        json.dumps({"format": FORMAT, "corrections": [{"image": "nope.png", "to": None}]})
    )
    before = (demo_dataset / "manifest.csv").read_bytes()
    code, out, err = run_cli("fix", demo_dataset, corrections)
    assert code == 1 and out == "" and "'nope.png' is not in the manifest" in err
    assert (demo_dataset / "manifest.csv").read_bytes() == before

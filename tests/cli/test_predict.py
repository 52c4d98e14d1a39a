"""``predict``: what it prints (text and --json), and that its numbers are the library's."""

from __future__ import annotations

import json
import re
from pathlib import Path

from PIL import Image

from autodistill_metaclip import MetaCLIP
from tests.helpers import run_cli

CLASSES = ["-c", "red circle", "-c", "a photo of a blue square=blue square", "-c", "green triangle"]


def test_predict_json_and_text(photos: Path) -> None:
    red, blue = photos / "00000_red_circle.png", photos / "00007_blue_square.png"
    code, out, _ = run_cli("predict", "-m", "demo", red, blue, *CLASSES, "--json")
    rows = json.loads(out)
    assert code == 0
    assert [r["predictions"][0]["class"] for r in rows] == ["red circle", "blue square"]
    code, out, _ = run_cli("predict", "-m", "demo", red, *CLASSES)
    assert code == 0
    assert re.match(rf"{re.escape(str(red))}: red circle (0\.9|1\.0)\d+   \[", out)


def test_predict_always_shows_the_best_guess(photos: Path) -> None:
    """A threshold nothing reaches still shows the best classes, marked as below it."""
    image = photos / "00003_green_circle.png"  # no green circle among the classes
    code, out, _ = run_cli("predict", "-m", "demo", image, *CLASSES, "--confidence", "0.999")
    assert code == 0
    assert re.search(r": \(none >= 0\.999\) best: \w[\w ]+ 0\.\d{3}   \[", out)
    code, out, _ = run_cli(
        "predict", "-m", "demo", image, *CLASSES, "--confidence", "0.999", "--json"
    )
    (row,) = json.loads(out)
    assert row["status"] == "unlabeled" and row["predictions"] == []
    assert len(row["top"]) == 3 and not any(t["passed"] for t in row["top"])
    assert row["top"][0]["confidence"] >= row["top"][1]["confidence"] > 0


def test_predict_threshold_agrees_with_the_library(photos: Path) -> None:
    """The CLI compares unrounded probabilities, exactly as ``predict`` does."""
    image = photos / "00011_yellow_triangle.png"
    ontology = {
        "a photo of a green triangle": "green triangle",
        "a photo of a red circle": "red circle",
    }
    model = MetaCLIP(ontology, checkpoint="demo")
    best = float(model.predict(str(image), confidence=0.0).confidence[0])
    for threshold in (best - 1e-7, best + 1e-7):
        code, out, _ = run_cli(
            "predict", "-m", "demo", image, *[f"-c{c}={n}" for c, n in ontology.items()],
            "--confidence", f"{threshold:.9f}", "--json",
        )  # fmt: skip
        library = len(model.predict(str(image), confidence=threshold))
        assert code == 0 and len(json.loads(out)[0]["predictions"]) == library
    assert [len(model.predict(str(image), confidence=t)) for t in (best - 1e-7, best + 1e-7)] == [
        1,
        0,
    ]  # the two thresholds fall either side of the best probability


def test_predict_top_k_and_a_plot(photos: Path, tmp_path: Path) -> None:
    images = [photos / "00000_red_circle.png", photos / "00007_blue_square.png"]
    code, out, _ = run_cli(
        "predict", "-m", "demo", *images, *CLASSES, "-k", "2", "--json",
        "--plot", tmp_path / "p.png",
    )  # fmt: skip
    assert code == 0 and [len(r["top"]) for r in json.loads(out)] == [2, 2]
    assert Image.open(tmp_path / "p.png").format == "PNG"


def test_single_class_warns(photos: Path) -> None:
    code, out, err = run_cli("predict", "-m", "demo", photos / "00000_red_circle.png", "-c", "cat")
    assert code == 0 and "cat 1.000" in out
    assert err.startswith("warning: ") and "scores 1.0 for every image" in err and "other" in err


def test_predict_on_an_empty_folder_is_a_usage_error(tmp_path: Path) -> None:
    code, out, err = run_cli("predict", "-m", "demo", tmp_path, *CLASSES)
    assert code == 2 and out == "" and "has no image files" in err and str(tmp_path) in err

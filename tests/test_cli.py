"""The command line, invoked: exit codes, --json that parses, one-line errors, PNGs written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from autodistill_metaclip import synthetic
from autodistill_metaclip.cli import main


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "photos"
    synthetic.write_folder(root, 24, seed=6)
    return root


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


CLASSES = ["-c", "red circle", "-c", "a photo of a blue square=blue square", "-c", "green triangle"]


def test_predict_json_and_text(photos: Path) -> None:
    code, out, _ = run(
        "predict",
        "-m",
        "demo",
        photos / "00000_red_circle.png",
        photos / "00007_blue_square.png",
        *CLASSES,
        "--json",
    )
    assert code == 0
    rows = json.loads(out)
    assert [r["predictions"][0]["class"] for r in rows] == ["red circle", "blue square"]
    code, out, _ = run("predict", "-m", "demo", photos / "00000_red_circle.png", *CLASSES)
    assert code == 0
    assert re.match(rf"{re.escape(str(photos))}/00000_red_circle\.png: red circle (0\.9|1\.0)", out)


def test_predict_reports_bad_images_and_exits_1(photos: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_text("nope")
    code, out, _ = run(
        "predict",
        "-m",
        "demo",
        tmp_path / "bad.png",
        photos / "00000_red_circle.png",
        *CLASSES,
        "--json",
    )
    rows = json.loads(out)
    assert code == 1
    assert "not an image file" in rows[0]["error"] and rows[1]["predictions"]


def test_usage_errors_exit_2(photos: Path) -> None:
    assert run("predict", "-m", "demo", photos / "00000_red_circle.png")[0] == 2  # no classes
    assert run("nonsense")[0] == 2
    assert run("predict", "-m", "demo", photos, *CLASSES, "--confidence", "2")[0] == 2


def test_failures_are_one_line_without_traceback(photos: Path) -> None:
    code, out, err = run("predict", "-m", "no-such-model", photos, *CLASSES)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: checkpoint: 'no-such-model'")
    assert "Traceback" not in err
    verbose = CliRunner().invoke(
        main, ["predict", "-m", "no-such-model", str(photos), *CLASSES, "-v"]
    )
    assert verbose.exit_code == 1 and verbose.exception is not None  # the real exception, raised


def test_label_with_grid(photos: Path, tmp_path: Path) -> None:
    code, out, _ = run(
        "label",
        "-m",
        "demo",
        photos,
        tmp_path / "out",
        *CLASSES,
        "--grid",
        tmp_path / "grid.png",
        "--json",
    )
    data = json.loads(out)
    assert code == 0 and data["labeled"] + data["unlabeled"] == 24 and data["failed"] == 0
    assert (tmp_path / "out" / "manifest.csv").is_file()
    assert Image.open(tmp_path / "grid.png").format == "PNG"
    code, _, err = run("label", "-m", "demo", photos, tmp_path / "out", *CLASSES)
    assert code == 1 and "overwrite" in err


def test_embed(photos: Path, tmp_path: Path) -> None:
    code, out, _ = run(
        "embed", "-m", "demo", photos, "-t", "a red circle", "-o", tmp_path / "v.npz", "--json"
    )
    assert code == 0 and json.loads(out)["dim"] == 64
    with np.load(tmp_path / "v.npz") as saved:
        assert (
            saved["embeddings"].shape == (25, 64)
            and str(saved["inputs"][-1]) == "text:a red circle"
        )
    code, out, _ = run("embed", "-m", "demo", "-t", "a blue square", "--json")
    vector = np.array(json.loads(out)["embeddings"][0])
    assert vector.shape == (64,) and abs(np.linalg.norm(vector) - 1) < 1e-4


def test_index_search_dedup_cluster(photos: Path, tmp_path: Path) -> None:
    index_file = tmp_path / "photos.npz"
    code, out, _ = run("index", "-m", "demo", photos, index_file, "--json")
    assert code == 0 and json.loads(out)["images"] == 24
    # search needs no -m: the index knows its checkpoint
    code, out, _ = run(
        "search",
        index_file,
        "a photo of a yellow triangle",
        "-k",
        "2",
        "--json",
        "--grid",
        tmp_path / "search.png",
    )
    hits = json.loads(out)
    assert code == 0 and all("yellow_triangle" in h["path"] for h in hits)
    code, out, _ = run("search", index_file, photos / "00004_green_square.png", "-k", "1")
    assert code == 0 and "00004_green_square.png" in out
    code, out, _ = run("dedup", index_file, "--threshold", "0.9999", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = run(
        "cluster",
        index_file,
        "-k",
        "4",
        "--json",
        "--sheet",
        tmp_path / "sheet.png",
        *[x for c in synthetic.COLOURS for x in ("-n", f"a photo of a {c} thing")],
    )
    clusters = json.loads(out)
    assert code == 0 and sum(c["size"] for c in clusters) == 24 and all(c["name"] for c in clusters)
    assert Image.open(tmp_path / "sheet.png").size == (1120, 640)
    code, _, err = run("search", index_file, "a cat", "-m", "b32-400m")
    assert code == 1 and err.startswith("error: ")


def test_checkpoints_and_help() -> None:
    code, out, _ = run("checkpoints", "--json")
    assert code == 0 and {r["name"] for r in json.loads(out)} >= {"b32-fullcc", "demo"}
    assert "| `b32-fullcc` |" in run("checkpoints", "--markdown")[1]
    for command in main.commands:
        code, out, _ = run(command, "--help")
        assert code == 0 and "Example" in out and "autodistill-metaclip" in out


def test_python_dash_m_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "autodistill_metaclip", "checkpoints"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "b32-fullcc" in done.stdout

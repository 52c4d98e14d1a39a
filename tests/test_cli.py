"""The command line, invoked: what it prints, what it writes, its exit codes, its errors.

One test per behaviour a new user found wrong in 0.2.0 (see the issue "a command line that tells
the truth"), plus the basics. Commands run in-process through click's runner (the real command,
parsing included); the entry points that only a new process shows run as one.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.cli import PARTIAL, main

CLASSES = ["-c", "red circle", "-c", "a photo of a blue square=blue square", "-c", "green triangle"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "photos"
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


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_predict_json_and_text(photos: Path) -> None:
    red, blue = photos / "00000_red_circle.png", photos / "00007_blue_square.png"
    code, out, _ = run("predict", "-m", "demo", red, blue, *CLASSES, "--json")
    rows = json.loads(out)
    assert code == 0
    assert [r["predictions"][0]["class"] for r in rows] == ["red circle", "blue square"]
    code, out, _ = run("predict", "-m", "demo", red, *CLASSES)
    assert code == 0
    assert re.match(rf"{re.escape(str(red))}: red circle (0\.9|1\.0)\d+   \[", out)


def test_predict_always_shows_the_best_guess(photos: Path) -> None:
    """A threshold nothing reaches still shows the best classes, marked as below it."""
    image = photos / "00003_green_circle.png"  # no green circle among the classes
    code, out, _ = run("predict", "-m", "demo", image, *CLASSES, "--confidence", "0.999")
    assert code == 0
    assert re.search(r": \(none >= 0\.999\) best: \w[\w ]+ 0\.\d{3}   \[", out)
    code, out, _ = run("predict", "-m", "demo", image, *CLASSES, "--confidence", "0.999", "--json")
    (row,) = json.loads(out)
    assert row["status"] == "unlabeled" and row["predictions"] == []
    assert len(row["top"]) == 3 and not any(t["passed"] for t in row["top"])
    assert row["top"][0]["confidence"] >= row["top"][1]["confidence"] > 0


def test_predict_threshold_agrees_with_the_library(photos: Path, demo_model: MetaCLIP) -> None:
    """The CLI compares unrounded probabilities, exactly as ``predict`` does."""
    image = photos / "00011_yellow_triangle.png"
    ontology = {
        "a photo of a green triangle": "green triangle",
        "a photo of a red circle": "red circle",
    }
    model = MetaCLIP(ontology, checkpoint="demo")
    best = float(model.predict(str(image), confidence=0.0).confidence[0])
    for threshold in (best - 1e-7, best + 1e-7):
        code, out, _ = run(
            "predict", "-m", "demo", image, *[f"-c{c}={n}" for c, n in ontology.items()],
            "--confidence", f"{threshold:.9f}", "--json",
        )  # fmt: skip
        library = len(model.predict(str(image), confidence=threshold))
        assert code == 0 and len(json.loads(out)[0]["predictions"]) == library


def test_templates_apply_to_bare_class_names(photos: Path) -> None:
    """With --templates, ``-c cat`` is prompted through the templates, not as "a photo of a"."""
    image = photos / "00000_red_circle.png"
    code, out, _ = run(
        "predict", "-m", "demo", image, "-c", "red circle", "-c", "blue square",
        "--templates", "openai", "--json",
    )  # fmt: skip
    expected = MetaCLIP(
        {"red circle": "red circle", "blue square": "blue square"},
        checkpoint="demo",
        prompt_templates="openai",
    ).predict(str(image), confidence=0.0)
    top = json.loads(out)[0]["top"]
    assert code == 0
    np.testing.assert_allclose([t["confidence"] for t in top], expected.confidence, atol=1e-6)


def test_single_class_warns(photos: Path) -> None:
    code, out, err = run("predict", "-m", "demo", photos / "00000_red_circle.png", "-c", "cat")
    assert code == 0 and "cat 1.000" in out
    assert err.startswith("warning: ") and "scores 1.0 for every image" in err and "other" in err


def test_exit_codes_follow_one_rule(photos: Path, with_bad: Path, tmp_path: Path) -> None:
    """0 all read, 3 done with unreadable inputs (listed), 1 error, 2 usage: for every command."""
    assert run("predict", "-m", "demo", photos / "00000_red_circle.png", *CLASSES)[0] == 0
    code, out, _ = run("predict", "-m", "demo", with_bad, *CLASSES, "--json")
    rows = json.loads(out)
    assert code == PARTIAL == 3 and len(rows) == 5
    assert [r["status"] == "failed" for r in rows] == [False, False, False, False, True]
    assert "bad.png" in rows[-1]["error"] and "not an image file" in rows[-1]["error"]
    code, out, _ = run("label", "-m", "demo", with_bad, tmp_path / "out", *CLASSES, "--json")
    assert code == 3 and json.loads(out)["failed"] == 1
    assert json.loads(out)["failures"][0]["image"] == "bad.png"
    code, out, _ = run("embed", "-m", "demo", with_bad, "--json")
    assert code == 3 and len(json.loads(out)["errors"]) == 1
    code, out, _ = run("index", "-m", "demo", with_bad, tmp_path / "i.npz", "--json")
    assert code == 3 and json.loads(out)["failed"] == 1
    assert run("predict", "-m", "no-such-model", photos, *CLASSES)[0] == 1
    assert run("predict", "-m", "demo", photos / "00000_red_circle.png")[0] == 2  # no classes
    assert run("nonsense")[0] == 2
    assert run("predict", "-m", "demo", photos, *CLASSES, "--confidence", "2")[0] == 2


def test_predict_on_an_empty_folder_is_a_usage_error(tmp_path: Path) -> None:
    code, out, err = run("predict", "-m", "demo", tmp_path, *CLASSES)
    assert code == 2 and out == "" and "has no image files" in err and str(tmp_path) in err


def test_failures_are_one_line_without_traceback(photos: Path) -> None:
    code, out, err = run("predict", "-m", "no-such-model", photos, *CLASSES)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: -m/--checkpoint: 'no-such-model'")
    assert "Traceback" not in err
    verbose = CliRunner().invoke(
        main, ["predict", "-m", "no-such-model", str(photos), *CLASSES, "-v"]
    )
    assert verbose.exit_code == 1 and verbose.exception is not None  # the real exception, raised


@pytest.mark.parametrize(
    ("args", "flag", "python_words"),
    [
        (["-m", "ViT-B-32"], "--weights", "weights="),
        (["-m", "demo", "--batch-size", "0"], "--batch-size", "batch_size"),
        (["-m", "demo", "--templates", "no placeholder"], "--templates", "prompt_templates"),
    ],
)
def test_errors_name_cli_flags(photos: Path, args: list[str], flag: str, python_words: str) -> None:
    code, _, err = run("predict", photos / "00000_red_circle.png", *CLASSES, *args)
    assert code in (1, 2) and flag in err and python_words not in err


def test_label_twice_names_overwrite_and_resume(photos: Path, tmp_path: Path) -> None:
    assert run("label", "-m", "demo", photos, tmp_path / "out", *CLASSES)[0] == 0
    code, _, err = run("label", "-m", "demo", photos, tmp_path / "out", *CLASSES)
    assert code == 1 and "--overwrite" in err and "--resume" in err and "=True" not in err
    assert "OUTPUT_FOLDER" in err


def test_malformed_ontology_names_the_option_and_file(photos: Path, tmp_path: Path) -> None:
    broken, listed = tmp_path / "broken.json", tmp_path / "list.json"
    broken.write_text('{"a photo of a cat": ')
    listed.write_text('["cat", "dog"]')
    for path, problem in ((broken, "not valid JSON"), (listed, "expected a JSON object")):
        code, out, err = run("predict", "-m", "demo", photos, "--ontology", path)
        assert code == 2 and out == "" and "--ontology" in err and str(path) in err
        assert problem in err


@pytest.mark.parametrize("flag", ["--plot", "--grid"])
def test_output_files_are_checked_before_any_work(photos: Path, tmp_path: Path, flag: str) -> None:
    command = "predict" if flag == "--plot" else "label"
    args = [photos] if command == "predict" else [photos, tmp_path / "out"]
    code, _, err = run(command, "-m", "demo", *args, *CLASSES, flag, tmp_path / "nodir" / "x.png")
    assert code == 2 and flag in err and "does not exist" in err
    assert not (tmp_path / "out").exists()  # nothing was labelled first


def test_embed_writes_exactly_the_file_it_reports(photos: Path, tmp_path: Path) -> None:
    code, out, _ = run(
        "embed", "-m", "demo", photos, "-t", "a red circle", "-o", tmp_path / "v.npz", "--json"
    )
    assert code == 0 and json.loads(out)["output"] == str(tmp_path / "v.npz")
    with np.load(tmp_path / "v.npz") as saved:
        assert saved["embeddings"].shape == (25, 64)
        assert str(saved["inputs"][-1]) == "text:a red circle"
    code, out, _ = run("embed", "-m", "demo", "-t", "a red circle", "-o", tmp_path / "v.npy")
    assert code == 0 and out.strip().endswith(f"-> {tmp_path / 'v.npy'}")
    assert np.load(tmp_path / "v.npy").shape == (1, 64)
    code, _, err = run("embed", "-m", "demo", "-t", "x", "-o", tmp_path / "v.txt")
    assert code == 2 and "-o" in err and ".npy" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.npy", "v.npz"]
    code, out, _ = run("embed", "-m", "demo", "-t", "a blue square", "--json")
    vector = np.array(json.loads(out)["embeddings"][0])
    assert vector.shape == (64,) and abs(np.linalg.norm(vector) - 1) < 1e-4


def test_index_refuses_another_folder_and_other_options(photos: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    synthetic.write_folder(other, 3, seed=1)
    index_file = tmp_path / "photos.npz"
    assert run("index", "-m", "demo", photos, index_file)[0] == 0
    before = index_file.read_bytes()
    code, _, err = run("index", "-m", "demo", other, index_file)
    assert code == 1 and "INDEX_FILE" in err and str(photos) in err and str(other) in err
    assert "INPUT_FOLDER" in err and "input_folder" not in err
    code, _, err = run("index", "-m", "demo", photos, index_file, "-e", ".jpg")
    assert code == 1 and "--extension" in err and "extensions=" not in err
    code, _, err = run("index", "-m", "demo", photos, index_file, "--no-recursive")
    assert code == 1 and "--recursive" in err and "recursive=" not in err
    assert index_file.read_bytes() == before


def test_index_uses_its_own_checkpoint_and_counts_truthfully(
    with_bad: Path, tmp_path: Path
) -> None:
    index_file = tmp_path / "mixed.npz"
    code, out, _ = run("index", "-m", "demo", with_bad, index_file, "--json")
    assert code == 3 and json.loads(out)["added"] == 4 and json.loads(out)["failed"] == 1
    # No -m: the index's own checkpoint (the default, b32-fullcc, cannot load offline here).
    code, out, _ = run("index", with_bad, index_file, "--json")
    counts = json.loads(out)
    assert code == 3, out
    assert (counts["added"], counts["changed"], counts["removed"], counts["failed"]) == (0, 0, 0, 1)
    (with_bad / "00000_red_circle.png").unlink()
    code, out, _ = run("index", with_bad, index_file, "--json")
    assert json.loads(out)["removed"] == 1 and json.loads(out)["images"] == 3


def test_search_refuses_a_missing_image_path(photos: Path, tmp_path: Path) -> None:
    index_file = tmp_path / "photos.npz"
    run("index", "-m", "demo", photos, index_file)
    code, out, err = run("search", index_file, "missing/photo.jpg")
    assert code == 1 and out == "" and "missing/photo.jpg" in err and "--text" in err
    code, out, _ = run("search", index_file, "missing/photo.jpg", "--text", "-k", "2", "--json")
    assert code == 0 and len(json.loads(out)) == 2


def test_index_search_dedup_cluster(photos: Path, tmp_path: Path) -> None:
    index_file = tmp_path / "photos.npz"
    code, out, _ = run("index", "-m", "demo", photos, index_file, "--json")
    assert code == 0 and json.loads(out)["images"] == 24
    code, out, _ = run(  # no -m: the index knows its checkpoint
        "search", index_file, "a photo of a yellow triangle", "-k", "2", "--json",
        "--grid", tmp_path / "search.png",
    )  # fmt: skip
    hits = json.loads(out)
    assert code == 0 and all("yellow_triangle" in h["path"] for h in hits)
    assert Image.open(tmp_path / "search.png").format == "PNG"
    code, out, _ = run("search", index_file, photos / "00004_green_square.png", "-k", "1")
    assert code == 0 and "00004_green_square.png" in out
    code, out, _ = run("dedup", index_file, "--threshold", "0.9999", "--json")
    assert code == 0 and json.loads(out) == {"groups": []}
    names = [x for c in synthetic.COLOURS for x in ("-n", f"a photo of a {c} thing")]
    code, out, _ = run(
        "cluster", index_file, "-k", "4", "--json", "--sheet", tmp_path / "sheet.png", *names
    )
    clusters = json.loads(out)
    assert code == 0 and sum(c["size"] for c in clusters) == 24 and all(c["name"] for c in clusters)
    assert Image.open(tmp_path / "sheet.png").size == (1120, 640)
    code, _, err = run("search", index_file, "a cat", "-m", "b32-400m")
    assert code == 1 and err.startswith("error: ")


def test_label_writes_the_dataset_and_a_grid(photos: Path, tmp_path: Path) -> None:
    code, out, _ = run(
        "label", "-m", "demo", photos, tmp_path / "out", *CLASSES,
        "--grid", tmp_path / "grid.png", "--json",
    )  # fmt: skip
    data = json.loads(out)
    assert code == 0 and data["labeled"] + data["unlabeled"] == 24 and data["failed"] == 0
    with open(tmp_path / "out" / "manifest.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 24
    assert Image.open(tmp_path / "grid.png").format == "PNG"


def test_cache_dir_is_where_weights_are_looked_for(photos: Path, tmp_path: Path) -> None:
    cache = tmp_path / "weights-cache"
    code, _, err = run(
        "predict", "-m", "b32-400m", "--cache-dir", cache, photos / "00000_red_circle.png", *CLASSES
    )
    assert code == 1 and str(cache) in err and "--weights" in err


def test_checkpoints_and_help() -> None:
    code, out, _ = run("checkpoints", "--json")
    assert code == 0 and {r["name"] for r in json.loads(out)} >= {"b32-fullcc", "demo"}
    assert "| `b32-fullcc` |" in run("checkpoints", "--markdown")[1]
    for command in main.commands:
        code, out, _ = run(command, "--help")
        assert code == 0 and "Example" in out and "autodistill-metaclip" in out
    assert "--cache-dir" in run("predict", "--help")[1]


def _python(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_demo_keeps_its_output_and_runs_again(tmp_path: Path) -> None:
    helped = _python("-m", "autodistill_metaclip.demo", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "Usage: python -m autodistill_metaclip.demo" in helped.stdout
    assert list(tmp_path.iterdir()) == []  # --help ran nothing
    for _ in range(2):  # the second run replaces the first run's output
        done = _python("-m", "autodistill_metaclip", "demo", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    manifest = tmp_path / "metaclip-demo" / "labeled" / "manifest.csv"
    assert f"metaclip-demo{os.sep}labeled{os.sep}manifest.csv" in done.stdout
    with open(manifest, newline="") as f:
        assert len(list(csv.DictReader(f))) == 60
    labelled, total, correct = map(
        int, re.search(r"(\d+) of (\d+) images labelled, (\d+) correctly", done.stdout).groups()
    )
    assert total == 60 and labelled >= 57 and correct >= 0.95 * labelled
    assert "b32-fullcc" in done.stdout


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    done = _python("-m", "autodistill_metaclip", "checkpoints", cwd=tmp_path)
    assert done.returncode == 0 and "b32-fullcc" in done.stdout


def test_weights_are_not_dropped_for_the_index_default(photos: Path, tmp_path: Path) -> None:
    index_file = tmp_path / "photos.npz"
    run("index", "-m", "demo", photos, index_file)
    code, _, err = run("search", index_file, "a red circle", "--weights", tmp_path / "none.pt")
    assert code == 1 and "none.pt" in err


def test_index_accepts_the_same_suffixes_written_differently(photos: Path, tmp_path: Path) -> None:
    index_file = tmp_path / "photos.npz"
    assert run("index", "-m", "demo", photos, index_file, "-e", "png")[0] == 0
    code, out, _ = run("index", "-m", "demo", photos, index_file, "-e", ".PNG", "--json")
    assert code == 0 and json.loads(out)["added"] == 0


def test_demo_in_an_impossible_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    code, _, err = run("demo", tmp_path / "file.txt" / "demo")
    assert code == 1 and err.count("\n") == 1 and "FOLDER" in err and "Traceback" not in err


def test_predict_and_embed_expand_uri_folders(tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    for i, sample in enumerate(synthetic.samples(3, seed=8)):
        with fs.open(f"memory://cli-photos/{i}.png", "wb") as f:
            sample.image.save(f, format="PNG")
    try:
        code, out, _ = run("predict", "-m", "demo", "memory://cli-photos", *CLASSES, "--json")
        assert code == 0 and [r["image"] for r in json.loads(out)] == [
            f"memory://cli-photos/{i}.png" for i in range(3)
        ]
        code, out, _ = run("embed", "-m", "demo", "memory://cli-photos", "--json")
        assert code == 0 and len(json.loads(out)["embeddings"]) == 3
    finally:
        fs.rm("/cli-photos", recursive=True)

"""What every command shares: one exit-code rule (0 done, 1 error, 2 usage, 3 done with
unreadable inputs), one-line errors in the command line's own terms, strict JSON, output files
checked before any work."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from autodistill_metaclip import synthetic
from autodistill_metaclip.cli import PARTIAL, main
from autodistill_metaclip.cli.label import label
from autodistill_metaclip.cli.runner import in_cli_terms, printable, to_json
from autodistill_metaclip.engine.checkpoints import resolve
from autodistill_metaclip.errors import ArgumentError, OutputFolderError
from tests.helpers import run_cli

CLASSES = ["-c", "red circle", "-c", "a photo of a blue square=blue square", "-c", "green triangle"]


def test_exit_codes_follow_one_rule(photos: Path, with_bad: Path, tmp_path: Path) -> None:
    """0 all read, 3 done with unreadable inputs (listed), 1 error, 2 usage: for every command."""
    assert run_cli("predict", "-m", "demo", photos / "00000_red_circle.png", *CLASSES)[0] == 0
    code, out, _ = run_cli("predict", "-m", "demo", with_bad, *CLASSES, "--json")
    rows = json.loads(out)
    assert code == PARTIAL == 3 and len(rows) == 5
    assert [r["status"] == "failed" for r in rows] == [False, False, False, False, True]
    assert "bad.png" in rows[-1]["error"] and "not an image file" in rows[-1]["error"]
    code, out, _ = run_cli("label", "-m", "demo", with_bad, tmp_path / "out", *CLASSES, "--json")
    assert code == 3 and json.loads(out)["failed"] == 1
    assert json.loads(out)["failures"][0]["image"] == "bad.png"
    code, out, _ = run_cli("embed", "-m", "demo", with_bad, "--json")
    assert code == 3 and len(json.loads(out)["errors"]) == 1
    code, out, _ = run_cli("index", "-m", "demo", with_bad, tmp_path / "i.npz", "--json")
    assert code == 3 and json.loads(out)["failed"] == 1
    assert run_cli("predict", "-m", "no-such-model", photos, *CLASSES)[0] == 1
    assert run_cli("predict", "-m", "demo", photos / "00000_red_circle.png")[0] == 2  # no classes
    assert run_cli("nonsense")[0] == 2
    assert run_cli("predict", "-m", "demo", photos, *CLASSES, "--confidence", "2")[0] == 2


def test_failures_are_one_line_without_traceback(photos: Path) -> None:
    code, out, err = run_cli("predict", "-m", "no-such-model", photos, *CLASSES)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: -m/--checkpoint: 'no-such-model'")
    assert "Traceback" not in err
    verbose = CliRunner().invoke(
        main, ["predict", "-m", "no-such-model", str(photos), *CLASSES, "-v"]
    )
    assert verbose.exit_code == 1 and verbose.exception is not None  # the real exception, raised


@pytest.mark.parametrize(
    ("args", "flag", "python_words", "code"),
    [
        # the library judges a checkpoint after the command started: an error
        (["-m", "ViT-B-32"], "--weights", "weights=", 1),
        # click refuses a batch size below 1 while parsing: usage
        (["-m", "demo", "--batch-size", "0"], "--batch-size", "batch_size", 2),
        # templates are checked before any work: usage
        (["-m", "demo", "--templates", "no placeholder"], "--templates", "prompt_templates", 2),
    ],
)
def test_errors_name_cli_flags(
    photos: Path, args: list[str], flag: str, python_words: str, code: int
) -> None:
    got, _, err = run_cli("predict", photos / "00000_red_circle.png", *CLASSES, *args)
    assert got == code and flag in err and python_words not in err


def test_label_twice_names_overwrite_and_resume(photos: Path, tmp_path: Path) -> None:
    assert run_cli("label", "-m", "demo", photos, tmp_path / "out", *CLASSES)[0] == 0
    code, _, err = run_cli("label", "-m", "demo", photos, tmp_path / "out", *CLASSES)
    assert code == 1 and "--overwrite" in err and "--resume" in err and "=True" not in err
    assert "OUTPUT_FOLDER" in err and "output_folder" not in err


@pytest.mark.parametrize("flag", ["--plot", "--grid"])
def test_output_files_are_checked_before_any_work(photos: Path, tmp_path: Path, flag: str) -> None:
    command = "predict" if flag == "--plot" else "label"
    args = [photos] if command == "predict" else [photos, tmp_path / "out"]
    code, _, err = run_cli(
        command, "-m", "demo", *args, *CLASSES, flag, tmp_path / "nodir" / "x.png"
    )
    assert code == 2 and flag in err and "does not exist" in err
    assert not (tmp_path / "out").exists()  # nothing was labelled first
    code, _, err = run_cli(command, "-m", "demo", *args, *CLASSES, flag, tmp_path / "x.jpg")
    assert code == 2 and flag in err and "expected a file name ending in .png" in err


def _in_label_terms(error: Exception) -> str:
    with click.Context(label):
        return in_cli_terms(error)


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (ArgumentError("confidence", "expected a number in [0, 1], but got 2"),
         "--confidence: expected a number in [0, 1], but got 2"),
        (ArgumentError("checkpoint", "unknown"), "-m/--checkpoint: unknown"),
        (ArgumentError("input_folder", "'x' does not exist"), "INPUT_FOLDER: 'x' does not exist"),
        (OutputFolderError("output_folder", "not empty; pass {overwrite} or {resume}",
                           overwrite=True, resume=True),
         "OUTPUT_FOLDER: not empty; pass --overwrite or --resume"),
        (ArgumentError("resume", "differs; pass {overwrite}", overwrite=True),
         "--resume: differs; pass --overwrite"),
        (ArgumentError("checkpoint", "pass {weights}", weights=...),
         "-m/--checkpoint: pass --weights VALUE"),
        (ArgumentError("checkpoint", "try {batch_size}", batch_size=8),
         "-m/--checkpoint: try --batch-size 8"),
        (ArgumentError("overwrite, resume", "expected at most one of them, but got both"),
         "--overwrite, --resume: expected at most one of them, but got both"),
        (ArgumentError("ontology", "label() needs one"),
         "the classes (-c/--class, --ontology or --examples): label() needs one"),
        (ArgumentError("nothing_like_it", "{other} too", other=3), "nothing_like_it: other 3 too"),
        (ValueError("two\nlines   and  spaces"), "two lines and spaces"),
        (KeyError(), "KeyError"),
    ],
    ids=lambda x: type(x).__name__ if isinstance(x, Exception) else "",
)  # fmt: skip
def test_in_cli_terms_names_the_flags(error: Exception, shown: str) -> None:
    assert _in_label_terms(error) == shown


def test_in_cli_terms_outside_a_command_keeps_the_names() -> None:
    error = ArgumentError("output_folder", "pass {overwrite}", overwrite=True)
    assert in_cli_terms(error) == "output_folder: pass overwrite True"


def test_to_json_is_strict() -> None:
    data = {
        "nan": float("nan"),
        "inf": [float("inf"), -math.inf, 1.5],
        "numpy": (np.float32(0.25), np.int64(7), np.float64("nan")),
        "path": Path("a/b.png"),
    }
    text = to_json(data)

    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    assert json.loads(text, parse_constant=refuse) == {
        "nan": None,
        "inf": [None, None, 1.5],
        "numpy": [0.25, 7, None],
        "path": "a/b.png",
    }


def test_nan_never_reaches_json_output(tmp_path: Path) -> None:
    """Weights whose projection is NaN (a corrupt or hostile file) give NaN scores: the JSON
    printed is still strict JSON, with null where a number cannot be written."""
    state = load_file(str(resolve("demo").weights_file))
    state["visual.proj"] = state["visual.proj"] * float("nan")
    weights = tmp_path / "nan.safetensors"
    save_file(state, str(weights))
    image = tmp_path / "x.png"
    synthetic.make_image("red", "circle").save(image)
    code, out, _ = run_cli(
        "predict", "-m", "demo", "--weights", weights, "-c", "a", "-c", "b", "--json", image
    )

    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    data = json.loads(out, parse_constant=refuse)
    assert code == 0 and "null" in out and data


def test_printable_shows_every_control_character_and_nothing_else() -> None:
    controls = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))]
    shown = printable("".join(controls))
    assert shown == "".join(f"\\x{ord(c):02x}" for c in controls) and shown.isprintable()
    assert printable("café 日本 \\x1b ok.png") == "café 日本 \\x1b ok.png"  # as they are
    assert printable(os.fsdecode(b"caf\xe9.png")) == "caf\\xe9.png"  # a byte, not UTF-8
    assert printable("a\nb\x1b", keep="\n") == "a\nb\\x1b"


def test_error_and_warning_lines_show_control_characters(photos: Path) -> None:
    code, _, err = run_cli("predict", "-m", "demo", photos, "-c", "\x1b]0;owned\x07red circle")
    assert code == 0 and "warning: ontology: one class ('\\x1b]0;owned\\x07red circle')" in err
    assert "\x1b" not in err and "\x07" not in err
    code, _, err = run_cli("predict", "-m", "\x1b[2Jnone", photos, "-c", "a", "-c", "b")
    assert code == 1 and err.startswith("error: ") and "\\x1b[2Jnone" in err
    assert "\x1b" not in err

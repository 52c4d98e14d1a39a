"""The package's exceptions: what they are (which built-in errors they also are), and how an
error about one argument renders, for Python and for the command line."""

from __future__ import annotations

import pytest

from autodistill_metaclip.errors import (
    ArgumentError,
    ArgumentTypeError,
    CheckpointError,
    ExplainedError,
    ImageLoadError,
    MetaCLIPWarning,
    OutputFolderError,
    WeightsUnavailableError,
)


def test_an_argument_error_names_its_argument() -> None:
    error = ArgumentError("confidence", "expected a number in [0, 1], but got 2")
    assert str(error) == "confidence: expected a number in [0, 1], but got 2"
    assert (error.argument, error.message, error.fixes) == (
        "confidence", "expected a number in [0, 1], but got 2", {},
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"^confidence: expected"):
        raise error


@pytest.mark.parametrize(
    ("error", "also"),
    [
        (ArgumentError("a", "m"), (ValueError, ExplainedError)),
        (ArgumentTypeError("a", "m"), (TypeError, ValueError, ArgumentError)),
        (OutputFolderError("a", "m"), (FileExistsError, OSError, ArgumentError)),
        (CheckpointError("a", "m"), (ValueError, ArgumentError)),
        (WeightsUnavailableError("a", "m"), (RuntimeError, ExplainedError)),
        (ImageLoadError("m"), (ValueError,)),
    ],
    ids=lambda x: type(x).__name__ if isinstance(x, Exception) else "",
)
def test_each_error_is_also_the_built_in_error_callers_catch(error, also) -> None:
    assert all(isinstance(error, kind) for kind in also)


def test_weights_unavailable_is_not_a_value_error() -> None:
    assert not isinstance(WeightsUnavailableError("checkpoint", "m"), ValueError)
    assert not isinstance(ImageLoadError("m"), ExplainedError)
    assert issubclass(MetaCLIPWarning, UserWarning)


def test_fixes_fill_the_placeholders() -> None:
    error = OutputFolderError(
        "output_folder",
        "'out' is not empty; pass {overwrite} to replace it, or {resume} to continue it",
        overwrite=True,
        resume=True,
    )
    assert str(error) == (
        "output_folder: 'out' is not empty; pass overwrite=True to replace it, "
        "or resume=True to continue it"
    )
    assert error.fixes == {"overwrite": True, "resume": True}
    assert "{overwrite}" in error.message  # the placeholders stay for other renderings
    weights = WeightsUnavailableError("checkpoint", "pass {weights}", weights=...)
    assert str(weights) == "checkpoint: pass weights=..."
    path = ArgumentError("checkpoint", "or pass {weights}", weights="w.safetensors")
    assert str(path) == "checkpoint: or pass weights='w.safetensors'"


def test_render_shows_arguments_and_fixes_in_other_terms() -> None:
    error = ArgumentError(
        "output_folder", "pass {overwrite} or {resume}", overwrite=True, resume=True
    )
    flags = {"output_folder": "OUTPUT_FOLDER", "overwrite": "--overwrite", "resume": "--resume"}
    shown = error.render(lambda name: flags[name], lambda name, value: flags[name])
    assert shown == "OUTPUT_FOLDER: pass --overwrite or --resume"
    assert error.render(str.upper, lambda n, v: f"<{n}={v}>") == (
        "OUTPUT_FOLDER: pass <overwrite=True> or <resume=True>"
    )
    plain = ArgumentError("seed", "expected a non-negative integer, but got -1")
    assert plain.render(lambda n: f"--{n}", lambda n, v: "unused") == (
        "--seed: expected a non-negative integer, but got -1"
    )

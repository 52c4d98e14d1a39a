"""The exceptions this package raises on purpose, one per kind of problem.

Each message names the input and the cause. A wrong argument value raises
:class:`ArgumentError` (a ``ValueError``; :class:`ArgumentTypeError` is also a ``TypeError``),
which carries the argument's name, so the command line can name its flag instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ExplainedError(Exception):
    """An error about one argument, whose message may suggest setting other arguments.

    Attributes:
        argument: The Python argument the message is about (its CLI flag has the same dest).
        message: What is wrong, without the argument's name; may name other arguments as
            ``{name}`` placeholders, filled from ``fixes``.
        fixes: ``{argument: value}`` that the message suggests (e.g. ``overwrite=True``).
    """

    def __init__(self, argument: str, message: str, **fixes: Any) -> None:
        self.argument, self.message, self.fixes = argument, message, fixes
        super().__init__(self.render(str, _python_argument))

    def render(self, name: Callable[[str], str], suggestion: Callable[[str, Any], str]) -> str:
        """The message with the argument shown by ``name(argument)`` and each suggested
        argument by ``suggestion(argument, value)`` (the CLI shows flags)."""
        text = self.message
        for key, value in self.fixes.items():
            text = text.replace(f"{{{key}}}", suggestion(key, value))
        return f"{name(self.argument)}: {text}"


class ArgumentError(ExplainedError, ValueError):
    """An argument has a value that cannot work ("expected ..., but got ...").

    Examples:
        >>> raise ArgumentError("confidence", "expected a number in [0, 1], but got 2")
        Traceback (most recent call last):
        autodistill_metaclip.errors.ArgumentError: confidence: expected a number in [0, 1], ...
    """


def _python_argument(name: str, value: Any) -> str:
    return f"{name}=..." if value is ... else f"{name}={value!r}"


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument of a type that cannot work (``None`` for an image, text for a number)."""


class OutputFolderError(ArgumentError, FileExistsError):
    """An output folder holds what this run may not replace or continue (a ``FileExistsError``
    too)."""


class ImageLoadError(ValueError):
    """An input could not be read as an image (missing, unreadable, corrupt, not an image)."""


class CheckpointError(ArgumentError):
    """A checkpoint, architecture, tag or weights file is unknown, mismatched or unsafe."""


class WeightsUnavailableError(ExplainedError, RuntimeError):
    """Pretrained weights are neither cached nor downloadable (e.g. no network)."""


class MetaCLIPWarning(UserWarning):
    """Something works, but probably not as meant (e.g. an ontology of one class)."""

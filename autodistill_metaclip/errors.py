"""The exceptions this package raises on purpose, one per kind of problem.

Each message names the input and the cause. Wrong argument values that are not images or
checkpoints raise plain ``ValueError``/``TypeError`` ("expected ..., but got ...").
"""

from __future__ import annotations


class ImageLoadError(ValueError):
    """An input could not be read as an image (missing, unreadable, corrupt, not an image)."""


class CheckpointError(ValueError):
    """A checkpoint, architecture, tag or weights file is unknown, mismatched or unsafe."""


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither cached nor downloadable (e.g. no network)."""


class MetaCLIPWarning(UserWarning):
    """Something works, but probably not as meant (e.g. an ontology of one class)."""

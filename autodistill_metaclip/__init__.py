"""MetaCLIP for Autodistill: zero-shot classification, embeddings and dataset labelling.

The public names are imported on first use, so ``import autodistill_metaclip`` (and the command
line's ``--help``) does not load torch.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autodistill_metaclip.checkpoints import (
        CHECKPOINTS,
        DEFAULT_CHECKPOINT,
        Checkpoint,
        get_checkpoint,
        list_checkpoints,
    )
    from autodistill_metaclip.errors import (
        CheckpointError,
        ImageLoadError,
        MetaCLIPWarning,
        WeightsUnavailableError,
    )
    from autodistill_metaclip.images import load_image
    from autodistill_metaclip.index import EmbeddingIndex
    from autodistill_metaclip.model import MetaCLIP, ModelSpec
    from autodistill_metaclip.results import Embedding, Prediction
    from autodistill_metaclip.zeroshot import TEMPLATE_PRESETS, ExampleOntology

_HOMES = {
    "CHECKPOINTS": "checkpoints",
    "DEFAULT_CHECKPOINT": "checkpoints",
    "Checkpoint": "checkpoints",
    "get_checkpoint": "checkpoints",
    "list_checkpoints": "checkpoints",
    "CheckpointError": "errors",
    "ImageLoadError": "errors",
    "MetaCLIPWarning": "errors",
    "WeightsUnavailableError": "errors",
    "load_image": "images",
    "EmbeddingIndex": "index",
    "MetaCLIP": "model",
    "ModelSpec": "model",
    "Embedding": "results",
    "Prediction": "results",
    "TEMPLATE_PRESETS": "zeroshot",
    "ExampleOntology": "zeroshot",
}

try:
    __version__ = version("autodistill-metaclip")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "CHECKPOINTS",
    "DEFAULT_CHECKPOINT",
    "TEMPLATE_PRESETS",
    "Checkpoint",
    "CheckpointError",
    "Embedding",
    "EmbeddingIndex",
    "ExampleOntology",
    "ImageLoadError",
    "MetaCLIP",
    "MetaCLIPWarning",
    "ModelSpec",
    "Prediction",
    "WeightsUnavailableError",
    "__version__",
    "get_checkpoint",
    "list_checkpoints",
    "load_image",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'autodistill_metaclip' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"autodistill_metaclip.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

"""MetaCLIP for Autodistill: zero-shot classification, embeddings and dataset labelling."""

from importlib.metadata import PackageNotFoundError, version

from autodistill_metaclip.checkpoints import (
    CHECKPOINTS,
    DEFAULT_CHECKPOINT,
    Checkpoint,
    get_checkpoint,
    list_checkpoints,
)
from autodistill_metaclip.errors import CheckpointError, ImageLoadError, WeightsUnavailableError
from autodistill_metaclip.images import load_image
from autodistill_metaclip.model import MetaCLIP

try:
    __version__ = version("autodistill-metaclip")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "CHECKPOINTS",
    "DEFAULT_CHECKPOINT",
    "Checkpoint",
    "CheckpointError",
    "ImageLoadError",
    "MetaCLIP",
    "WeightsUnavailableError",
    "__version__",
    "get_checkpoint",
    "list_checkpoints",
    "load_image",
]

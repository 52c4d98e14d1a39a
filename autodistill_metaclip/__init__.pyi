# The public names of autodistill_metaclip, listed once: for type checkers (``X as X`` marks a
# re-export) and as the table ``lazy_loader`` imports them from on first use.
from .engine.checkpoints import CHECKPOINTS as CHECKPOINTS
from .engine.checkpoints import DEFAULT_CHECKPOINT as DEFAULT_CHECKPOINT
from .engine.checkpoints import Checkpoint as Checkpoint
from .engine.checkpoints import get_checkpoint as get_checkpoint
from .engine.checkpoints import list_checkpoints as list_checkpoints
from .engine.ontology import ExampleOntology as ExampleOntology
from .engine.spec import TEMPLATE_PRESETS as TEMPLATE_PRESETS
from .engine.spec import ModelSpec as ModelSpec
from .errors import ArgumentError as ArgumentError
from .errors import CheckpointError as CheckpointError
from .errors import ImageLoadError as ImageLoadError
from .errors import MetaCLIPWarning as MetaCLIPWarning
from .errors import WeightsUnavailableError as WeightsUnavailableError
from .index import EmbeddingIndex as EmbeddingIndex
from .inputs.images import load_image as load_image
from .inputs.policy import InputPolicy as InputPolicy
from .labeling.options import LabelOptions as LabelOptions
from .model import MetaCLIP as MetaCLIP
from .results import Embedding as Embedding
from .results import Prediction as Prediction
from .results import Status as Status

__version__: str
__all__: list[str]

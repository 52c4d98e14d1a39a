"""How to build a model, as data: :class:`ModelSpec`, checked without loading torch.

The command line checks its model options with it before anything heavy is imported, and Ray
actors build their model from it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from autodistill_metaclip.engine.checkpoints import DEFAULT_CHECKPOINT
from autodistill_metaclip.errors import ArgumentError, ArgumentTypeError
from autodistill_metaclip.inputs.images import DEFAULT_DECODE_MEMORY
from autodistill_metaclip.inputs.policy import DEFAULT_POLICY, InputPolicy

if TYPE_CHECKING:
    from autodistill_metaclip.model import MetaCLIP

PRECISIONS = ("fp32", "fp16", "bf16")
"""open_clip's precision names."""


def _open_clip_templates() -> ModuleType:
    """open_clip's template lists (``open_clip.zero_shot_metadata``, plain data), read without
    importing open_clip itself, which loads torch."""
    loaded = sys.modules.get("open_clip.zero_shot_metadata")
    if loaded is not None:
        return loaded
    found = importlib.util.find_spec("open_clip")
    if found is None or found.origin is None:
        raise ImportError("open_clip is not installed: pip install open_clip_torch")
    path = Path(found.origin).parent / "zero_shot_metadata.py"
    loader = importlib.util.spec_from_file_location("_metaclip_templates", path)
    if loader is None or loader.loader is None:
        raise ImportError(f"cannot read open_clip's templates from {str(path)!r}")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


_templates = _open_clip_templates()
TEMPLATE_PRESETS: dict[str, tuple[str, ...]] = {
    "openai": tuple(t("{}") for t in _templates.OPENAI_IMAGENET_TEMPLATES),
    "simple": tuple(t("{}") for t in _templates.SIMPLE_IMAGENET_TEMPLATES),
}
"""``"openai"``: the 80 templates of CLIP's (and MetaCLIP's) ImageNet evaluation."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build a :class:`MetaCLIP` again, e.g. in a Ray actor. Picklable.

    ``MetaCLIP.spec`` is read from the model's live state, so it always builds the same model.
    Paths in it (a weights file, a config JSON, ``cache_dir``) must exist where it is built.
    The fields are the constructor's arguments (but ``device``, chosen where it is built).
    """

    ontology: Any = None
    checkpoint: str = DEFAULT_CHECKPOINT
    weights: str | None = None
    precision: str | None = None
    batch_size: int = 32
    cache_dir: str | None = None
    prompt_templates: tuple[str, ...] | None = None
    draft_decoding: bool = False
    decode_memory: int = DEFAULT_DECODE_MEMORY
    inputs: InputPolicy = DEFAULT_POLICY

    def __post_init__(self) -> None:
        if self.inputs is None:
            object.__setattr__(self, "inputs", DEFAULT_POLICY)
        if not isinstance(self.inputs, InputPolicy):
            raise ArgumentTypeError(
                "inputs", f"expected an InputPolicy or None, but got {type(self.inputs).__name__}"
            )
        for name in ("batch_size", "decode_memory"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(name, f"expected a positive integer, but got {value!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ArgumentError(
                "precision", f"expected one of {', '.join(PRECISIONS)}, but got {self.precision!r}"
            )
        if not isinstance(self.draft_decoding, bool):
            raise ArgumentTypeError(
                "draft_decoding", f"expected True or False, but got {self.draft_decoding!r}"
            )
        for name in ("checkpoint", "weights", "cache_dir"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, os.fspath(value))
        object.__setattr__(self, "prompt_templates", resolve_templates(self.prompt_templates))

    def build(self, device: Any = None) -> MetaCLIP:
        """The model; ``device=None`` picks the best device of the process that builds it."""
        from autodistill_metaclip import MetaCLIP  # the public name, loaded on first use

        options = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "ontology"}
        return MetaCLIP(self.ontology, device=device, **options)


def resolve_templates(templates: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """A preset name, one template or a list of them, each with one ``{}`` for the prompt."""
    if templates is None:
        return None
    if isinstance(templates, str):
        if templates in TEMPLATE_PRESETS:
            return TEMPLATE_PRESETS[templates]
        if "{}" not in templates:
            raise ArgumentError(
                "prompt_templates",
                f"expected a preset ({', '.join(TEMPLATE_PRESETS)}) or a "
                f"format string with {{}}, but got {templates!r}",
            )
        templates = [templates]
    resolved = tuple(templates)
    bad = [t for t in resolved if not isinstance(t, str) or t.count("{}") != 1]
    if not resolved or bad:
        raise ArgumentError(
            "prompt_templates",
            f"expected format strings with exactly one {{}} each, but got {bad or 'none'}",
        )
    return resolved

"""Every MetaCLIP checkpoint open_clip loads, kept as data, and how a name becomes a model.

The table pairs each checkpoint with the open_clip architecture it was trained as. All MetaCLIP 1
models except "Altogether" use QuickGELU; open_clip only *warns* when a tag is paired with the
wrong activation and then computes wrong embeddings, so :func:`resolve` refuses that pairing.
open_clip is imported only by the functions that need it: the table loads without torch.

Examples:
    >>> [c.name for c in list_checkpoints("b32-*")]
    ['b32-400m', 'b32-fullcc']
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import os
from dataclasses import dataclass
from pathlib import Path

from autodistill_metaclip.errors import ArgumentTypeError, CheckpointError

DEFAULT_CHECKPOINT = "b32-fullcc"
WEIGHTS_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
MAX_CONFIG_BYTES = 1024 * 1024
"""Largest model-config JSON read."""
_DEMO_DIR = Path(__file__).parents[1] / "demo"
_NC = "CC-BY-NC-4.0"


@dataclass(frozen=True)
class Checkpoint:
    """One released MetaCLIP checkpoint.

    Attributes:
        name: Our short name, e.g. ``"b32-fullcc"``.
        architecture: The open_clip model name, QuickGELU variant included.
        pretrained: The open_clip pretrained tag (for the bundled demo: a file in the package).
        release: ``"MetaCLIP 1"``, ``"MetaCLIP 2"`` or ``"demo"``.
        data: The curated training data.
        imagenet_top1: ImageNet zero-shot top-1 (%) as published by the authors, if published.
        params_m: Parameters, in millions.
        resolution: Input side length in pixels.
        license: Licence of the weights (SPDX).
        near_duplicates: The cosine at which ``label()`` groups near-duplicates by default: real
            CLIP models put re-encodes and resized copies of a photo at 0.98 and above; the
            demo model packs a whole class that close, so it needs a higher one.
    """

    name: str
    architecture: str
    pretrained: str
    release: str
    data: str
    imagenet_top1: float | None
    params_m: float
    resolution: int
    license: str = _NC
    near_duplicates: float = 0.98

    @property
    def bundled(self) -> bool:
        """True when config and weights ship inside this package (no download)."""
        return self.release == "demo"


CHECKPOINTS: tuple[Checkpoint, ...] = (
    Checkpoint("b32-400m", "ViT-B-32-quickgelu", "metaclip_400m", "MetaCLIP 1", "400M", 65.5, 151.3, 224),
    Checkpoint("b32-fullcc", "ViT-B-32-quickgelu", "metaclip_fullcc", "MetaCLIP 1", "2.5B", 67.6, 151.3, 224),
    Checkpoint("b16-400m", "ViT-B-16-quickgelu", "metaclip_400m", "MetaCLIP 1", "400M", 70.8, 149.6, 224),
    Checkpoint("b16-fullcc", "ViT-B-16-quickgelu", "metaclip_fullcc", "MetaCLIP 1", "2.5B", 72.1, 149.6, 224),
    Checkpoint("l14-400m", "ViT-L-14-quickgelu", "metaclip_400m", "MetaCLIP 1", "400M", 76.2, 427.6, 224),
    Checkpoint("l14-fullcc", "ViT-L-14-quickgelu", "metaclip_fullcc", "MetaCLIP 1", "2.5B", 79.2, 427.6, 224),
    Checkpoint("h14-fullcc", "ViT-H-14-quickgelu", "metaclip_fullcc", "MetaCLIP 1", "2.5B", 80.5, 986.1, 224),
    Checkpoint("bigg14-fullcc", "ViT-bigG-14-quickgelu", "metaclip_fullcc", "MetaCLIP 1", "2.5B", 82.1, 2539.6, 224),
    Checkpoint("h14-altogether", "ViT-H-14", "metaclip_altogether", "MetaCLIP 1.2", "Altogether", 82.0, 986.1, 224),
    Checkpoint("h14-worldwide", "ViT-H-14-worldwide-quickgelu", "metaclip2_worldwide", "MetaCLIP 2", "worldwide", 81.3, 1858.8, 224),
    Checkpoint("h14-378-worldwide", "ViT-H-14-worldwide-378", "metaclip2_worldwide", "MetaCLIP 2", "worldwide", None, 1859.4, 378),
    Checkpoint("bigg14-worldwide", "ViT-bigG-14-worldwide", "metaclip2_worldwide", "MetaCLIP 2", "worldwide", None, 3630.4, 224),
    Checkpoint("bigg14-378-worldwide", "ViT-bigG-14-worldwide-378", "metaclip2_worldwide", "MetaCLIP 2", "worldwide", None, 3631.2, 378),
    Checkpoint("demo", "metaclip-demo", "metaclip-demo.safetensors", "demo", "synthetic shapes", None, 1.7, 32, "MIT", 0.995),
)  # fmt: skip


@dataclass(frozen=True)
class Resolved:
    """What to build: an open_clip architecture and where its weights come from."""

    name: str
    architecture: str
    tag: str | None = None
    weights_file: Path | None = None


def list_checkpoints(pattern: str = "*") -> list[Checkpoint]:
    """Checkpoints whose name matches a shell-style ``pattern`` (case-insensitive)."""
    return [c for c in CHECKPOINTS if fnmatch.fnmatch(c.name, pattern.lower())]


def get_checkpoint(name: str) -> Checkpoint:
    """The table row called ``name``; an unknown name lists the closest valid ones."""
    for checkpoint in CHECKPOINTS:
        if checkpoint.name == name.lower():
            return checkpoint
    names = [c.name for c in CHECKPOINTS]
    raise CheckpointError("checkpoint", f"unknown name {name!r}. {_suggest(name, names)}")


def near_duplicate_default(checkpoint: str) -> float:
    """The near-duplicate threshold of a checkpoint (0.98 for names not in the table)."""
    entry = next((c for c in CHECKPOINTS if c.name == checkpoint.lower()), None)
    return entry.near_duplicates if entry is not None else Checkpoint.near_duplicates


def markdown_table() -> str:
    """The checkpoint table as Markdown, for the docs' Checkpoints page and the README."""
    lines = [
        "| name | open_clip architecture | pretrained tag | release | data | ImageNet top-1 "
        "| params (M) | resolution | weights licence |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in CHECKPOINTS:
        top1 = "—" if c.imagenet_top1 is None else f"{c.imagenet_top1:.1f}"
        lines.append(
            f"| `{c.name}` | `{c.architecture}` | `{c.pretrained}` | {c.release} | {c.data} "
            f"| {top1} | {c.params_m:,.1f} | {c.resolution} | {c.license} |"
        )
    return "\n".join(lines)


def resolve(
    checkpoint: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None
) -> Resolved:
    """Turn the ``checkpoint``/``weights`` arguments of ``MetaCLIP`` into what to build.

    Args:
        checkpoint: A table name, an open_clip architecture name, or the path of an open_clip
            model-config JSON file.
        weights: ``None`` for the table's pretrained tag, an open_clip pretrained tag, or a local
            ``.safetensors``/``.pt``/``.pth``/``.bin`` file. Required unless ``checkpoint`` is a
            table name.

    Raises:
        CheckpointError: Unknown name or tag, a missing file, or a QuickGELU mismatch.
    """
    import open_clip

    if not isinstance(checkpoint, str | os.PathLike):
        raise ArgumentTypeError(
            "checkpoint", f"expected a name or a path, but got {type(checkpoint).__name__}"
        )
    text = os.fspath(checkpoint)
    entry = next((c for c in CHECKPOINTS if c.name == text.lower()), None)
    if entry is not None:
        if entry.bundled:
            architecture = _register_config(_DEMO_DIR / f"{entry.architecture}.json")
            default: str | os.PathLike[str] | None = _DEMO_DIR / entry.pretrained
        else:
            architecture, default = entry.architecture, entry.pretrained
        name = entry.name
    elif text.lower().endswith(".json"):
        architecture = _register_config(Path(text))
        default, name = None, architecture
    elif text in open_clip.list_models():
        architecture, default, name = text, None, text
    else:
        choices = [c.name for c in CHECKPOINTS] + open_clip.list_models()
        raise CheckpointError(
            "checkpoint",
            f"{text!r} is neither a MetaCLIP checkpoint name, an open_clip "
            f"architecture, nor a model-config .json file. {_suggest(text, choices)}",
        )

    source = default if weights is None else weights
    if source is None:
        raise CheckpointError(
            "weights",
            f"{name!r} is not in the checkpoint table, so pass {{weights}} "
            "(an open_clip pretrained tag or a local weights file)",
            weights=...,
        )
    if not isinstance(source, str) or _looks_like_path(source):
        return Resolved(name, architecture, weights_file=_weights_file(Path(source)))
    _check_tag(architecture, source)
    return Resolved(name, architecture, tag=source)


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f"Did you mean {', '.join(map(repr, close))}? " if close else ""
    return f"{hint}Valid MetaCLIP checkpoints: {', '.join(c.name for c in CHECKPOINTS)}."


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.lower().endswith(WEIGHTS_SUFFIXES)


def _weights_file(path: Path) -> Path:
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "does not exist"
        raise CheckpointError("weights", f"{str(path)!r} {problem}")
    if path.suffix.lower() not in WEIGHTS_SUFFIXES:
        raise CheckpointError(
            "weights", f"expected a {'/'.join(WEIGHTS_SUFFIXES)} file, but got {str(path)!r}"
        )
    return path


def _register_config(path: Path) -> str:
    """Add a model-config JSON to open_clip's registry; its file stem becomes the name."""
    import open_clip

    from autodistill_metaclip.inputs.files import read_file

    try:
        config = json.loads(read_file(path, MAX_CONFIG_BYTES, "checkpoint"))
    except ValueError as e:  # not a regular file, too large, not UTF-8 JSON
        raise CheckpointError("checkpoint", f"cannot read model config {str(path)!r}: {e}") from e
    required = ("embed_dim", "vision_cfg", "text_cfg")
    if not isinstance(config, dict) or not all(key in config for key in required):
        raise CheckpointError(
            "checkpoint",
            f"{str(path)!r} is not an open_clip model config "
            f"(expected the keys {', '.join(required)})",
        )
    existing = open_clip.get_model_config(path.stem)
    if existing is not None and existing != config:
        raise CheckpointError(
            "checkpoint",
            f"{str(path)!r} would replace open_clip's own {path.stem!r} config; rename the file",
        )
    if existing is None:
        open_clip.add_model_config(path)
    return path.stem


def _gelu_sibling(architecture: str) -> str | None:
    """The same architecture with the other GELU flavour, if open_clip has it."""
    import open_clip

    suffix = "-quickgelu"
    other = (
        architecture.removesuffix(suffix)
        if architecture.endswith(suffix)
        else architecture + suffix
    )
    return other if other in open_clip.list_models() else None


def _check_tag(architecture: str, tag: str) -> None:
    """Refuse a tag that open_clip does not know for ``architecture`` or whose GELU differs."""
    import open_clip

    sibling = _gelu_sibling(architecture)
    tags = open_clip.list_pretrained_tags_by_model(architecture)
    if tag.lower().replace("-", "_") not in tags:
        if sibling and open_clip.is_pretrained_cfg(sibling, tag):
            raise CheckpointError(
                "weights",
                f"{tag!r} was trained with a different GELU than {architecture!r}; "
                f"use checkpoint={sibling!r}",
            )
        listed = ", ".join(tags) if tags else "none"
        raise CheckpointError(
            "weights",
            f"{tag!r} is not a pretrained tag of {architecture!r} "
            f"(its tags: {listed}) nor an existing file",
        )
    model_quick_gelu = bool(open_clip.get_model_config(architecture).get("quick_gelu", False))
    tag_quick_gelu = bool(open_clip.get_pretrained_cfg(architecture, tag).get("quick_gelu", False))
    if model_quick_gelu != tag_quick_gelu:
        trained = "with" if tag_quick_gelu else "without"
        fix = f"use checkpoint={sibling!r}" if sibling else "no matching architecture exists"
        raise CheckpointError(
            "weights",
            f"{tag!r} was trained {trained} QuickGELU but {architecture!r} "
            f"{'uses' if model_quick_gelu else 'does not use'} it, which gives wrong "
            f"embeddings; {fix}",
        )

"""What the classes are: a caption ontology (``{prompt: class}``) or example images per class
(:class:`ExampleOntology`), checked, and described as data for a run's identity.

Light to import (autodistill, seconds to import, only when an ontology is made), so options can
be checked before the model is loaded. Sizes are capped, so an ontology from an untrusted file
costs bounded work: at most :data:`MAX_PROMPTS` prompts (and classes, and captions), each
prompt, caption and class name at most :data:`MAX_PROMPT_CHARACTERS` characters (the model reads
about 77 tokens, a few hundred characters, of each).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from autodistill_metaclip.errors import ArgumentError, ArgumentTypeError

if TYPE_CHECKING:
    from autodistill.detection import CaptionOntology

MAX_PROMPTS = 10_000
"""Most prompts (and classes, and captions) in one ontology."""
MAX_PROMPT_CHARACTERS = 10_000
"""Longest prompt, caption or class name, in characters."""


@dataclass(frozen=True)
class ExampleOntology:
    """Classes defined by example images, optionally with captions too.

    Args:
        examples: ``{class: [image, ...]}``; images are anything ``predict`` accepts, or a
            ``(D,)``/``(k, D)`` array of embeddings computed beforehand.
        captions: Optional ``{class: caption or [captions]}``, mixed into the class.

    Examples:
        >>> ontology = ExampleOntology({"cat": ["cat1.jpg", "cat2.jpg"], "dog": ["dog.jpg"]})
    """

    examples: Mapping[str, Sequence[Any] | np.ndarray]
    captions: Mapping[str, str | Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.examples:
            raise ArgumentError("ontology", "expected at least one class of examples, but got none")
        for name, items in self.examples.items():
            if not isinstance(name, str) or not name.strip():
                raise ArgumentError("ontology", f"expected class names as text, but got {name!r}")
            if len(items) == 0:
                raise ArgumentError("ontology", f"class {_short(name)} has no examples")
        captions = [
            text
            for value in self.captions.values()
            for text in ([value] if isinstance(value, str) else value)
        ]
        check_size("captions", captions, list(self.examples))
        unknown = set(self.captions) - set(self.examples)
        if unknown:
            raise ArgumentError(
                "ontology", f"captions for classes without examples: {sorted(unknown)}"
            )

    def classes(self) -> list[str]:
        """Class names, in order."""
        return list(self.examples)

    def prompts(self) -> list[str]:
        """The class names (autodistill's ontology interface)."""
        return self.classes()


Ontology: TypeAlias = "CaptionOntology | ExampleOntology"


def as_ontology(ontology: Any) -> Ontology:
    """Accept a ``CaptionOntology`` (or any object with string ``prompts()`` and ``classes()``),
    a plain ``{prompt: class}`` dict, an :class:`ExampleOntology`, or autodistill's
    ``EmbeddingOntologyImage`` (``{class: [image paths]}``)."""
    from autodistill.core import EmbeddingOntologyImage  # autodistill: seconds to import
    from autodistill.detection import CaptionOntology

    if isinstance(ontology, ExampleOntology):
        return ontology
    if isinstance(ontology, EmbeddingOntologyImage):
        return ExampleOntology(dict(ontology.embeddingMap))
    if isinstance(ontology, dict):
        if not ontology:
            raise ArgumentError("ontology", "expected at least one prompt, but got none")
        ontology = CaptionOntology(ontology)
    if not (
        callable(getattr(ontology, "prompts", None))
        and callable(getattr(ontology, "classes", None))
    ):
        raise ArgumentTypeError(
            "ontology",
            "expected a CaptionOntology, a {prompt: class} dict or an ExampleOntology, "
            f"but got {type(ontology).__name__}",
        )
    prompts, classes = list(ontology.prompts()), list(ontology.classes())
    if not prompts:
        raise ArgumentError("ontology", "expected at least one prompt, but got none")
    check_size("prompts", prompts, classes)
    for prompt, name in zip(prompts, classes, strict=True):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ArgumentError(
                "ontology", f"expected each prompt to be non-empty text, but got {prompt!r}"
            )
        if not isinstance(name, str) or not name.strip():
            raise ArgumentError(
                "ontology", f"expected each class to be non-empty text, but got {name!r}"
            )
    return ontology


def check_size(kind: str, prompts: Sequence[Any], classes: Sequence[Any]) -> None:
    """Refuse more than :data:`MAX_PROMPTS` prompts or classes, or a prompt or class name of
    more than :data:`MAX_PROMPT_CHARACTERS` characters (``kind``: what the prompts are called).

    Raises:
        ArgumentError: For ``ontology``, saying which limit and which text.
    """
    for what, texts in ((kind, prompts), ("classes", classes)):
        if len(texts) > MAX_PROMPTS:
            raise ArgumentError(
                "ontology", f"{len(texts)} {what}; at most {MAX_PROMPTS} are allowed"
            )
        for text in texts:
            if isinstance(text, str) and len(text) > MAX_PROMPT_CHARACTERS:
                one = "class name" if what == "classes" else what.removesuffix("s")
                raise ArgumentError(
                    "ontology",
                    f"{one} {_short(text)} has {len(text)} characters; at most "
                    f"{MAX_PROMPT_CHARACTERS} are allowed (the model reads about 77 tokens)",
                )


def _short(text: str) -> str:
    """``text`` for a message: its first 40 characters."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def ontology_identity(ontology: Any) -> Any:
    """What defines an ontology, as JSON data: its (prompt, class) pairs, or for an
    :class:`ExampleOntology` its classes with their examples (file names, or the kind of
    in-memory object) and captions. ``None`` stays ``None``."""
    if ontology is None:
        return None
    if isinstance(ontology, ExampleOntology):
        return {
            "examples": {
                name: [os.fspath(x) if isinstance(x, str | os.PathLike) else type(x).__name__
                       for x in (items if not isinstance(items, np.ndarray) else [items])]
                for name, items in ontology.examples.items()
            },
            "captions": {
                k: v if isinstance(v, str) else list(v) for k, v in ontology.captions.items()
            },
        }  # fmt: skip
    return [
        [prompt, name] for prompt, name in zip(ontology.prompts(), ontology.classes(), strict=True)
    ]

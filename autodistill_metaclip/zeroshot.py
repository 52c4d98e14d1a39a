"""Classification heads: an ontology's prompts (or example images), embedded once, scored the
same CLIP way.

Score = softmax over the ontology's entries of ``logit_scale * cosine(image, entry)``; entries
that share a class have their probabilities summed. An entry is

- a caption prompt: its text embedding, or with ``prompt_templates`` the mean of its normalised
  embeddings in every template (re-normalised), the ensemble of CLIP's ImageNet evaluation;
- a class of an :class:`ExampleOntology`: the re-normalised mean of its normalised example image
  embeddings, averaged with its caption embedding when it has captions.

``class_id`` indexes ``ontology.classes()`` (a class listed twice is reported at its first place).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import open_clip
from autodistill.core import EmbeddingOntologyImage
from autodistill.detection import CaptionOntology

from autodistill_metaclip.errors import ImageLoadError

TEMPLATE_PRESETS: dict[str, tuple[str, ...]] = {
    "openai": tuple(t("{}") for t in open_clip.OPENAI_IMAGENET_TEMPLATES),
    "simple": tuple(t("{}") for t in open_clip.SIMPLE_IMAGENET_TEMPLATES),
}
"""``"openai"``: the 80 templates of CLIP's (and MetaCLIP's) ImageNet evaluation."""

Embed: TypeAlias = Callable[[list[Any]], np.ndarray]


@dataclass(frozen=True)
class ExampleOntology:
    """Classes defined by example images, optionally with captions too.

    Args:
        examples: ``{class: [image, ...]}``; images are anything ``predict`` accepts, or a
            ``(D,)``/``(k, D)`` array of embeddings computed beforehand.
        captions: Optional ``{class: caption or [captions]}``, mixed into the class.

    Example:
        >>> ontology = ExampleOntology({"cat": ["cat1.jpg", "cat2.jpg"], "dog": ["dog.jpg"]})
    """

    examples: Mapping[str, Sequence[Any] | np.ndarray]
    captions: Mapping[str, str | Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.examples:
            raise ValueError("ontology: expected at least one class of examples, but got none")
        for name, items in self.examples.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"ontology: expected class names as text, but got {name!r}")
            if len(items) == 0:
                raise ValueError(f"ontology: class {name!r} has no examples")
        unknown = set(self.captions) - set(self.examples)
        if unknown:
            raise ValueError(f"ontology: captions for classes without examples: {sorted(unknown)}")

    def classes(self) -> list[str]:
        """Class names, in order."""
        return list(self.examples)

    def prompts(self) -> list[str]:
        """The class names (autodistill's ontology interface)."""
        return self.classes()


Ontology: TypeAlias = CaptionOntology | ExampleOntology


@dataclass(frozen=True)
class ZeroShotHead:
    """Cached embeddings of one ontology's entries.

    Attributes:
        classes: ``ontology.classes()``, in order.
        prompt_class: For each entry, the index of its class in ``classes``.
        prompt_embeddings: ``(P, D)`` L2-normalised entry embeddings.
        logit_scale: The model's learned temperature, ``exp(logit_scale)``.
    """

    classes: list[str]
    prompt_class: np.ndarray
    prompt_embeddings: np.ndarray
    logit_scale: float

    def probabilities(self, image_embeddings: np.ndarray) -> np.ndarray:
        """``(N, D)`` image embeddings -> ``(N, len(classes))`` class probabilities."""
        logits = self.logit_scale * (image_embeddings.astype(np.float64) @ self.prompt_embeddings.T)
        logits -= logits.max(axis=1, keepdims=True)
        prompt_probs = np.exp(logits)
        prompt_probs /= prompt_probs.sum(axis=1, keepdims=True)
        class_probs = np.zeros((len(prompt_probs), len(self.classes)))
        np.add.at(class_probs.T, self.prompt_class, prompt_probs.T)  # sum prompts into classes
        return class_probs.astype(np.float32)

    def rank(self, image_embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every class once, most probable first: ``(N, C)`` class ids and their probabilities."""
        class_ids = np.unique(self.prompt_class)
        probabilities = self.probabilities(image_embeddings)[:, class_ids]
        order = np.argsort(-probabilities, axis=1, kind="stable")
        return class_ids[order], np.take_along_axis(probabilities, order, axis=1)


def resolve_templates(templates: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """A preset name, one template or a list of them, each with one ``{}`` for the prompt."""
    if templates is None:
        return None
    if isinstance(templates, str):
        if templates in TEMPLATE_PRESETS:
            return TEMPLATE_PRESETS[templates]
        if "{}" not in templates:
            raise ValueError(
                f"prompt_templates: expected a preset ({', '.join(TEMPLATE_PRESETS)}) or a "
                f"format string with {{}}, but got {templates!r}"
            )
        templates = [templates]
    resolved = tuple(templates)
    bad = [t for t in resolved if not isinstance(t, str) or t.count("{}") != 1]
    if not resolved or bad:
        raise ValueError(
            "prompt_templates: expected format strings with exactly one {} each, "
            f"but got {bad or 'none'}"
        )
    return resolved


def as_ontology(ontology: Any) -> Ontology:
    """Accept a ``CaptionOntology`` (or any object with string ``prompts()`` and ``classes()``),
    a plain ``{prompt: class}`` dict, an :class:`ExampleOntology`, or autodistill's
    ``EmbeddingOntologyImage`` (``{class: [image paths]}``)."""
    if isinstance(ontology, ExampleOntology):
        return ontology
    if isinstance(ontology, EmbeddingOntologyImage):
        return ExampleOntology(dict(ontology.embeddingMap))
    if isinstance(ontology, dict):
        if not ontology:
            raise ValueError("ontology: expected at least one prompt, but got none")
        ontology = CaptionOntology(ontology)
    if not (
        callable(getattr(ontology, "prompts", None))
        and callable(getattr(ontology, "classes", None))
    ):
        raise TypeError(
            "ontology: expected a CaptionOntology, a {prompt: class} dict or an ExampleOntology, "
            f"but got {type(ontology).__name__}"
        )
    prompts, classes = list(ontology.prompts()), list(ontology.classes())
    if not prompts:
        raise ValueError("ontology: expected at least one prompt, but got none")
    for prompt, name in zip(prompts, classes, strict=True):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(
                f"ontology: expected each prompt to be non-empty text, but got {prompt!r}"
            )
        if not isinstance(name, str) or not name.strip():
            raise ValueError(
                f"ontology: expected each class to be non-empty text, but got {name!r}"
            )
    return ontology


def build_head(
    ontology: Ontology,
    *,
    embed_texts: Embed,
    embed_images: Embed,
    logit_scale: float,
    templates: tuple[str, ...] | None = None,
) -> ZeroShotHead:
    """Embed every entry of ``ontology`` once."""
    classes = list(ontology.classes())
    if isinstance(ontology, ExampleOntology):
        entries = np.stack(
            [
                _class_prototype(ontology, name, embed_texts, embed_images, templates)
                for name in classes
            ]
        )
    else:
        entries = embed_prompts(list(ontology.prompts()), embed_texts, templates)
    first = {name: classes.index(name) for name in classes}
    return ZeroShotHead(
        classes=classes,
        prompt_class=np.array([first[name] for name in classes], dtype=np.int64),
        prompt_embeddings=entries.astype(np.float64),
        logit_scale=logit_scale,
    )


def embed_prompts(
    prompts: list[str], embed_texts: Embed, templates: tuple[str, ...] | None
) -> np.ndarray:
    """``(P, D)`` prompt embeddings; with templates, each one's normalised ensemble mean."""
    if not templates:
        return embed_texts(prompts)
    texts = [template.replace("{}", prompt) for prompt in prompts for template in templates]
    per_template = embed_texts(texts).reshape(len(prompts), len(templates), -1)
    return _normalise(per_template.mean(axis=1))


def _class_prototype(
    ontology: ExampleOntology,
    name: str,
    embed_texts: Embed,
    embed_images: Embed,
    templates: tuple[str, ...] | None,
) -> np.ndarray:
    items = ontology.examples[name]
    if isinstance(items, np.ndarray):
        vectors = np.atleast_2d(items).astype(np.float64)
    else:
        try:
            vectors = embed_images(list(items))
        except ImageLoadError as e:
            raise ImageLoadError(f"ontology: an example of {name!r}: {e}") from e
    prototype = _normalise(_normalise(vectors).mean(axis=0))
    captions = ontology.captions.get(name)
    if captions:
        listed = [captions] if isinstance(captions, str) else list(captions)
        text = _normalise(embed_prompts(listed, embed_texts, templates).mean(axis=0))
        prototype = _normalise(prototype + text)
    return prototype


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


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


def check_confidence(confidence: Any) -> float:
    """A threshold must be a number in [0, 1]."""
    if isinstance(confidence, bool) or not isinstance(confidence, int | float | np.number):
        raise TypeError(
            f"confidence: expected a number in [0, 1], but got {type(confidence).__name__}"
        )
    value = float(confidence)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"confidence: expected a number in [0, 1], but got {confidence!r}")
    return value

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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from autodistill_metaclip.engine.ontology import ExampleOntology, Ontology
from autodistill_metaclip.errors import ImageLoadError

Embed: TypeAlias = Callable[[list[Any]], np.ndarray]
INDISTINCT = 0.98
"""Cosine above which two classes' entries (prompts, or example prototypes) are reported as
ones the model can hardly tell apart."""


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


def head_problems(head: ZeroShotHead) -> list[str]:
    """What is probably wrong with an ontology for this model, in words: a single class (it
    scores 1.0 for every image), or classes whose entries the model can hardly tell apart
    (cosine above :data:`INDISTINCT`; their probabilities split evenly whatever the image)."""
    if len(set(head.classes)) == 1:
        return [
            f"ontology: one class ({head.classes[0]!r}) scores 1.0 for every image, since the "
            "softmax runs over the ontology's classes; add a second prompt such as "
            "'a photo of something else' -> 'other'"
        ]
    entries = head.prompt_embeddings
    cosines = entries @ entries.T
    pairs = []
    for i, j in zip(*np.nonzero(np.triu(cosines > INDISTINCT, k=1)), strict=True):
        a, b = head.classes[head.prompt_class[i]], head.classes[head.prompt_class[j]]
        if a != b:
            pairs.append((float(cosines[i, j]), a, b))
    if not pairs:
        return []
    shown = "; ".join(f"{a!r} and {b!r} ({c:.3f})" for c, a, b in sorted(pairs, reverse=True)[:3])
    more = f" and {len(pairs) - 3} more pairs" if len(pairs) > 3 else ""
    return [
        f"ontology: this model can hardly tell these classes apart, their prompts embed almost "
        f"alike (cosine above {INDISTINCT}): {shown}{more}. Their probabilities will split "
        "evenly whatever the image: rephrase the prompts, add prompt templates, or merge them"
    ]

"""Zero-shot classification: an ontology's prompts, embedded once, scored CLIP's way.

Score = softmax over the prompts of ``logit_scale * cosine(image, prompt)``; the probabilities
of prompts that share a class are summed into it. ``class_id`` indexes ``ontology.classes()``
(a class listed twice is reported at its first position).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv
from autodistill.detection import CaptionOntology


@dataclass(frozen=True)
class ZeroShotHead:
    """Cached prompt embeddings of one ontology.

    Attributes:
        classes: ``ontology.classes()``, in order.
        prompt_class: For each prompt, the index of its class in ``classes``.
        prompt_embeddings: ``(P, D)`` L2-normalised prompt embeddings.
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
        one_hot = np.zeros((len(self.prompt_class), len(self.classes)))
        one_hot[np.arange(len(self.prompt_class)), self.prompt_class] = 1.0
        return (prompt_probs @ one_hot).astype(np.float32)

    def classify(self, image_embeddings: np.ndarray, confidence: float) -> list[sv.Classifications]:
        """One ``sv.Classifications`` per image: classes at or above ``confidence``, best first."""
        class_ids = np.unique(self.prompt_class)
        results = []
        for row in self.probabilities(image_embeddings)[:, class_ids]:
            order = np.argsort(-row, kind="stable")
            keep = order[row[order] >= confidence]
            results.append(
                sv.Classifications(
                    class_id=class_ids[keep], confidence=row[keep].astype(np.float32)
                )
            )
        return results


def as_ontology(ontology: Any) -> CaptionOntology:
    """Accept a ``CaptionOntology`` (or any object with string ``prompts()`` and ``classes()``)
    or a plain ``{prompt: class}`` dict."""
    if isinstance(ontology, dict):
        if not ontology:
            raise ValueError("ontology: expected at least one prompt, but got none")
        ontology = CaptionOntology(ontology)
    if not (
        callable(getattr(ontology, "prompts", None))
        and callable(getattr(ontology, "classes", None))
    ):
        raise TypeError(
            "ontology: expected a CaptionOntology or a {prompt: class} dict, "
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
    ontology: CaptionOntology,
    encode_texts: Callable[[Sequence[str]], np.ndarray],
    logit_scale: float,
) -> ZeroShotHead:
    """Embed every prompt of ``ontology`` once."""
    classes = list(ontology.classes())
    first = {name: classes.index(name) for name in classes}
    return ZeroShotHead(
        classes=classes,
        prompt_class=np.array([first[name] for name in classes], dtype=np.int64),
        prompt_embeddings=encode_texts(list(ontology.prompts())).astype(np.float64),
        logit_scale=logit_scale,
    )


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

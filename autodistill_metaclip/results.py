"""What the streaming API yields: one result or one error per input, in input order.

These types (and the :class:`Classifier` protocol) are all that the layers above the model
(``label()``, the index, the command line, Ray) need to know about it.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import supervision as sv


@dataclass(frozen=True)
class Embedding:
    """One input's embedding, or why it could not be read.

    Attributes:
        index: The input's position in the stream.
        source: The input as given.
        vector: ``(D,)`` float32, L2-normalised; ``None`` if the input failed.
        error: Why it failed (``ImageLoadError``, or ``TypeError`` for an object that is no
            image), else ``None``.
        data: The encoded bytes that were decoded, when the stream was asked to keep them.
    """

    index: int
    source: Any
    vector: np.ndarray | None = None
    error: Exception | None = None
    data: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Prediction:
    """One input's class probabilities, or why it could not be read.

    Attributes:
        index: The input's position in the stream.
        source: The input as given.
        classes: The ontology's classes at the time of the call; ``class_ids`` index them.
        class_ids: Every class, most probable first (a class listed twice appears once).
        probabilities: The probability of each of ``class_ids``; they sum to 1.
        threshold: The ``confidence`` the stream was called with.
        embedding: The image embedding the scores come from.
        error: Why the input failed (then the arrays are empty), else ``None``.
        data: The encoded bytes that were decoded, when the stream was asked to keep them.
    """

    index: int
    source: Any
    classes: Sequence[str]
    class_ids: np.ndarray
    probabilities: np.ndarray
    threshold: float
    embedding: np.ndarray | None = None
    error: Exception | None = None
    data: bytes | None = field(default=None, repr=False)

    @property
    def classifications(self) -> sv.Classifications:
        """The classes at or above ``threshold``, most probable first (``predict``'s result)."""
        keep = self.probabilities >= self.threshold
        return sv.Classifications(
            class_id=self.class_ids[keep], confidence=self.probabilities[keep]
        )

    @property
    def best(self) -> tuple[str, float]:
        """The most probable class and its probability, whatever the threshold."""
        if self.error is not None:
            raise ValueError(f"input[{self.index}] has no prediction: {self.error}")
        return self.classes[int(self.class_ids[0])], float(self.probabilities[0])

    def top(self, n: int = 3) -> list[tuple[str, float]]:
        """The ``n`` most probable classes with their probabilities (none if it failed)."""
        ids, probabilities = self.class_ids[:n], self.probabilities[:n]
        return [(self.classes[int(i)], float(p)) for i, p in zip(ids, probabilities, strict=True)]

    @property
    def status(self) -> str:
        """``"labeled"`` (best class at or above ``threshold``), ``"unlabeled"`` or ``"failed"``."""
        if self.error is not None:
            return "failed"
        return "labeled" if float(self.probabilities[0]) >= self.threshold else "unlabeled"


class Classifier(Protocol):
    """What ``label()`` needs of a model (:class:`~autodistill_metaclip.MetaCLIP` is one)."""

    @property
    def classes(self) -> list[str]: ...

    @property
    def spec(self) -> Any: ...  # a ModelSpec: checkpoint, weights, templates and ontology

    def iter_predictions(
        self, inputs: Iterable[Any], confidence: float = 0.5, *, keep_data: bool = False
    ) -> Generator[Prediction, None, None]: ...

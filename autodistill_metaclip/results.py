"""What the streaming API yields: one result or one error per input, in input order.

These types (and the :class:`Classifier` protocol) are all that the layers above the model
(``label()``, the index, the command line, Ray) need to know about it.
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import supervision as sv


class Status(str, enum.Enum):
    """What became of one input: the manifest's ``status`` column and Ray's shards."""

    LABELED = "labeled"
    """The best class reached the confidence threshold."""
    UNLABELED = "unlabeled"
    """Read and scored, but no class reached the threshold."""
    FAILED = "failed"
    """Could not be read; the row's ``error`` says why."""
    EMBEDDED = "embedded"
    """Read and embedded (embedding runs, which classify nothing)."""

    def __str__(self) -> str:
        return self.value


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

    def to_dict(self, top: int = 3) -> dict[str, Any]:
        """As JSON data: ``image``, ``status``, the ``top`` best classes (each with its
        ``confidence`` and whether it ``passed`` the threshold), the ones that passed
        (``predictions``) and the ``threshold``; or the ``error``."""
        if self.error is not None:
            return {
                "image": str(self.source),
                "status": str(Status.FAILED),
                "error": str(self.error),
            }
        passed = len(self.classifications)
        ranked = [
            {"class": name, "confidence": probability, "passed": rank < passed}
            for rank, (name, probability) in enumerate(self.top(top))
        ]
        return {
            "image": str(self.source),
            "status": str(self.status),
            "predictions": [r for r in ranked if r["passed"]],
            "top": ranked,
            "threshold": self.threshold,
        }

    @property
    def status(self) -> Status:
        """``LABELED`` (best class at or above ``threshold``), ``UNLABELED`` or ``FAILED``."""
        if self.error is not None:
            return Status.FAILED
        labeled = float(self.probabilities[0]) >= self.threshold
        return Status.LABELED if labeled else Status.UNLABELED


class Classifier(Protocol):
    """What ``label()`` needs of a model (:class:`~autodistill_metaclip.MetaCLIP` is one):
    its classes and streams, its probabilities of embeddings kept earlier, and what tells its
    embeddings apart from another model's (``identity``, ``precision``, ``dim``, ``spec``, and
    the embeddings of a probe text and image)."""

    @property
    def classes(self) -> list[str]: ...

    @property
    def spec(self) -> Any: ...  # a ModelSpec: checkpoint, weights, templates and ontology

    @property
    def identity(self) -> dict[str, str | None]: ...

    @property
    def precision(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def iter_predictions(
        self, inputs: Iterable[Any], confidence: float = 0.5, *, keep_data: bool = False
    ) -> Generator[Prediction, None, None]: ...

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray: ...

    def embed_text(self, input: Any) -> np.ndarray: ...

    def embed_image(self, input: Any) -> np.ndarray: ...


@dataclass(frozen=True)
class Gathered:
    """A whole embedding stream, split into what was read and what failed.

    Attributes:
        indices: The stream positions of the readable inputs, in order.
        vectors: Their embeddings, ``(len(indices), D)`` float32.
        failures: ``{stream position: error}`` of the inputs that could not be read.
    """

    indices: list[int]
    vectors: np.ndarray
    failures: dict[int, Exception]


def gather(embeddings: Iterable[Embedding], dim: int) -> Gathered:
    """Collect an embedding stream (e.g. ``model.iter_embeddings(...)``) into arrays."""
    indices: list[int] = []
    vectors: list[np.ndarray] = []
    failures: dict[int, Exception] = {}
    for item in embeddings:
        if item.vector is None:
            failures[item.index] = item.error or ValueError("no embedding")
        else:
            indices.append(item.index)
            vectors.append(item.vector)
    return Gathered(indices, np.array(vectors, np.float32).reshape(len(vectors), dim), failures)

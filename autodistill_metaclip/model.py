"""``MetaCLIP``: the Autodistill base model, a thin adapter over the modules below it.

Everything above the model (``label()``, the index, the command line, Ray) uses only its public
streaming API, :meth:`MetaCLIP.iter_predictions` and :meth:`MetaCLIP.iter_embeddings`, and its
:class:`ModelSpec`, the one description of how to build it.
"""

from __future__ import annotations

import enum
import os
import threading
import warnings
from collections.abc import Generator, Iterable, Sequence
from contextlib import closing
from dataclasses import replace
from typing import Any, overload

import numpy as np
import supervision as sv
import torch
from autodistill.classification import ClassificationBaseModel
from autodistill.core.embedding_model import EmbeddingModel
from PIL import Image

from autodistill_metaclip.engine.batching import encode_images
from autodistill_metaclip.engine.checkpoints import DEFAULT_CHECKPOINT, resolve
from autodistill_metaclip.engine.encoder import (
    DEFAULT_DECODE_MEMORY,
    Encoder,
    select_device,
    select_precision,
)
from autodistill_metaclip.engine.heads import ZeroShotHead, build_head, head_problems
from autodistill_metaclip.engine.ontology import Ontology, as_ontology
from autodistill_metaclip.engine.spec import ModelSpec, resolve_templates
from autodistill_metaclip.errors import ArgumentError, ArgumentTypeError, MetaCLIPWarning

__all__ = ["KEEP", "MetaCLIP", "ModelSpec"]
from autodistill_metaclip.inputs.images import ImageInput
from autodistill_metaclip.inputs.policy import DEFAULT_POLICY, InputPolicy, using
from autodistill_metaclip.labeling import label_folder
from autodistill_metaclip.labeling.options import check_confidence
from autodistill_metaclip.results import Embedding, Prediction


class _Keep(enum.Enum):
    KEEP = "keep"


KEEP = _Keep.KEEP
"""``set_ontology(..., prompt_templates=KEEP)``: keep the model's current templates."""


class MetaCLIP(ClassificationBaseModel, EmbeddingModel):
    """Zero-shot classification and image/text embeddings with a MetaCLIP checkpoint.

    Args:
        ontology: ``CaptionOntology`` (or ``{prompt: class}`` dict) mapping prompts to classes,
            an :class:`~autodistill_metaclip.ExampleOntology` of example images per class, or
            ``None`` for an embedding-only model.
        checkpoint: A name from :data:`~autodistill_metaclip.CHECKPOINTS` (``"demo"`` needs no
            download), an open_clip architecture name, or an open_clip model-config JSON path.
        weights: ``None`` for the checkpoint's pretrained tag, another open_clip tag, or a local
            ``.safetensors``/``.pt``/``.bin`` file (required unless ``checkpoint`` is a table name).
        device: ``None`` picks cuda, then mps, then cpu.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``; ``None`` is fp16 autocast on CUDA and
            fp32 elsewhere.
        batch_size: Images per forward pass for lists, streams and ``label()``.
        cache_dir: Where downloaded weights are kept (default: the Hugging Face cache).
        prompt_templates: ``None`` to embed prompts as written; format strings with ``{}``
            (``"a photo of a {}."``), or a preset (``"openai"``: the 80 ImageNet templates of
            CLIP's evaluation): each prompt becomes the mean of its template embeddings.
        draft_decoding: Decode large JPEGs at reduced scale (Pillow's draft mode, still >= 2x
            the model's input): faster on big photos, but no longer exactly open_clip's
            preprocessing. Off by default.
        decode_memory: MiB that images being decoded at once may take (their files, pixels and
            RGB conversions; one image alone may exceed it): bounds decoding memory whatever
            the images. Not counted: the encoded files ``label()`` keeps for the images in
            flight (up to three batches) until it has stored them.
        inputs: What string inputs may reach (an
            :class:`~autodistill_metaclip.inputs.policy.InputPolicy`): ``None`` allows local
            paths, http(s) URLs and object stores (s3, gs, az); ``InputPolicy().allowing("ftp")``
            adds a scheme; ``InputPolicy.public_urls()`` is for services taking URLs from users
            (http(s) to public addresses only). See ``docs/inputs.md``.

    Examples:
        >>> from autodistill.detection import CaptionOntology
        >>> model = MetaCLIP(CaptionOntology({"a photo of a red circle": "red circle",
        ...                                   "a photo of a blue square": "blue square"}),
        ...                  checkpoint="demo")
        >>> result = model.predict("shape.png", confidence=0.5)  # doctest: +SKIP
        >>> model.ontology.classes()[result.class_id[0]]  # doctest: +SKIP
        'red circle'
    """

    def __init__(
        self,
        ontology: Ontology | dict[str, str] | None = None,
        checkpoint: str | os.PathLike[str] = DEFAULT_CHECKPOINT,
        *,
        weights: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        precision: str | None = None,
        batch_size: int = 32,
        cache_dir: str | os.PathLike[str] | None = None,
        prompt_templates: str | Sequence[str] | None = None,
        draft_decoding: bool = False,
        decode_memory: int = DEFAULT_DECODE_MEMORY,
        inputs: InputPolicy | None = None,
    ) -> None:
        spec = ModelSpec(
            checkpoint=os.fspath(checkpoint),
            weights=None if weights is None else os.fspath(weights),
            precision=precision,
            batch_size=batch_size,
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
            prompt_templates=resolve_templates(prompt_templates),
            draft_decoding=draft_decoding,
            decode_memory=decode_memory,
            inputs=DEFAULT_POLICY if inputs is None else inputs,
        )
        chosen = select_device(device)
        resolved = resolve(spec.checkpoint, spec.weights)
        if resolved.name == "demo":
            _note_the_demo()
        self._encoder = Encoder(
            resolved,
            device=chosen,
            precision=select_precision(spec.precision, chosen),
            cache_dir=spec.cache_dir,
            draft_decoding=spec.draft_decoding,
            decode_memory=spec.decode_memory,
            inputs=spec.inputs,
        )
        self._spec = spec
        self.ontology: Ontology | None = None
        self._head: ZeroShotHead | None = None
        self.set_ontology(ontology)

    # Identity semantics: the autodistill dataclass bases would compare (and refuse to hash)
    # models by their ontology alone.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return (
            f"MetaCLIP(checkpoint={self.identity['checkpoint']!r}, device='{self.device}', "
            f"precision={self.precision!r}, classes={len(self.classes) or None})"
        )

    @property
    def spec(self) -> ModelSpec:
        """How to build this same model elsewhere (a Ray actor): its current state."""
        return self._spec

    @property
    def batch_size(self) -> int:
        """Images per forward pass; may be changed at any time."""
        return self._spec.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._spec = replace(self._spec, batch_size=value)

    @property
    def prompt_templates(self) -> tuple[str, ...] | None:
        """The templates of the current ontology's prompts (change with :meth:`set_ontology`)."""
        return self._spec.prompt_templates

    @property
    def classes(self) -> list[str]:
        """``ontology.classes()``, which ``class_id`` indexes; empty without an ontology."""
        return [] if self._head is None else list(self._head.classes)

    @property
    def dim(self) -> int:
        """The embedding dimension."""
        return self._encoder.dim

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return self._encoder.device

    @property
    def precision(self) -> str:
        """``fp32``, ``fp16`` or ``bf16``, as chosen at construction."""
        return self._encoder.precision

    @property
    def identity(self) -> dict[str, str | None]:
        """Which weights these are: checkpoint name, open_clip architecture, tag or file name."""
        resolved = self._encoder.resolved
        weights_file = resolved.weights_file
        return {
            "checkpoint": resolved.name,
            "architecture": resolved.architecture,
            "weights": resolved.tag or (weights_file.name if weights_file else None),
        }

    def set_ontology(
        self,
        ontology: Ontology | dict[str, str] | None,
        *,
        prompt_templates: str | Sequence[str] | _Keep | None = KEEP,
    ) -> None:
        """Use a new ontology (and, if given, new prompt templates) without reloading weights.

        Its prompts (or example images) are embedded once, here. Predictions already being
        streamed keep the classes they started with (each :class:`Prediction` names them).
        """
        templates = self.prompt_templates
        if prompt_templates is not KEEP:
            templates = resolve_templates(prompt_templates)
        checked: Ontology | None = None
        head: ZeroShotHead | None = None
        if ontology is not None:
            checked = as_ontology(ontology)
            head = build_head(
                checked,
                embed_texts=self._encoder.encode_texts,
                embed_images=self.embed_image,
                logit_scale=self._encoder.logit_scale,
                templates=templates,
            )
            for problem in head_problems(head):
                warnings.warn(problem, MetaCLIPWarning, stacklevel=2)
        # One assignment of the spec (read again here: batch_size may have changed meanwhile).
        self._spec = replace(self._spec, ontology=checked, prompt_templates=templates)
        self.ontology, self._head = checked, head

    def iter_embeddings(
        self, inputs: Iterable[Any], *, keep_data: bool = False
    ) -> Generator[Embedding, None, None]:
        """Embed images lazily, in batches, yielding one :class:`Embedding` per input, in order.

        Never raises for a bad input: its ``error`` says why (an unreadable image, or an object
        that is no image at all). Inputs are read from any iterable (a generator too) at most two
        batches ahead, so memory does not grow with their number. Close the stream (or use
        ``contextlib.closing``) to stop early and release its threads at once.

        ``keep_data=True`` puts the encoded bytes each image was decoded from in its ``data``
        (for a caller that also stores the file: the bytes classified are the bytes kept).
        """
        if isinstance(inputs, str | bytes | os.PathLike | np.ndarray | Image.Image):
            raise ArgumentTypeError(
                "inputs",
                "expected an iterable of images (a list, tuple or generator), but got "
                f"a single {type(inputs).__name__}; wrap it in a list, or use predict/embed_image",
            )
        return encode_images(self._encoder, inputs, batch_size=self.batch_size, keep_data=keep_data)

    def iter_predictions(
        self, inputs: Iterable[Any], confidence: float = 0.5, *, keep_data: bool = False
    ) -> Generator[Prediction, None, None]:
        """Classify images lazily, yielding one :class:`Prediction` per input, in order.

        Like :meth:`iter_embeddings` (``keep_data`` too), a bad image gives a prediction with
        ``error`` set.
        """
        threshold = check_confidence(confidence)
        head = self._require_head("iter_predictions()")
        embeddings = self.iter_embeddings(inputs, keep_data=keep_data)
        return self._predictions(head, embeddings, threshold)

    @staticmethod
    def _predictions(
        head: ZeroShotHead, embeddings: Generator[Embedding, None, None], threshold: float
    ) -> Generator[Prediction, None, None]:
        empty = np.zeros(0, np.int64)
        with closing(embeddings):
            yield from (_predicted(head, item, threshold, empty) for item in embeddings)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Class probabilities of image embeddings (``(N, D)``, e.g. an index's or
        :meth:`embed_image`'s): ``(N, len(classes))`` in :attr:`classes` order. The same numbers
        as :meth:`predict`, without reading the images again."""
        head = self._require_head("probabilities()")
        vectors = np.asarray(embeddings, np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ArgumentError(
                "embeddings", f"expected shape (N, {self.dim}), but got {vectors.shape}"
            )
        return head.probabilities(vectors)

    @overload
    def predict(self, input: ImageInput, confidence: float = 0.5) -> sv.Classifications: ...
    @overload
    def predict(
        self, input: list[ImageInput] | tuple[ImageInput, ...], confidence: float = 0.5
    ) -> list[sv.Classifications]: ...

    def predict(self, input: Any, confidence: float = 0.5) -> Any:
        """Classify one image, or a list of images (a list of results).

        ``confidence`` keeps classes whose probability is at or above it, most probable first.
        Strict: an unreadable image raises :class:`ImageLoadError` (for a list, naming its
        position); use :meth:`iter_predictions` to go on past bad images.
        """
        predictions = _strict(self.iter_predictions(_as_list(input), confidence), input)
        results = [p.classifications for p in predictions]
        return results if _is_batch(input) else results[0]

    def embed_image(self, input: Any) -> np.ndarray:
        """Normalised float32 image embedding(s): ``(D,)`` for one input, ``(N, D)`` for a list.

        Strict, like :meth:`predict`; :meth:`iter_embeddings` is the lenient stream.
        """
        vectors = [e.vector for e in _strict(self.iter_embeddings(_as_list(input)), input)]
        if not _is_batch(input):
            return vectors[0]
        return np.array(vectors, np.float32).reshape(len(vectors), self.dim)

    def embed_text(self, input: str | Sequence[str]) -> np.ndarray:
        """Normalised float32 text embedding(s): ``(D,)`` for one string, ``(N, D)`` for a list."""
        texts: list[Any] = _as_list(input)
        for text in texts:
            if not isinstance(text, str):
                raise ArgumentTypeError("text", f"expected a string, but got {type(text).__name__}")
        embeddings = self._encoder.encode_texts(texts)
        return embeddings if _is_batch(input) else embeddings[0]

    @staticmethod
    def compare(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
        """Cosine similarity of two embeddings, each ``(D,)`` or ``(1, D)``, numpy or torch."""
        va, vb = _as_vector(a, "a"), _as_vector(b, "b")
        if va.shape != vb.shape:
            raise ArgumentError(
                "a, b", f"expected the same dimension, but got {va.size} and {vb.size}"
            )
        norm = np.linalg.norm(va) * np.linalg.norm(vb)
        if norm == 0:
            raise ArgumentError("a, b", "expected non-zero vectors, but one is all zeros")
        return float(va @ vb / norm)

    def label(
        self,
        input_folder: str | os.PathLike[str],
        extension: str | Sequence[str] | None = ".jpg",
        output_folder: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> sv.ClassificationDataset:
        """Label a folder (or a filesystem URI) into ``output_folder/{train,valid,test}/<class>/``
        (every class in every split; ``classes.txt``; ``manifest.csv``; ``review.html``).

        ``options`` are the fields of :class:`~autodistill_metaclip.LabelOptions`
        (``confidence=0.5``, ``seed``, ``split``, ``layout``, ``near_duplicates``,
        ``recursive``, ``follow_links``, ``overwrite``, ``resume``, ``review``, ``progress``);
        see :func:`autodistill_metaclip.labeling.label_folder`.
        """
        with using(self._spec.inputs):  # the folder is listed and re-read under the policy
            return label_folder(self, input_folder, extension, output_folder, **options)

    def _require_head(self, caller: str) -> ZeroShotHead:
        if self._head is None:
            raise ArgumentError(
                "ontology",
                f"{caller} needs one, but this model has ontology=None (embedding "
                "only); pass it to MetaCLIP(...) or call set_ontology(...)",
            )
        return self._head


def _predicted(
    head: ZeroShotHead, item: Embedding, threshold: float, empty: np.ndarray
) -> Prediction:
    if item.vector is None:
        return Prediction(
            item.index, item.source, head.classes, empty, empty.astype(np.float32), threshold,
            error=item.error,
        )  # fmt: skip
    ids, probabilities = head.rank(item.vector[None])
    return Prediction(
        item.index, item.source, head.classes, ids[0], probabilities[0], threshold,
        embedding=item.vector, data=item.data,
    )  # fmt: skip


def _strict(stream: Generator[Any, None, None], given: Any) -> list[Any]:
    """Every result of a stream, or the first error raised (naming its position when ``given``
    is a list); the stream is closed either way, so no thread goes on decoding."""
    with closing(stream):
        results = []
        for result in stream:
            if result.error is not None:
                if not _is_batch(given):
                    raise result.error
                error, where = result.error, f"input[{result.index}]"
                if isinstance(error, ArgumentError):
                    message = f"{where}: {error.message}"
                    raise type(error)(error.argument, message, **error.fixes) from error
                raise type(error)(f"{where}: {error}") from error
            results.append(result)
    return results


def _as_list(value: Any) -> list[Any]:
    return list(value) if _is_batch(value) else [value]


def _is_batch(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _as_vector(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().float().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"{name}: expected a numpy array or torch tensor, but got {type(value).__name__}"
        )
    if value.ndim == 2 and value.shape[0] == 1:
        value = value[0]
    if value.ndim != 1 or value.size == 0:
        raise ValueError(f"{name}: expected shape (D,) or (1, D), but got {value.shape}")
    return value.astype(np.float64)


_DEMO_NOTED = threading.Event()


def _note_the_demo() -> None:
    """Say once per process what the bundled demo model knows."""
    if not _DEMO_NOTED.is_set():
        _DEMO_NOTED.set()
        warnings.warn(
            "checkpoint 'demo' is a tiny model trained only on synthetic coloured shapes "
            "(circles, squares, triangles in red, green, blue, yellow): it is for trying this "
            "package offline; on photos its classes, similarities and near-duplicates mean "
            "nothing. Use a MetaCLIP checkpoint (the default, b32-fullcc) for real images",
            MetaCLIPWarning,
            stacklevel=3,
        )

"""``MetaCLIP``: the Autodistill base model, a thin adapter over the modules below it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import supervision as sv
import torch
from autodistill.classification import ClassificationBaseModel
from autodistill.core.embedding_model import EmbeddingModel

from autodistill_metaclip.checkpoints import DEFAULT_CHECKPOINT, resolve
from autodistill_metaclip.encoder import Encoder, select_device, select_precision
from autodistill_metaclip.errors import ImageLoadError
from autodistill_metaclip.images import ImageInput
from autodistill_metaclip.pipeline import encode_images
from autodistill_metaclip.zeroshot import (
    Ontology,
    ZeroShotHead,
    as_ontology,
    build_head,
    check_confidence,
    resolve_templates,
)

if TYPE_CHECKING:
    from autodistill_metaclip.labeling import Split


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
        batch_size: Images per forward pass for lists and ``label()``.
        cache_dir: Where downloaded weights are kept (default: the Hugging Face cache).
        prompt_templates: ``None`` to embed prompts as written; format strings with ``{}``
            (``"a photo of a {}."``), or a preset (``"openai"``: the 80 ImageNet templates of
            CLIP's evaluation): each prompt becomes the mean of its template embeddings.

    Example:
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
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, but got {batch_size!r}")
        self.batch_size = batch_size
        self.prompt_templates = resolve_templates(prompt_templates)
        self._spec = ModelSpec(
            checkpoint=os.fspath(checkpoint),
            weights=None if weights is None else os.fspath(weights),
            precision=precision,
            batch_size=batch_size,
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
            prompt_templates=self.prompt_templates,
        )
        chosen = select_device(device)
        self.encoder = Encoder(
            resolve(checkpoint, weights),
            device=chosen,
            precision=select_precision(precision, chosen),
            cache_dir=cache_dir,
        )
        self.ontology: Ontology | None = None
        self._head: ZeroShotHead | None = None
        self.set_ontology(ontology)

    # Identity semantics: the autodistill dataclass bases would compare (and refuse to hash)
    # models by their ontology alone.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        classes = "None" if self.ontology is None else len(self.ontology.classes())
        return (
            f"MetaCLIP(checkpoint={self.encoder.resolved.name!r}, device='{self.encoder.device}', "
            f"precision={self.encoder.precision!r}, classes={classes})"
        )

    def set_ontology(self, ontology: Ontology | dict[str, str] | None) -> None:
        """Use a new ontology; its prompts (or example images) are embedded once, here."""
        if ontology is None:
            self.ontology, self._head = None, None
            return
        checked = as_ontology(ontology)
        self._head = build_head(
            checked,
            embed_texts=self.encoder.encode_texts,
            embed_images=self.embed_image,
            logit_scale=self.encoder.logit_scale,
            templates=self.prompt_templates,
        )
        self.ontology = checked

    @overload
    def predict(self, input: ImageInput, confidence: float = 0.5) -> sv.Classifications: ...
    @overload
    def predict(
        self, input: list[ImageInput] | tuple[ImageInput, ...], confidence: float = 0.5
    ) -> list[sv.Classifications]: ...

    def predict(self, input: Any, confidence: float = 0.5) -> Any:
        """Classify one image, or a list of images (a list of results).

        ``confidence`` keeps classes whose probability is at or above it, most probable first.
        """
        threshold = check_confidence(confidence)
        if self._head is None:
            raise ValueError(
                "ontology: predict() needs one, but this model has ontology=None (embedding "
                "only); pass it to MetaCLIP(...) or call set_ontology(...)"
            )
        if not _is_batch(input):
            return self._head.classify(self.embed_image(input)[None], threshold)[0]
        return self._head.classify(self.embed_image(input), threshold)

    def embed_image(self, input: Any) -> np.ndarray:
        """Normalised float32 image embedding(s): ``(D,)`` for one input, ``(N, D)`` for a list."""
        if not _is_batch(input):
            return self.encoder.encode_pixels(self.encoder.pixels(input)[None])[0]
        embeddings = np.empty((len(input), self.encoder.dim), np.float32)
        for item in encode_images(self.encoder, input, batch_size=self.batch_size):
            if item.error is not None:
                raise ImageLoadError(f"input[{item.index}]: {item.error}") from item.error
            embeddings[item.index] = item.embedding
        return embeddings

    def embed_text(self, input: str | Sequence[str]) -> np.ndarray:
        """Normalised float32 text embedding(s): ``(D,)`` for one string, ``(N, D)`` for a list."""
        texts: list[Any] = list(input) if _is_batch(input) else [input]
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"text: expected a string, but got {type(text).__name__}")
        embeddings = self.encoder.encode_texts(texts)
        return embeddings if _is_batch(input) else embeddings[0]

    @staticmethod
    def compare(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
        """Cosine similarity of two embeddings, each ``(D,)`` or ``(1, D)``, numpy or torch."""
        va, vb = _as_vector(a, "a"), _as_vector(b, "b")
        if va.shape != vb.shape:
            raise ValueError(f"a, b: expected the same dimension, but got {va.size} and {vb.size}")
        norm = np.linalg.norm(va) * np.linalg.norm(vb)
        if norm == 0:
            raise ValueError("a, b: expected non-zero vectors, but one is all zeros")
        return float(va @ vb / norm)

    def label(
        self,
        input_folder: str | os.PathLike[str],
        extension: str | Sequence[str] | None = ".jpg",
        output_folder: str | os.PathLike[str] | None = None,
        *,
        confidence: float = 0.5,
        seed: int = 0,
        split: Split = (0.7, 0.15, 0.15),
        recursive: bool = False,
        overwrite: bool = False,
        resume: bool = False,
        progress: bool = True,
    ) -> sv.ClassificationDataset:
        """Label a folder into ``output_folder/{train,valid,test}/<class>/<image>``.

        See :func:`autodistill_metaclip.labeling.label_folder` for every option.
        """
        from autodistill_metaclip.labeling import label_folder

        return label_folder(
            self,
            input_folder,
            extension,
            output_folder,
            confidence=confidence,
            seed=seed,
            split=split,
            recursive=recursive,
            overwrite=overwrite,
            resume=resume,
            progress=progress,
        )

    @property
    def spec(self) -> ModelSpec:
        """How to build this same model in another process (e.g. a Ray actor)."""
        return replace(self._spec, ontology=self.ontology)

    @property
    def head(self) -> ZeroShotHead | None:
        """The cached prompt embeddings of the current ontology, if any."""
        return self._head


@dataclass(frozen=True)
class ModelSpec:
    """The arguments of a :class:`MetaCLIP`, picklable, to build it again elsewhere.

    Paths in it (a weights file, a config JSON, ``cache_dir``) must exist where it is built.
    """

    ontology: Any = None
    checkpoint: str = DEFAULT_CHECKPOINT
    weights: str | None = None
    precision: str | None = None
    batch_size: int = 32
    cache_dir: str | None = None
    prompt_templates: tuple[str, ...] | None = None

    def build(self, device: str | torch.device | None = None) -> MetaCLIP:
        """The model; ``device=None`` picks the best device of the process that builds it."""
        return MetaCLIP(
            self.ontology,
            self.checkpoint,
            weights=self.weights,
            device=device,
            precision=self.precision,
            batch_size=self.batch_size,
            cache_dir=self.cache_dir,
            prompt_templates=self.prompt_templates,
        )


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

"""An open_clip model on one device, with its preprocessing and tokenizer.

:class:`Encoder` turns images into pixel tensors and pixel tensors or texts into L2-normalised
float32 numpy embeddings. Weights are fetched first (open_clip's own download and cache), then
loaded without running pickled code, so every failure has one clear exception.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict
from PIL import Image

from autodistill_metaclip.engine import weights
from autodistill_metaclip.engine.checkpoints import Resolved
from autodistill_metaclip.engine.prompts import BoundedTokenizer
from autodistill_metaclip.engine.spec import PRECISIONS
from autodistill_metaclip.errors import ArgumentError, CheckpointError, WeightsUnavailableError
from autodistill_metaclip.inputs.images import (
    DEFAULT_DECODE_MEMORY,
    DecodeBudget,
    ImageInput,
    read_image,
)
from autodistill_metaclip.inputs.policy import DEFAULT_POLICY, InputPolicy

_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
_MAX_ASPECT = 16.0
logger = logging.getLogger(__name__)


def select_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks cuda, then mps, then cpu; an explicit device must exist."""
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ArgumentError(
            "device", f"expected 'cpu', 'cuda', 'cuda:N' or 'mps', but got {device!r}"
        ) from e
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ArgumentError("device", f"{device!r} was asked for, but torch sees no CUDA device")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ArgumentError("device", f"{device!r} was asked for, but MPS is not available")
    return chosen


def select_precision(precision: str | None, device: torch.device) -> str:
    """``None`` means fp16 (autocast) on CUDA and fp32 elsewhere."""
    if precision is None:
        return "fp16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ArgumentError(
            "precision", f"expected one of {', '.join(PRECISIONS)}, but got {precision!r}"
        )
    return precision


def leaves_bf16_unused(precision: str | None, device: str | torch.device | None) -> bool:
    """Whether these choices run fp32 on a CPU with bf16 instructions (AVX-512 BF16 or AMX),
    where ``precision="bf16"`` is faster (``docs/speed.md``: 2x for ViT-B/32 with AVX-512 BF16)."""
    if precision is not None or select_device(device).type != "cpu":
        return False
    supported = [getattr(torch.cpu, name, None) for name in _BF16_PROBES]  # private: may go
    return any(callable(probe) and probe() for probe in supported)


_BF16_PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


@dataclass
class ImagePreprocessor:
    """Any image input -> the model's input tensor, exactly as open_clip's preprocessing.

    With ``draft_size`` set, JPEGs at least twice that size are decoded at reduced scale
    (Pillow's draft mode, both sides still >= ``draft_size``): faster on large photos, but not
    bit-exact (``MetaCLIP(draft_decoding=True)``; measured in ``benchmarks/throughput.py``).
    String inputs are read only where ``policy`` allows.
    """

    transform: Callable[[Image.Image], torch.Tensor]
    resize_mode: str
    draft_size: int | None
    budget: DecodeBudget
    policy: InputPolicy = DEFAULT_POLICY

    def __call__(self, source: ImageInput) -> torch.Tensor:
        """Load and preprocess one image into a ``(3, H, W)`` float tensor on the CPU."""
        return self.prepare(source)[0]

    def prepare(self, source: ImageInput) -> tuple[torch.Tensor, bytes | None]:
        """The pixels of one image and the encoded bytes they were decoded from; decoding
        waits for its share of the ``budget``, held until the full-size image is freed."""
        with self.budget.hold() as reserve:
            image, data = read_image(
                source, draft_size=self.draft_size, reserve=reserve, policy=self.policy
            )
            if self.resize_mode == "shortest":
                image = _limit_aspect(image)
            return self.transform(image), data


def make_preprocessor(
    architecture: str,
    tag_config: dict[str, Any],
    *,
    draft_decoding: bool = False,
    decode_memory: int = DEFAULT_DECODE_MEMORY,
    policy: InputPolicy = DEFAULT_POLICY,
) -> ImagePreprocessor:
    """The preprocessing open_clip gives ``architecture`` with a pretrained tag's settings
    (``{}`` for a local weights file); ``draft_decoding`` keeps >= 2x the input size;
    ``decode_memory`` MiB are shared by images decoding at once; string inputs are read under
    ``policy``."""
    config = merge_preprocess_dict(PreprocessCfg(), tag_config)
    size = open_clip.get_model_config(architecture)["vision_cfg"]["image_size"]
    config["size"] = (size, size) if isinstance(size, int) else tuple(size)
    settings = PreprocessCfg(**config)
    return ImagePreprocessor(
        transform=image_transform_v2(settings, is_train=False),
        resize_mode=settings.resize_mode,
        draft_size=2 * max(config["size"]) if draft_decoding else None,
        budget=DecodeBudget(decode_memory << 20),
        policy=policy,
    )


class Encoder:
    """A loaded open_clip model in ``eval()`` mode.

    Args:
        resolved: What to build (see :func:`autodistill_metaclip.engine.checkpoints.resolve`).
        device: Where the model, pixels and tokens live.
        precision: ``fp32``; or ``fp16``/``bf16``: autocast around fp32 weights on CUDA and MPS,
            low-precision weights (LayerNorm kept in fp32) on CPU, where autocast measured slower.
        cache_dir: Where open_clip downloads weights (default: the Hugging Face cache).
        draft_decoding: Decode large JPEGs at reduced scale (see :class:`ImagePreprocessor`).
        decode_memory: MiB that images decoding at once may take.
        inputs: What string inputs may reach.

    Texts are tokenised in bounded time, cut to what the context can use
    (:class:`~autodistill_metaclip.engine.prompts.BoundedTokenizer`).
    """

    def __init__(
        self,
        resolved: Resolved,
        *,
        device: torch.device,
        precision: str,
        cache_dir: str | os.PathLike[str] | None = None,
        draft_decoding: bool = False,
        decode_memory: int = DEFAULT_DECODE_MEMORY,
        inputs: InputPolicy = DEFAULT_POLICY,
    ) -> None:
        self.resolved = resolved
        self.device = device
        self.precision = precision
        cache = os.fspath(cache_dir) if cache_dir is not None else None
        weights_file, preprocess_cfg = weights.obtain(resolved, cache)
        low_precision_weights = precision != "fp32" and device.type == "cpu"
        self._input_dtype = open_clip.get_input_dtype(precision) if low_precision_weights else None
        self._autocast_dtype = (
            _AUTOCAST_DTYPES[precision]
            if precision != "fp32" and not low_precision_weights
            else None
        )
        try:
            model = open_clip.create_model(
                resolved.architecture,
                pretrained=str(weights_file),
                precision=precision if low_precision_weights else "fp32",
                device=device,
                cache_dir=cache,
                weights_only=True,
            )
        except Exception as e:
            raise CheckpointError(
                "weights",
                f"{str(weights_file)!r} does not fit architecture "
                f"{resolved.architecture!r}: {weights.first_lines(e)}",
            ) from e
        self.model = model.eval()
        self.preprocessor = make_preprocessor(
            resolved.architecture,
            preprocess_cfg,
            draft_decoding=draft_decoding,
            decode_memory=decode_memory,
            policy=inputs,
        )
        self.tokenizer = BoundedTokenizer(_tokenizer(resolved, cache))
        self.logit_scale = float(model.logit_scale.detach().exp())
        self.dim = int(open_clip.get_model_config(resolved.architecture)["embed_dim"])

    def pixels(self, source: ImageInput) -> torch.Tensor:
        """Load and preprocess one image into a ``(3, H, W)`` float tensor on the CPU."""
        return self.preprocessor(source)

    def prepare(self, source: ImageInput) -> tuple[torch.Tensor, bytes | None]:
        """:meth:`pixels`, and the encoded bytes they were decoded from."""
        return self.preprocessor.prepare(source)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Embed a ``(N, 3, H, W)`` batch; returns ``(N, D)`` float32, L2-normalised."""
        with self._autocast():
            features = self.model.encode_image(
                pixels.to(self.device, dtype=self._input_dtype, non_blocking=True)
            )
        return F.normalize(features.float(), dim=-1).cpu().numpy()

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Embed texts in batches; returns ``(N, D)`` float32, L2-normalised."""
        out = [np.zeros((0, self.dim), np.float32)]
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start : start + batch_size])).to(self.device)
            with self._autocast():
                features = self.model.encode_text(tokens)
            out.append(F.normalize(features.float(), dim=-1).cpu().numpy())
        return np.concatenate(out)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)


def _tokenizer(resolved: Resolved, cache_dir: str | None) -> Any:
    config = open_clip.get_model_config(resolved.architecture) or {}
    hf_name = config.get("text_cfg", {}).get("hf_tokenizer_name")
    try:
        return open_clip.get_tokenizer(resolved.architecture, cache_dir=cache_dir)
    except ImportError as e:
        raise ImportError(
            f"checkpoint {resolved.name!r} needs the {hf_name} tokenizer from transformers: "
            "pip install 'autodistill-metaclip[worldwide]'"
        ) from e
    except Exception as e:
        raise WeightsUnavailableError(
            "checkpoint",
            f"{resolved.name!r}: tokenizer {hf_name!r} is not cached and could not be "
            f"downloaded ({weights.first_lines(e, 1)})",
        ) from e


def _limit_aspect(image: Image.Image) -> Image.Image:
    """Centre-crop extreme panoramas (> 16:1) before a shortest-side resize.

    Resize-shortest-then-centre-crop keeps only the central square anyway; cropping first
    avoids allocating e.g. a 224 x 2,240,000 intermediate for a 1 x 10,000 image. Up to 16:1
    the preprocessing is exactly open_clip's; beyond, pixels differ slightly (the resize grid).
    """
    width, height = image.size
    short, long = min(width, height), max(width, height)
    if long <= _MAX_ASPECT * short:
        return image
    keep = round(_MAX_ASPECT * short)
    if width > height:
        left = (width - keep) // 2
        return image.crop((left, 0, left + keep, height))
    top = (height - keep) // 2
    return image.crop((0, top, width, top + keep))

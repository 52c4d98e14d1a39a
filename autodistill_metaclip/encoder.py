"""An open_clip model on one device, with its preprocessing and tokenizer.

:class:`Encoder` turns images into pixel tensors and pixel tensors or texts into L2-normalised
float32 numpy embeddings. Weights are fetched first (open_clip's own download and cache), then
loaded without running pickled code, so every failure has one clear exception.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image

from autodistill_metaclip.checkpoints import Resolved
from autodistill_metaclip.errors import CheckpointError, WeightsUnavailableError
from autodistill_metaclip.images import ImageInput, load_image

PRECISIONS = ("fp32", "fp16", "bf16")
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
_MAX_ASPECT = 4.0
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
        raise ValueError(
            f"device: expected 'cpu', 'cuda', 'cuda:N' or 'mps', but got {device!r}"
        ) from e
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} was asked for, but torch sees no CUDA device")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device: {device!r} was asked for, but MPS is not available")
    return chosen


def select_precision(precision: str | None, device: torch.device) -> str:
    """``None`` means fp16 (autocast) on CUDA and fp32 elsewhere."""
    if precision is None:
        return "fp16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision: expected one of {', '.join(PRECISIONS)}, but got {precision!r}"
        )
    return precision


class Encoder:
    """A loaded open_clip model in ``eval()`` mode.

    Args:
        resolved: What to build (see :func:`autodistill_metaclip.checkpoints.resolve`).
        device: Where the model, pixels and tokens live.
        precision: ``fp32``, or ``fp16``/``bf16`` autocast around the fp32 weights.
        cache_dir: Where open_clip downloads weights (default: the Hugging Face cache).
        draft: Decode large JPEGs at reduced scale (see ``images.load_image``).
    """

    def __init__(
        self,
        resolved: Resolved,
        *,
        device: torch.device,
        precision: str,
        cache_dir: str | os.PathLike[str] | None = None,
        draft: bool = True,
    ) -> None:
        self.resolved = resolved
        self.device = device
        self.precision = precision
        cache = os.fspath(cache_dir) if cache_dir is not None else None
        weights_file, preprocess_cfg = _fetch_weights(resolved, cache)
        _refuse_unsafe_pickle(weights_file)
        try:
            model, _, self.preprocess = open_clip.create_model_and_transforms(
                resolved.architecture,
                pretrained=str(weights_file),
                device=device,
                cache_dir=cache,
                weights_only=True,
                image_mean=preprocess_cfg.get("mean"),
                image_std=preprocess_cfg.get("std"),
                image_interpolation=preprocess_cfg.get("interpolation"),
                image_resize_mode=preprocess_cfg.get("resize_mode"),
            )
        except Exception as e:
            raise CheckpointError(
                f"weights: {str(weights_file)!r} does not fit architecture "
                f"{resolved.architecture!r}: {_first_lines(e)}"
            ) from e
        self.model = model.eval()
        self.tokenizer = _tokenizer(resolved, cache)
        self.logit_scale = float(model.logit_scale.detach().exp())
        self.resize_mode = model.visual.preprocess_cfg.get("resize_mode", "shortest")
        size = model.visual.preprocess_cfg["size"]
        self.image_size = max(size) if isinstance(size, tuple | list) else int(size)
        self.draft_size = 2 * self.image_size if draft else None
        self.dim = int(open_clip.get_model_config(resolved.architecture)["embed_dim"])

    def pixels(self, source: ImageInput) -> torch.Tensor:
        """Load and preprocess one image into a ``(3, H, W)`` float tensor on the CPU."""
        image = load_image(source, draft_size=self.draft_size)
        if self.resize_mode == "shortest":
            image = _limit_aspect(image)
        return self.preprocess(image)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Embed a ``(N, 3, H, W)`` batch; returns ``(N, D)`` float32, L2-normalised."""
        with self._autocast():
            features = self.model.encode_image(pixels.to(self.device, non_blocking=True))
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
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])


def _fetch_weights(resolved: Resolved, cache_dir: str | None) -> tuple[Path, dict[str, Any]]:
    """A local weights file (downloaded if needed) and the tag's preprocessing settings."""
    if resolved.weights_file is not None:
        return resolved.weights_file, {}
    config = open_clip.get_pretrained_cfg(resolved.architecture, resolved.tag)
    try:
        path = open_clip.download_pretrained(config, cache_dir=cache_dir)
    except Exception as e:
        cache = cache_dir or _hf_cache()
        raise WeightsUnavailableError(
            f"checkpoint {resolved.name!r} ({resolved.architecture}, {resolved.tag}): weights are "
            f"not in the cache ({cache}) and could not be downloaded ({_first_lines(e, 1)}). "
            "Connect to the internet once, or download them elsewhere and pass "
            "weights='path/to/open_clip_model.safetensors'."
        ) from e
    return Path(path), config


def _hf_cache() -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return str(HF_HUB_CACHE)


def _refuse_unsafe_pickle(path: Path) -> None:
    """Load pickle-based files with ``weights_only=True`` first, so no pickled code ever runs.

    open_clip itself retries ``torch.load`` without ``weights_only`` on a ``TypeError``;
    vetting here means it only ever sees files that load safely.
    """
    if path.suffix.lower() == ".safetensors":
        return
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"weights: refused {str(path)!r}: it holds pickled objects that would run code when "
            f"loaded, not plain tensors ({_first_lines(e, 1)})"
        ) from e
    except Exception as e:
        raise CheckpointError(f"weights: cannot read {str(path)!r}: {_first_lines(e)}") from e


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
            f"checkpoint {resolved.name!r}: tokenizer {hf_name!r} is not cached and could not "
            f"be downloaded ({_first_lines(e, 1)})"
        ) from e


def _limit_aspect(image: Image.Image) -> Image.Image:
    """Centre-crop extreme panoramas (> 4:1) before a shortest-side resize.

    Resize-shortest-then-centre-crop keeps only the central square anyway; cropping first
    avoids allocating e.g. a 224 x 2,240,000 intermediate for a 1 x 10,000 image.
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


def _first_lines(error: BaseException, n: int = 3) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = " ".join(lines[:n]) or type(error).__name__
    return text if len(text) < 600 else text[:600] + "..."

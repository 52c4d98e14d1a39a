"""A local, safe weights file for a resolved checkpoint: the cache first, then a download.

Weights already in the cache load with no network at all. Before a download, the hub (or the
proxy that reaches it) is probed for a few seconds, so that a machine without network fails at
once instead of after huggingface_hub's minute of retries. Every file is read with safetensors
or ``torch.load(weights_only=True)`` before open_clip sees it.
"""

from __future__ import annotations

import os
import pickle
import socket
import urllib.request
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import open_clip
import torch
from huggingface_hub import constants, try_to_load_from_cache
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
from safetensors import safe_open

from autodistill_metaclip.engine.checkpoints import Resolved
from autodistill_metaclip.errors import CheckpointError, WeightsUnavailableError

PROBE_TIMEOUT = 3.0


def obtain(resolved: Resolved, cache_dir: str | None) -> tuple[Path, dict[str, Any]]:
    """A vetted local weights file, and the pretrained tag's preprocessing settings."""
    if resolved.weights_file is not None:
        path, config = resolved.weights_file, {}
    else:
        config = open_clip.get_pretrained_cfg(resolved.architecture, resolved.tag)
        path = _cached(config, cache_dir) or _download(resolved, config, cache_dir)
    check_file(path)
    return path, config


def check_file(path: Path) -> None:
    """Read a weights file's structure, so that a corrupt file says so and a pickle is only
    ever opened with ``weights_only=True``.

    open_clip itself retries ``torch.load`` without ``weights_only`` on a ``TypeError``;
    vetting here means it only ever sees files that load safely.
    """
    try:
        if path.suffix.lower() == ".safetensors":
            with safe_open(str(path), framework="pt"):
                return
        # Only zip-format files can be memory-mapped; legacy ones (torch < 1.6) are read.
        zipped = zipfile.is_zipfile(path)
        torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            "weights",
            f"refused {str(path)!r}: it holds pickled objects that would run code when "
            f"loaded, not plain tensors ({first_lines(e, 1)})",
        ) from e
    except Exception as e:
        raise CheckpointError(
            "weights",
            f"cannot read {str(path)!r}, the file is corrupt or of another format "
            f"({first_lines(e, 1)})",
        ) from e


def first_lines(error: BaseException, n: int = 3) -> str:
    """The first ``n`` non-empty lines of an error message, at most 600 characters."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = " ".join(lines[:n]) or type(error).__name__
    return text if len(text) < 600 else text[:600] + "..."


def _hub_file(config: dict[str, Any]) -> tuple[str, list[str]] | None:
    """The hub repository of a tag and the file names open_clip tries there, in order."""
    hub = config.get("hf_hub", "")
    if not hub:
        return None
    repo, filename = os.path.split(hub)
    filename = filename or HF_WEIGHTS_NAME
    names = [filename]
    if filename == HF_WEIGHTS_NAME:
        names.insert(0, HF_SAFE_WEIGHTS_NAME)
    elif filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    return repo, names


def _cached(config: dict[str, Any], cache_dir: str | None) -> Path | None:
    hub = _hub_file(config)
    if hub is None:
        return None  # URL-only tags: open_clip looks in its own cache before downloading
    repo, names = hub
    for name in names:
        found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
        if isinstance(found, str):
            return Path(found)
    return None


def _download(resolved: Resolved, config: dict[str, Any], cache_dir: str | None) -> Path:
    problem = _unreachable(config)
    if problem is None:
        try:
            return Path(open_clip.download_pretrained(config, cache_dir=cache_dir))
        except Exception as e:
            problem = first_lines(e, 1)
    cache = cache_dir or constants.HF_HUB_CACHE
    raise WeightsUnavailableError(
        "checkpoint",
        f"{resolved.name!r} ({resolved.architecture}, {resolved.tag}): weights are not in the "
        f"cache ({cache}) and could not be downloaded ({problem}). Connect to the internet "
        f"once, or download {_where(config)} elsewhere and pass {{weights}}; "
        "the bundled {checkpoint} works offline.",
        weights="path/to/weights.safetensors",
        checkpoint="demo",
    )


def _where(config: dict[str, Any]) -> str:
    """The file to download for a tag, as open_clip looks for it."""
    hub = _hub_file(config)
    if hub is not None:
        repo, names = hub
        return f"https://huggingface.co/{repo}/resolve/main/{names[0]}"
    return str(config.get("url") or "its weights file")


def _unreachable(config: dict[str, Any]) -> str | None:
    """Why the weights' server cannot be reached right now, or None if it answers."""
    if constants.HF_HUB_OFFLINE and config.get("hf_hub"):
        return "HF_HUB_OFFLINE is set"
    target = urlparse(constants.ENDPOINT if config.get("hf_hub") else config.get("url", ""))
    host = target.hostname or ""
    proxy = urllib.request.getproxies().get(target.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        target = urlparse(proxy)
        host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT).close()
    except OSError as e:
        return f"cannot reach {host}:{port}: {e.strerror or e}"
    return None

"""Import has no side effects; without network the default model fails at once and clearly;
cached weights load with no network at all."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import random_weights

AUDIT = r"""
import importlib, os, pkgutil, sys
# Third-party imports first: torch's CUDA build runs `ldconfig -p` and matplotlib builds a font
# cache on their first import, which is their doing. What is audited is this package's modules.
import autodistill.classification, huggingface_hub, matplotlib.figure, numpy, open_clip
import PIL.Image, requests, safetensors, sklearn.cluster, supervision, torch, tqdm.auto
seen = []
WATCHED = ("socket.connect", "socket.getaddrinfo", "subprocess.Popen", "os.system",
           "os.posix_spawn", "os.exec", "os.fork", "os.spawn")
def hook(event, args):
    if event in WATCHED:
        seen.append(event)
    elif event == "open":
        path, mode, flags = args
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writes:
            seen.append(f"write {path}")
sys.addaudithook(hook)
import autodistill_metaclip
prefix = "autodistill_metaclip."
modules = [m.name for m in pkgutil.walk_packages(autodistill_metaclip.__path__, prefix)]
for name in modules:
    if not name.endswith("__main__"):
        importlib.import_module(name)
print(len(modules), repr(seen))
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "PYTHONPATH")}
    return {**keep, "HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1", **extra}


def test_import_touches_no_network_subprocess_or_files(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", AUDIT],
        env=_env(tmp_path, MPLCONFIGDIR=str(tmp_path / "matplotlib")),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    count, seen = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(count) >= 10 and seen == "[]"
    assert list((tmp_path / "home").iterdir()) == []


CONSTRUCT = "from autodistill_metaclip import MetaCLIP; MetaCLIP(None)"


@pytest.mark.parametrize(
    ("variables", "cause"),
    [
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
        ({"HF_ENDPOINT": "http://127.0.0.1:9"}, "cannot reach 127.0.0.1:9"),  # nothing listens
    ],
    ids=["HF_HUB_OFFLINE", "no-network"],
)
def test_default_model_without_network_or_cache(tmp_path: Path, variables, cause) -> None:
    env = _env(tmp_path, HF_HOME=str(tmp_path / "hf"), **variables)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", CONSTRUCT], env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - started
    assert done.returncode != 0
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("autodistill_metaclip.errors.WeightsUnavailableError: ")
    assert "checkpoint: 'b32-fullcc'" in error
    assert str(tmp_path / "hf" / "hub") in error  # where the cache is
    assert "weights='path/to/weights.safetensors'" in error
    # the exact file open_clip would fetch, and the checkpoint that needs none
    file = "timm/vit_base_patch32_clip_224.metaclip_2pt5b/resolve/main/open_clip_model.safetensors"
    assert f"download https://huggingface.co/{file} elsewhere" in error
    assert "checkpoint='demo' works offline" in error
    assert cause in error
    assert elapsed < 60  # huggingface_hub alone retries for about a minute


@pytest.mark.slow
def test_cached_weights_load_without_network(tmp_path: Path) -> None:
    """Weights in the Hugging Face cache layout are found with no request at all."""
    snapshot = (
        tmp_path
        / "hub"
        / "models--timm--vit_base_patch32_clip_224.metaclip_2pt5b"
        / "snapshots"
        / "0123456789abcdef"
    )
    snapshot.mkdir(parents=True)
    random_weights("ViT-B-32-quickgelu", snapshot / "open_clip_model.safetensors")
    refs = snapshot.parents[1] / "refs"
    refs.mkdir()
    (refs / "main").write_text("0123456789abcdef")
    code = (
        "import sys; from autodistill_metaclip import MetaCLIP\n"
        "m = MetaCLIP(None, cache_dir=sys.argv[1])\n"
        "print(m.embed_text('a dog').shape)"
    )
    env = _env(tmp_path, HF_ENDPOINT="http://127.0.0.1:9")
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "hub")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(512,)"

"""Plain functions the tests share (the fixtures are in ``conftest.py``): reading what
``label()`` wrote, running the command line, writing inputs, serving files over HTTP, and
watching which files a process opens."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import math
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import open_clip
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file

from autodistill_metaclip import MetaCLIP, synthetic
from autodistill_metaclip.cli import main
from autodistill_metaclip.labeling.manifest import MANIFEST, read_manifest

ROOT = Path(__file__).parents[1]
"""The repository."""
SPLITS = ("train", "valid", "test")
"""The split folders of the default layout."""

ONTOLOGY = {
    "a photo of a red circle": "red circle",
    "a photo of a blue square": "blue square",
    "a photo of a green triangle": "green triangle",
    "a photo of a yellow circle": "yellow circle",
}
"""Four of the demo model's classes (the ``shapes_model`` fixture)."""
COUNTS = {"red circle": 12, "blue square": 12, "green triangle": 12, "yellow circle": 2}
"""Images per class that :func:`write_inputs` writes by default: a small class on purpose."""
TIGHT = 0.995
"""A near-duplicate threshold for the demo model, which packs a class closely (same-class
cosines up to 0.99)."""


# --- what label() wrote ------------------------------------------------------------------


def manifest(output: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """The rows of ``output/manifest.csv`` by image key, as the library reads them back."""
    return read_manifest(Path(output) / MANIFEST)


def copies(output: Path, pattern: str = "*", splits: Sequence[str] = SPLITS) -> list[Path]:
    """The image files in a dataset's split folders (sorted)."""
    return sorted(
        p for split in splits for p in (Path(output) / split).rglob(pattern) if p.is_file()
    )


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative POSIX path) with the SHA-256 of its bytes."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


# --- inputs -------------------------------------------------------------------------------


def solid(
    colour: tuple[int, ...], mode: str = "RGB", size: tuple[int, int] = (8, 6)
) -> Image.Image:
    """A one-colour image."""
    return Image.new(mode, size, colour)


def write_inputs(folder: Path, counts: dict[str, int] = COUNTS, seed: int = 0) -> dict[str, str]:
    """PNG shapes named by index (``0000.png``...), so nothing but the pixels says their
    class; returns ``{file name: class}``."""
    folder.mkdir(parents=True, exist_ok=True)
    truth, n = {}, 0
    for label, count in counts.items():
        colour, shape = label.split()
        for _ in range(count):
            name = f"{n:04d}.png"
            synthetic.make_image(colour, shape, seed=seed * 10000 + n).save(folder / name)
            truth[name] = label
            n += 1
    return truth


def hand_labelled(folder: Path, n: int, seed: int) -> dict[str, str]:
    """``n`` shapes in class folders named as their classes (a human's labels); returns
    ``{file name: class}``."""
    truth = {}
    for path, name in synthetic.write_folder(folder / "_", n, seed=seed).items():
        (folder / name).mkdir(exist_ok=True)
        path.rename(folder / name / path.name)
        truth[path.name] = name
    (folder / "_").rmdir()
    return truth


def random_weights(architecture: str, path: Path, *, seed: int = 0) -> Path:
    """Save a random-init open_clip model, with a sharp logit scale (100) so softmax outputs
    are sensitive to any error in the embeddings."""
    torch.manual_seed(seed)
    model = open_clip.create_model(architecture)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def clustered(n: int, d: int = 64, *, seed: int = 0) -> np.ndarray:
    """Unit vectors around n // 50 random centres (as image embeddings group by content)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(2, n // 50), d)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), n)] * 3 + rng.standard_normal((n, d))
    vectors = vectors.astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


# --- label() runs compared ------------------------------------------------------------------


def resume_run(model: MetaCLIP, root: Path) -> None:
    """Resume the run of ``root/in`` into ``root/out`` (threshold :data:`TIGHT`)."""
    model.label(
        root / "in", ".png", root / "out", resume=True, near_duplicates=TIGHT, progress=False
    )


def fresh_run(model: MetaCLIP, root: Path) -> dict[str, dict[str, str]]:
    """Label ``root/in`` afresh into ``root/fresh``: each row's status, class and split."""
    model.label(root / "in", ".png", root / "fresh", near_duplicates=TIGHT, progress=False)
    return {
        k: {c: r[c] for c in ("status", "class", "split")}
        for k, r in manifest(root / "fresh").items()
    }


def same_as_fresh(model: MetaCLIP, root: Path) -> None:
    """``root/out`` holds what a fresh run gives: the same rows, and exactly one copy per
    labelled row, in its split and class folder (the four classes' names are folder names)."""
    rows = manifest(root / "out")
    assert {
        k: {c: r[c] for c in ("status", "class", "split")} for k, r in rows.items()
    } == fresh_run(model, root)
    written = {p.relative_to(root / "out").as_posix() for p in copies(root / "out", "*.png")}
    assert written == {
        f"{r['split']}/{r['class']}/{k}" for k, r in rows.items() if r["status"] == "labeled"
    }


# --- the command line ---------------------------------------------------------------------


class Ran(NamedTuple):
    """A command's exit code, standard output and standard error."""

    code: int
    out: str
    err: str


def run_cli(*args: str | os.PathLike[str]) -> Ran:
    """Run ``autodistill-metaclip ARGS`` in-process (the real command, parsing included)."""
    result = CliRunner().invoke(main, [os.fspath(a) for a in args])
    return Ran(result.exit_code, result.stdout, result.stderr)


def python(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in a new process, offline for Hugging Face."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


# --- which files a process opens ----------------------------------------------------------

_RECORDERS: list[list[str]] = []
_HOOKED = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _RECORDERS and isinstance(args[0], str | bytes | os.PathLike):
        path = os.fsdecode(args[0])
        for seen in list(_RECORDERS):
            seen.append(path)


@contextlib.contextmanager
def opened_files() -> Iterator[list[str]]:
    """Every path this process opens inside the block, from any thread (``open`` and
    ``os.open`` both raise the ``open`` audit event)."""
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_audit)  # cannot be removed: it records only while a block is open
        _HOOKED = True
    seen: list[str] = []
    _RECORDERS.append(seen)
    try:
        yield seen
    finally:
        _RECORDERS.remove(seen)


def names_in(paths: list[str], folder: Path) -> set[str]:
    """The file names among ``paths`` that are directly in ``folder``."""
    return {Path(p).name for p in paths if Path(p).parent == folder}


# --- a local HTTP server ------------------------------------------------------------------


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that logs nothing."""

    def log_message(self, *args: Any) -> None:
        pass

    def send(self, status: int, content_type: str, body: bytes, encoding: str = "") -> None:
        """One whole response."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)


def folder_handler(folder: Path) -> type[http.server.BaseHTTPRequestHandler]:
    """A handler that serves the files of ``folder``."""

    class Files(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    return Files


@contextlib.contextmanager
def serve(
    handler: type[http.server.BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None
) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 (behind ``tls`` if given) for the block: its base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def embedded(output: Path) -> set[str]:
    """The keys of the images a run into ``output`` kept embeddings of (its store)."""
    from autodistill_metaclip.index.store import EmbeddingStore

    (folder,) = (output / ".autodistill-metaclip" / "embeddings").iterdir()
    return set(EmbeddingStore.open(folder).keys)


def trusted_certificate(tmp_path: Path, monkeypatch: Any) -> tuple[Path, Path]:
    """A key and a self-signed certificate for 127.0.0.1 (made with the openssl command; the
    test is skipped without it), trusted for this test through ``SSL_CERT_FILE``."""
    import shutil

    import pytest

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return key, cert

"""One loader for every input kind.

Inputs: a file path (``str`` or ``Path``), an http(s) URL, a filesystem URI (``s3://...``, read
through :mod:`autodistill_metaclip.sources`), a PIL image, a numpy array (BGR, as
OpenCV and autodistill hand them out) or raw encoded bytes. Every one comes out as an upright
(EXIF orientation applied) RGB PIL image. Transparent pixels are composited onto white, the way
image viewers show them; 16-bit images are scaled to 8 bits, not clipped.

Example:
    >>> import numpy as np
    >>> load_image(np.zeros((4, 6, 3), np.uint8)).size
    (6, 4)
"""

from __future__ import annotations

import errno
import io
import logging
import os
import stat
import struct
import time
from typing import IO, Any, TypeAlias

import numpy as np
import requests
import urllib3
from PIL import Image, ImageOps, UnidentifiedImageError

from autodistill_metaclip import sources
from autodistill_metaclip.errors import ImageLoadError

ImageInput: TypeAlias = "str | os.PathLike[str] | Image.Image | np.ndarray | bytes"

URL_TIMEOUT = 10.0
"""Seconds to wait for a server to connect or send more data; also the limit for the whole body."""
MAX_URL_BYTES = 64 * 1024 * 1024
_BYTE_TYPES = (bytes, bytearray, memoryview)
_WHITE = (255, 255, 255, 255)
logger = logging.getLogger(__name__)


def describe(source: Any) -> str:
    """A short, readable name for an input, used in every error message."""
    if isinstance(source, str | os.PathLike):
        return repr(os.fspath(source))
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.width}x{source.height}>"
    if isinstance(source, np.ndarray):
        return f"<numpy array {source.shape} {source.dtype}>"
    if isinstance(source, _BYTE_TYPES):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def load_image(source: ImageInput, *, draft_size: int | None = None) -> Image.Image:
    """Load any supported input as an upright RGB image.

    Args:
        source: Path, URL, filesystem URI, PIL image, BGR numpy array or encoded bytes.
        draft_size: If set, JPEGs at least twice this size in both sides are decoded at a
            reduced scale (Pillow's draft mode) that keeps both sides >= ``draft_size``.

    Raises:
        ImageLoadError: The input cannot be read as an image; the message names it and why.
        TypeError: The input is of no supported type (``None``, a number, ...).
    """
    if isinstance(source, Image.Image):
        return _upright_rgb(source, describe(source))
    if isinstance(source, np.ndarray):
        return from_array(source)
    if isinstance(source, _BYTE_TYPES):
        return _decode(io.BytesIO(source), describe(source), draft_size)
    if isinstance(source, str) and source.lower().startswith(("http://", "https://")):
        return _decode(io.BytesIO(_download(source)), repr(source), draft_size)
    if isinstance(source, str) and sources.is_uri(source):
        return _decode(io.BytesIO(sources.read_bytes(source)), repr(source), draft_size)
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        with _open_file(path) as file:
            return _decode(file, repr(path), draft_size)
    raise TypeError(
        "image: expected a file path, URL, PIL image, numpy array or bytes, "
        f"but got {type(source).__name__}"
    )


def from_array(array: np.ndarray) -> Image.Image:
    """A BGR (or BGRA, or greyscale) uint8 array as an RGB image."""
    name = describe(array)
    if array.dtype != np.uint8:
        raise ImageLoadError(
            f"{name}: expected dtype uint8 (0-255, BGR), but got {array.dtype}; "
            "for floats in [0, 1] pass (array * 255).round().astype(np.uint8)"
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageLoadError(
            f"{name}: expected shape (H, W), (H, W, 3) BGR or (H, W, 4) BGRA, but got {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageLoadError(f"{name}: the image is empty")
    if array.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(array), "L").convert("RGB")
    if array.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(array[:, :, ::-1]), "RGB")
    rgba = Image.fromarray(np.ascontiguousarray(array[:, :, [2, 1, 0, 3]]), "RGBA")
    return _on_white(rgba)


def _open_file(path: str) -> IO[bytes]:
    """Open a regular file for reading, or say precisely why it cannot be an image."""
    name = repr(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        problem = "broken symlink" if os.path.islink(path) else "file not found"
        raise ImageLoadError(f"{name}: {problem}") from None
    except OSError as e:
        problem = "symlink loop" if e.errno == errno.ELOOP else (e.strerror or str(e))
        raise ImageLoadError(f"{name}: {problem}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageLoadError(f"{name}: is a directory, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise ImageLoadError(f"{name}: not a regular file")
    if info.st_size == 0:
        raise ImageLoadError(f"{name}: the file is empty (0 bytes)")
    try:
        return open(path, "rb")
    except OSError as e:
        raise ImageLoadError(f"{name}: cannot open ({e.strerror or e})") from None


def _download(url: str) -> bytes:
    """Fetch a URL's body, refusing errors, non-images, slow drips and endless bodies."""
    deadline = time.monotonic() + URL_TIMEOUT
    try:
        with requests.get(url, timeout=URL_TIMEOUT, stream=True) as response:
            if response.status_code != 200:
                raise ImageLoadError(
                    f"{url!r}: HTTP {response.status_code} {response.reason or ''}".rstrip()
                )
            content_type = response.headers.get("Content-Type", "")
            if content_type.startswith(("text/", "application/json")):
                raise ImageLoadError(f"{url!r}: the server sent {content_type}, not an image")
            body = bytearray()
            # read1 returns what has arrived, so both limits are checked as data trickles in.
            while chunk := response.raw.read1(65536):
                body += chunk
                if len(body) > MAX_URL_BYTES:
                    raise ImageLoadError(f"{url!r}: body larger than {MAX_URL_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise ImageLoadError(f"{url!r}: body not complete within {URL_TIMEOUT:g}s")
    except (requests.Timeout, urllib3.exceptions.TimeoutError):
        raise ImageLoadError(f"{url!r}: no answer within {URL_TIMEOUT:g}s") from None
    except (requests.RequestException, urllib3.exceptions.HTTPError) as e:
        raise ImageLoadError(f"{url!r}: download failed ({type(e).__name__}: {e})") from None
    return bytes(body)


def _decode(file: IO[bytes], name: str, draft_size: int | None) -> Image.Image:
    """Decode fully (so truncation is caught here, not later) and return upright RGB."""
    try:
        image = _open(file, name)
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image file ({_sniff(file)})") from None
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"{name}: refused as a decompression bomb ({e})") from None
    except Exception as e:
        raise ImageLoadError(f"{name}: cannot read ({type(e).__name__}: {e})") from None
    limit = Image.MAX_IMAGE_PIXELS
    if limit and image.width * image.height > limit:
        raise ImageLoadError(
            f"{name}: refused as a possible decompression bomb ({image.width}x{image.height} "
            f"pixels is over Pillow's limit of {limit})"
        )
    if draft_size and image.format == "JPEG" and min(image.size) >= 2 * draft_size:
        image.draft(image.mode, (draft_size, draft_size))
    try:
        image.load()
    except Exception as e:
        raise ImageLoadError(
            f"{name}: corrupt or truncated image data ({type(e).__name__}: {e})"
        ) from None
    return _upright_rgb(image, name)


def _open(file: IO[bytes], name: str) -> Image.Image:
    """``Image.open(file, formats=IMAGE_FORMATS)``, done with Pillow's own registry of decoders.

    Not through ``PIL.Image.open`` itself: other packages replace it (ultralytics' version, on
    any file Pillow cannot identify, runs pip to install a HEIF plugin), and our inputs are
    untrusted. Mirrors Pillow's own loop: each allowed format's ``accept`` check on the first
    16 bytes, then its decoder.
    """
    Image.init()
    prefix = file.read(16)
    for kind in sources.IMAGE_FORMATS:
        factory, accept = Image.OPEN.get(kind, (None, None))
        try:
            if factory is None or (accept is not None and accept(prefix) is not True):
                continue
            file.seek(0)
            image = factory(file, name)
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue  # what Pillow itself skips on to the next format
        Image._decompression_bomb_check(image.size)
        return image
    raise UnidentifiedImageError(name)


def _sniff(file: IO[bytes]) -> str:
    file.seek(0)
    head = file.read(64).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "looks like HTML"
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "looks like text"
    return f"unrecognised content starting {head[:8]!r}"


def _upright_rgb(image: Image.Image, name: str) -> Image.Image:
    try:
        image = ImageOps.exif_transpose(image) or image
    except Exception as e:  # a corrupt EXIF block must not cost the image
        logger.debug("%s: EXIF orientation ignored (%s)", name, e)
    try:
        return to_rgb(image)
    except Exception as e:
        raise ImageLoadError(f"{name}: cannot convert mode {image.mode} to RGB ({e})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: alpha onto white, 16/32-bit scaled to 8-bit."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image, dtype=np.float64)
        wide = mode.startswith("I;16") or (mode == "I" and values.max(initial=0) > 255)
        grey = np.clip(values / 257 if wide else values, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return _on_white(image.convert("RGBA"))
    return image.convert("RGB")


def _on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, _WHITE)
    return Image.alpha_composite(background, rgba).convert("RGB")

"""One loader for every input kind.

Inputs: a file path (``str`` or ``Path``), an http(s) URL (fetched by
:mod:`autodistill_metaclip.inputs.urls`), a filesystem URI (``s3://...``, read through
:mod:`autodistill_metaclip.inputs.sources`), a PIL image, a numpy array (BGR, as
OpenCV and autodistill hand them out) or raw encoded bytes. Every one comes out as an upright
(EXIF orientation applied) RGB PIL image. Transparent pixels are composited onto white, the way
image viewers show them; 16-bit images are scaled to 8 bits, not clipped.

A string input is read only if the :class:`~autodistill_metaclip.inputs.policy.InputPolicy` allows
it. A JPEG whose decoding would cost far more than its size suggests (a progressive JPEG of
thousands of scans) is refused before it is decoded (:data:`MAX_JPEG_SCANS`).

Examples:
    >>> import numpy as np
    >>> load_image(np.zeros((4, 6, 3), np.uint8)).size
    (6, 4)
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeAlias

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from autodistill_metaclip.errors import ArgumentTypeError, ImageLoadError
from autodistill_metaclip.inputs import sources, urls
from autodistill_metaclip.inputs.policy import InputPolicy, in_force
from autodistill_metaclip.inputs.sources import SourceFile

ImageInput: TypeAlias = "str | os.PathLike[str] | Image.Image | np.ndarray | bytes | SourceFile"
Reserve: TypeAlias = Callable[[int], None]

DEFAULT_DECODE_MEMORY = 1024
"""MiB that images being decoded at once may take (``MetaCLIP(decode_memory=...)``)."""
_BYTE_TYPES = (bytes, bytearray, memoryview)
_WHITE = (255, 255, 255)
_STORAGE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
"""Bytes per pixel Pillow stores for a mode (4 for every other mode, RGB included)."""
_STRIP_ROWS = 256
MAX_JPEG_SCANS = 200
"""Most scans decoded in one JPEG (libjpeg-turbo's ``djpeg -maxscans`` suggests hundreds; a
progressive JPEG from Pillow or a camera has about 10): each scan costs a pass over the image."""
MAX_JPEG_SCAN_PIXELS = 2_000_000_000
"""Most pixels decoded over all of a JPEG's scans (scans x width x height): ~1-2 s of decoding.
10 scans of Pillow's 89-megapixel bomb limit are 0.9e9."""
_ALWAYS_SCANS = 32
"""Scans any JPEG may have, however large (a progressive one has about 10)."""
MAX_JPEG_MARKERS = 65_536
"""Most markers read in one JPEG (a photo has a few dozen), so that counting scans is quick."""
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")
"""A marker after entropy-coded data: 0xFF not followed by stuffing (0x00) or a restart."""
logger = logging.getLogger(__name__)


def describe(source: Any) -> str:
    """A short, readable name for an input, used in every error message (no credentials)."""
    if isinstance(source, SourceFile):
        return repr(urls.redact(source.location))
    if isinstance(source, str | os.PathLike):
        return repr(urls.redact(os.fspath(source)))
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.width}x{source.height}>"
    if isinstance(source, np.ndarray):
        return f"<numpy array {source.shape} {source.dtype}>"
    if isinstance(source, _BYTE_TYPES):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def load_image(
    source: ImageInput, *, draft_size: int | None = None, policy: InputPolicy | None = None
) -> Image.Image:
    """Load any supported input as an upright RGB image.

    Args:
        source: Path, URL, filesystem URI, listed ``SourceFile``, PIL image, BGR numpy array
            or encoded bytes.
        draft_size: If set, JPEGs at least twice this size in both sides are decoded at a
            reduced scale (Pillow's draft mode) that keeps both sides >= ``draft_size``.
        policy: What a string input may reach; default: the policy in force
            (:func:`~autodistill_metaclip.inputs.policy.in_force`).

    Raises:
        ImageLoadError: The input cannot be read as an image; the message names it and why.
        TypeError: The input is of no supported type (``None``, a number, ...).
    """
    return read_image(source, draft_size=draft_size, policy=policy)[0]


def read_image(
    source: ImageInput,
    *,
    draft_size: int | None = None,
    reserve: Reserve | None = None,
    policy: InputPolicy | None = None,
) -> tuple[Image.Image, bytes | None]:
    """:func:`load_image`, also returning the encoded bytes it decoded (``None`` for a PIL
    image or array): a file is read once, and what was decoded is what a caller may copy.

    ``reserve(n)`` is called with the estimated bytes decoding will take, once the image's
    header is read and before its pixels are (see :class:`DecodeBudget`).
    """
    if isinstance(source, Image.Image):
        return _upright_rgb(source, describe(source)), None
    if isinstance(source, np.ndarray):
        return from_array(source), None
    if isinstance(source, _BYTE_TYPES):
        data = bytes(source)
    elif isinstance(source, SourceFile):
        data = sources.read(source, policy=in_force(policy))
    elif isinstance(source, str | os.PathLike):
        data = _read_location(os.fsdecode(source), in_force(policy))
    else:
        raise ArgumentTypeError(
            "image",
            "expected a file path, URL, PIL image, numpy array or bytes, "
            f"but got {type(source).__name__}",
        )
    return _decode(io.BytesIO(data), describe(source), draft_size, reserve), data


def _read_location(location: str, policy: InputPolicy) -> bytes:
    """The bytes at a path, URL or URI that ``policy`` allows."""
    why = policy.refusal(location)
    if why is not None:
        raise ImageLoadError(f"{urls.redact(location)!r}: {why}")
    if location.lower().startswith(("http://", "https://")):
        return urls.download(location, policy)
    local = sources.local_path(location)  # a file:// URI is read as the local file it names
    if local is None:
        return sources.read_bytes(location, policy=policy)
    return sources.read_local(local)


def jpeg_scans(data: bytes | memoryview, most: int) -> int:
    """The scans (SOS markers) of a JPEG's first image, counted from its markers without
    decoding; counting stops past ``most``. Marker segments are skipped by their length, and
    entropy-coded data (after each SOS) up to the next marker.

    Raises:
        ValueError: More than :data:`MAX_JPEG_MARKERS` markers (fill bytes included).
    """
    position, scans, markers = 2, 0, 0  # after SOI
    while scans <= most and position + 4 <= len(data):
        markers += 1
        if markers > MAX_JPEG_MARKERS:
            raise ValueError(f"more than {MAX_JPEG_MARKERS} JPEG markers")
        if data[position] != 0xFF:
            break  # not a marker: corrupt, which decoding reports
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte
            position += 1
            continue
        if marker == 0xD9:  # EOI
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a segment
            position += 2
            continue
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == 0xDA:  # SOS: a segment, then entropy-coded data
            scans += 1
            found = _JPEG_MARKER.search(data, position)
            if found is None:
                break
            position = found.start()
    return scans


def _check_jpeg_scans(file: io.BytesIO, image: Image.Image, name: str) -> None:
    """Refuse a JPEG whose scans would take far longer to decode than its size suggests."""
    pixels = max(1, image.width * image.height)
    most = min(MAX_JPEG_SCANS, max(_ALWAYS_SCANS, MAX_JPEG_SCAN_PIXELS // pixels))
    try:
        with file.getbuffer() as data:
            scans = jpeg_scans(data, most)
    except ValueError as e:
        raise ImageLoadError(f"{name}: refused: {e}") from None
    if scans > most:
        raise ImageLoadError(
            f"{name}: refused: a JPEG of more than {most} scans, the most decoded for "
            f"{image.width}x{image.height} pixels (at most {MAX_JPEG_SCANS}, and "
            f"{MAX_JPEG_SCAN_PIXELS:,} pixels over all scans); each scan is one more decoding pass"
        )


class DecodeBudget:
    """A cap on the memory of images being decoded at once, shared by loading threads.

    Each image reserves an estimate of its decoding peak (its encoded bytes, its pixels as
    Pillow stores them, and the RGB conversion) once its header says how large it is, and waits
    while others hold the budget; an image alone may always go ahead, however large.

    Freed image memory must also come back to the next image, whichever thread decodes it:
    glibc keeps one heap per thread, so the budget also lets Pillow keep up to ``limit`` bytes
    of freed pixel blocks for reuse (its documented ``PILLOW_BLOCKS_MAX`` pool, raised for the
    process, never lowered). Measured in ``tests/scenarios/test_attacks.py``.

    Examples:
        >>> budget = DecodeBudget(1 << 30)
        >>> with budget.hold() as reserve:
        ...     reserve(100 << 20)  # blocks while others hold more than 924 MiB
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._changed = threading.Condition()
        blocks = limit // Image.core.get_block_size()
        if Image.core.get_blocks_max() < blocks:
            Image.core.set_blocks_max(blocks)

    @contextmanager
    def hold(self) -> Iterator[Reserve]:
        """A ``reserve(n)`` to call once; what it took is given back on leaving."""
        taken = 0

        def reserve(size: int) -> None:
            nonlocal taken
            with self._changed:
                while self._used and self._used + size > self.limit:
                    self._changed.wait()
                self._used += size
                taken += size

        try:
            yield reserve
        finally:
            with self._changed:
                self._used -= taken
                self._changed.notify_all()


def decoding_bytes(image: Image.Image, encoded: int) -> int:
    """Estimated peak bytes of decoding ``image`` to RGB: the encoded file, the decoded pixels,
    and two more RGB-sized buffers (transparency is composited, then converted)."""
    pixels = image.width * image.height
    return encoded + pixels * (_STORAGE_BYTES.get(image.mode, 4) + 8)


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


def _decode(
    file: io.BytesIO, name: str, draft_size: int | None, reserve: Reserve | None
) -> Image.Image:
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
    if image.format in ("JPEG", "MPO"):
        _check_jpeg_scans(file, image, name)
    if draft_size and image.format == "JPEG" and min(image.size) >= 2 * draft_size:
        image.draft(image.mode, (draft_size, draft_size))
    if reserve is not None:
        reserve(decoding_bytes(image, file.getbuffer().nbytes))
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
    head = file.read(64).lstrip()
    if head.lower().startswith((b"<!doctype html", b"<html")):
        return "looks like HTML"
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "looks like text"
    return f"unrecognised content starting {head[:8]!r}"


def _upright_rgb(image: Image.Image, name: str) -> Image.Image:
    try:
        if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            image = ImageOps.exif_transpose(image)
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
        return _wide_grey_to_rgb(image)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return _on_white(image if mode == "RGBA" else image.convert("RGBA"))
    return image.convert("RGB")


def _on_white(rgba: Image.Image) -> Image.Image:
    """Composite onto opaque white: one RGB image and one alpha plane more, not three
    RGBA copies (``alpha_composite`` then ``convert``)."""
    background = Image.new("RGB", rgba.size, _WHITE)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _wide_grey_to_rgb(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float greyscale as RGB: 16-bit data scaled by 1/257, others
    clipped to 0-255; converted in strips of rows, so the float copy stays small."""
    mode = image.mode
    high = image.getextrema()[1]
    wide = mode.startswith("I;16") or (mode == "I" and isinstance(high, int | float) and high > 255)
    grey = Image.new("L", image.size)
    for top in range(0, image.height, _STRIP_ROWS):
        box = (0, top, image.width, min(top + _STRIP_ROWS, image.height))
        values = np.asarray(image.crop(box), dtype=np.float64)
        strip = np.clip(values / 257 if wide else values, 0, 255).round().astype(np.uint8)
        grey.paste(Image.fromarray(strip, "L"), box)
    return grey.convert("RGB")

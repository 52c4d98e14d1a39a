"""Bad and odd inputs through predict, embed_image and label(): each gets the documented
outcome, and a batch job loses nothing that was good."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import supervision as sv
from PIL import Image

from autodistill_metaclip import ImageLoadError, MetaCLIP, synthetic
from tests.helpers import manifest

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


def _shape(size: tuple[int, int] = (64, 64), colour: str = "red") -> Image.Image:
    return synthetic.make_image(colour, "circle", size=size, seed=3)


def _save(image: Image.Image, fmt: str, **kw: Any) -> Callable[[Path], None]:
    return lambda path: image.save(path, format=fmt, **kw)


def _truncated(fmt: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        buffer = io.BytesIO()
        _shape((256, 256)).save(buffer, format=fmt)
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])

    return make


def _png_header_only(width: int, height: int) -> Callable[[Path], None]:
    """A valid PNG signature and header claiming ``width`` x ``height``, and no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return lambda path: path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    )


def _mode(mode: str) -> Image.Image:
    image = _shape()
    if mode == "P+transparency":
        converted = image.convert("P")
        converted.info["transparency"] = 0
        return converted
    if mode == "I;16":
        return Image.fromarray(np.asarray(image.convert("L"), np.uint16) * 257)
    return image.convert(mode)


def _animated(fmt: str) -> Callable[[Path], None]:
    frames = [_shape(colour="blue"), _shape(colour="yellow"), _shape(colour="green")]
    return lambda path: frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:])


def _bogus_exif(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 99
    _shape().save(path, format="JPEG", exif=exif)


def _symlink_to_missing(path: Path) -> None:
    path.symlink_to(path.with_name("nowhere.png"))


def _symlink_loop(path: Path) -> None:
    other = path.with_name("loop-b.jpg")
    path.symlink_to(other)
    other.symlink_to(path)


@dataclass(frozen=True)
class FileCase:
    """A file written into the test folder, and what reading it must give."""

    name: str
    make: Callable[[Path], None]
    error: str | None = None  # a regex the ImageLoadError message matches; None = readable


FILES = [
    FileCase("zero.jpg", lambda p: p.write_bytes(b""), r"empty \(0 bytes\)"),
    FileCase("truncated.jpg", _truncated("JPEG"), "corrupt or truncated"),
    FileCase("truncated.png", _truncated("PNG"), "corrupt or truncated"),
    FileCase("text.jpg", lambda p: p.write_text("just some words\n" * 5), r"looks like text"),
    FileCase(
        "page.jpg", lambda p: p.write_text("<!DOCTYPE html><html>hi</html>"), "looks like HTML"
    ),
    FileCase("garbage.jpg", lambda p: p.write_bytes(bytes(range(256)) * 4), "not an image file"),
    FileCase("x.jpg", lambda p: p.mkdir(), "is a directory"),
    FileCase("dangling.jpg", _symlink_to_missing, "broken symlink"),
    FileCase("loop-a.jpg", _symlink_loop, "symlink loop"),
    FileCase("bomb.png", _png_header_only(20_000, 20_000), "decompression bomb"),
    FileCase("nearly-bomb.png", _png_header_only(10_000, 10_000), "decompression bomb"),
    FileCase("cmyk.jpg", _save(_mode("CMYK"), "JPEG")),
    FileCase("deep16.png", _save(_mode("I;16"), "PNG")),
    FileCase("la.png", _save(_mode("LA"), "PNG")),
    FileCase("palette.png", _save(_mode("P+transparency"), "PNG")),
    FileCase("rgba.png", _save(_mode("RGBA"), "PNG")),
    FileCase("grey.png", _save(_mode("L"), "PNG")),
    FileCase("one-pixel.png", _save(Image.new("RGB", (1, 1), (200, 0, 0)), "PNG")),
    FileCase("needle.png", _save(Image.new("RGB", (1, 10_000), (0, 0, 200)), "PNG")),
    FileCase("animated.gif", _animated("GIF")),
    FileCase("animated.webp", _animated("WEBP")),
    FileCase("pages.tiff", _animated("TIFF")),
    FileCase("bogus-exif.jpg", _bogus_exif),
    FileCase("été photo ☀.jpg", _save(_shape(), "JPEG")),
]


@pytest.fixture(scope="module")
def case_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    for case in FILES:
        case.make(folder / case.name)
    return folder


@pytest.mark.parametrize("case", FILES, ids=lambda c: c.name)
@pytest.mark.parametrize("call", ["predict", "embed_image"])
def test_file_inputs(demo_model: MetaCLIP, case_folder: Path, case: FileCase, call: str) -> None:
    path = case_folder / case.name
    run = getattr(demo_model, call)
    if case.error is None:
        result = run(path) if call == "embed_image" else run(path, confidence=0.0)
        if call == "predict":
            assert isinstance(result, sv.Classifications)
            assert result.confidence.sum() == pytest.approx(1.0, abs=1e-4)
        else:
            assert result.shape == (64,) and np.isfinite(result).all()
        return
    with pytest.raises(ImageLoadError, match=case.error) as raised:
        run(path)
    assert case.name in str(raised.value)


def test_first_frame_of_animations(demo_model: MetaCLIP, case_folder: Path) -> None:
    first = demo_model.embed_image(_shape(colour="blue"))
    for name in ("animated.gif", "animated.webp", "pages.tiff"):
        assert demo_model.compare(first, demo_model.embed_image(case_folder / name)) > 0.99


def test_label_survives_every_file_case(
    demo_model: MetaCLIP, case_folder: Path, tmp_path: Path
) -> None:
    demo_model.label(case_folder, None, tmp_path / "out", progress=False)
    rows = manifest(tmp_path / "out")
    expected = {c.name for c in FILES} - {"x.jpg"} | {"x.jpg", "loop-b.jpg"}
    assert set(rows) == expected
    for case in FILES:
        row = rows[case.name]
        if case.error is None:
            assert row["status"] in ("labeled", "unlabeled"), row
        else:
            assert row["status"] == "failed", row
            assert case.name in row["error"] or "loop" in row["error"], row


@contextlib.contextmanager
def _permission_bits_enforced() -> Iterator[None]:
    """As root, permission bits do not stop reads: drop the effective uid for the block."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_unreadable_file(demo_model: MetaCLIP) -> None:
    folder = Path(tempfile.mkdtemp(prefix="metaclip-perm-"))  # reachable by any user
    try:
        folder.chmod(0o777)
        synthetic.write_folder(folder / "in", 4, suffix=".png")
        (folder / "in").chmod(0o755)
        locked = folder / "in" / "locked.png"
        _shape().save(locked)
        locked.chmod(0)
        demo_model.label(folder / "in", ".png", folder / "warm", progress=False)  # imports warm
        with _permission_bits_enforced():
            with pytest.raises(ImageLoadError, match=r"locked\.png.*[Pp]ermission denied"):
                demo_model.predict(locked)
            demo_model.label(folder / "in", ".png", folder / "out", progress=False)
        rows = manifest(folder / "out")
        assert rows["locked.png"]["status"] == "failed"
        assert "ermission denied" in rows["locked.png"]["error"]
        assert sum(r["status"] == "labeled" for r in rows.values()) == 4
    finally:
        shutil.rmtree(folder)


# --- In-memory inputs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (np.zeros((32, 32, 3), np.float32), "expected dtype uint8"),
        (np.zeros((32, 32, 3), np.int64), "expected dtype uint8"),
        (np.zeros((32, 32, 5), np.uint8), r"expected shape \(H, W\), \(H, W, 3\)"),
        (np.zeros((2, 32, 32, 3), np.uint8), "expected shape"),
        (np.zeros((0, 32, 3), np.uint8), "the image is empty"),
        (np.zeros(7, np.uint8), "expected shape"),
        (np.zeros((32, 32), np.uint8), None),
        (np.zeros((32, 32, 4), np.uint8), None),
        (np.zeros((32, 32, 1), np.uint8), None),
        (b"", "not an image file"),
        (b"\x89PNG\r\n\x1a\n", "not an image file|corrupt"),
    ],
    ids=[
        "float",
        "int64",
        "5-channels",
        "4-d",
        "empty",
        "1-d",
        "grey",
        "bgra",
        "1-channel",
        "no-bytes",
        "png-signature-only",
    ],
)
def test_in_memory_inputs(demo_model: MetaCLIP, value: Any, error: str | None) -> None:
    if error is None:
        assert len(demo_model.predict(value, confidence=0.0)) == 12
        return
    with pytest.raises(ImageLoadError, match=error):
        demo_model.embed_image(value)


@pytest.mark.parametrize("value", [None, 42, 3.5, object(), {"a": 1}])
def test_unsupported_types(demo_model: MetaCLIP, value: Any) -> None:
    with pytest.raises(
        TypeError, match="expected a file path, URL, PIL image, numpy array or bytes"
    ):
        demo_model.predict(value)
    with pytest.raises(TypeError):
        demo_model.embed_image([value])


def test_empty_list(demo_model: MetaCLIP) -> None:
    assert demo_model.predict([]) == []
    assert demo_model.embed_image([]).shape == (0, 64)
    assert demo_model.embed_text([]).shape == (0, 64)


@pytest.mark.parametrize("text", [None, 3, b"bytes"])
def test_embed_text_refuses_non_text(demo_model: MetaCLIP, text: Any) -> None:
    with pytest.raises(TypeError, match="text: expected a string"):
        demo_model.embed_text(text)

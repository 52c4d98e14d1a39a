"""The image loader: every input kind, every Pillow mode, EXIF orientation, allowed formats."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autodistill_metaclip.errors import ImageLoadError
from autodistill_metaclip.inputs.images import load_image
from tests.helpers import solid


def _pixel(image: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, ...]:
    assert image.mode == "RGB"
    return image.getpixel(xy)  # type: ignore[return-value]


def _png_bytes(image: Image.Image, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kw)
    return buffer.getvalue()


def test_every_input_kind_gives_the_same_rgb(tmp_path: Path) -> None:
    reference = solid((200, 30, 10))
    path = tmp_path / "red.png"
    reference.save(path)
    bgr = np.full((6, 8, 3), (10, 30, 200), np.uint8)
    inputs = [str(path), path, reference, bgr, path.read_bytes(), bytearray(path.read_bytes())]
    for source in inputs:
        image = load_image(source)
        assert image.size == (8, 6)
        assert _pixel(image) == (200, 30, 10), type(source)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (solid((90,), "L"), (90, 90, 90)),
        (solid((255, 0, 0, 0), "RGBA"), (255, 255, 255)),  # fully transparent -> white
        (solid((255, 0, 0, 255), "RGBA"), (255, 0, 0)),
        (solid((0, 0, 255, 128), "RGBA"), (127, 127, 255)),  # half over white
        (solid((40, 0), "LA"), (255, 255, 255)),
        (solid((40, 255), "LA"), (40, 40, 40)),
        (solid((0, 255, 255, 0), "CMYK"), (255, 0, 0)),  # no cyan, full magenta+yellow = red
        (solid((1,), "1"), (255, 255, 255)),
    ],
    ids=["L", "RGBA-clear", "RGBA-opaque", "RGBA-half", "LA-clear", "LA-opaque", "CMYK", "1"],
)
def test_modes_convert_to_rgb(image: Image.Image, expected: tuple[int, int, int]) -> None:
    assert _pixel(load_image(image)) == pytest.approx(expected, abs=1)


def test_palette_with_transparency_becomes_white(tmp_path: Path) -> None:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    image.putpixel((0, 0), 0)
    path = tmp_path / "p.png"
    image.save(path, transparency=0)
    loaded = load_image(path)
    assert _pixel(loaded, (0, 0)) == (255, 255, 255)
    assert _pixel(loaded, (1, 1)) == (0, 200, 0)


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 32896, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    loaded = load_image(path)
    assert [loaded.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # 80x40 with a red block at the top-left; orientation 6 means "rotate 90 degrees clockwise".
    image = solid((0, 0, 0), size=(80, 40))
    image.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    upright = load_image(path)
    assert upright.size == (40, 80)
    rows, cols = np.nonzero(np.asarray(upright)[:, :, 0] > 128)
    assert rows.mean() < 20 and cols.mean() > 20  # the block is now at the top-right


def test_numpy_is_bgr_and_greyscale_and_bgra() -> None:
    assert _pixel(load_image(np.full((2, 2, 3), (255, 0, 0), np.uint8))) == (0, 0, 255)
    assert _pixel(load_image(np.full((2, 2), 77, np.uint8))) == (77, 77, 77)
    assert _pixel(load_image(np.full((2, 2, 4), (0, 0, 255, 0), np.uint8))) == (255, 255, 255)


def test_decoded_bytes_equal_file(tmp_path: Path) -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (9, 7, 3), np.uint8))
    data = _png_bytes(image)
    assert np.array_equal(np.asarray(load_image(data)), np.asarray(image))


def test_large_jpeg_draft_keeps_enough_pixels(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.new("RGB", (2000, 1200), (10, 200, 10)).save(path)
    drafted = load_image(path, draft_size=300)
    assert drafted.size == (500, 300)  # reduced by 4: both sides still >= 300
    assert load_image(path).size == (2000, 1200)


def test_unreadable_input_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("hello, not an image")
    with pytest.raises(ImageLoadError, match=r"notes\.jpg.*not an image file \(looks like text\)"):
        load_image(path)


def test_an_undecodable_tiff_shows_its_header_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "scan.tif"
    path.write_bytes(b"II*\x00" + bytes(range(200, 256)) * 4)  # a TIFF header, then nonsense
    with pytest.raises(ImageLoadError, match=r"scan\.tif.*starting b'II\*\\x00"):
        load_image(path)


def test_eps_named_jpg_never_starts_ghostscript(tmp_path: Path, fake_ghostscript) -> None:
    """Pillow picks a decoder by content, and its EPS decoder runs Ghostscript: refused."""
    canary, eps = fake_ghostscript
    (tmp_path / "holiday.jpg").write_bytes(eps.getvalue())
    for source in (tmp_path / "holiday.jpg", eps.getvalue()):
        with pytest.raises(ImageLoadError, match="not an image file"):
            load_image(source)
    assert not canary.exists()
    from autodistill_metaclip.inputs.sources import normalise_extensions

    assert ".eps" not in normalise_extensions(None) and ".jpg" in normalise_extensions(None)


PATCHED = """
import sys
import ultralytics.utils.patches  # replaces PIL.Image.open with one that may run pip
from autodistill_metaclip.inputs.images import load_image
events = []  # watched from here on: importing torch runs ldconfig by itself
sys.addaudithook(lambda event, args: events.append(event) if event in (
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.fork") else None)
try:
    load_image(sys.argv[1])
except ValueError as e:
    print(e)
print("events:", events)
"""


def test_a_replaced_image_open_is_not_used(tmp_path: Path) -> None:
    """ultralytics' Image.open runs pip for a file Pillow cannot identify; ours never calls it."""
    pytest.importorskip("ultralytics")
    (tmp_path / "notes.jpg").write_text("hello, not an image")
    done = subprocess.run(
        [sys.executable, "-c", PATCHED, str(tmp_path / "notes.jpg")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "not an image file (looks like text)" in done.stdout, done.stderr
    assert "events: []" in done.stdout

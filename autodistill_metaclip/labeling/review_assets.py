"""The review page's files: data chunks and thumbnail sheets, each named by a hash of what it
holds, written once and removed when the page no longer uses it.

They live in one folder of this tool (``<dataset>/.autodistill-metaclip/review/`` for the
dataset's own page). :class:`AssetFolder` writes a file only if no file of that name exists
(atomically), and :meth:`AssetFolder.prune` removes the files of its own name pattern that
the page written last does not use: plain files only, never through a symbolic link, nothing
else in the folder.

Thumbnails are JPEG sprite sheets of up to 100 cells (10 x 10, ``size`` pixels square), shown
with CSS ``background-position``. Measured against one JPEG per image, at 20,000 images of
64x64 pixels: a quarter of the disk (22 MB against 80 MB allocated), a third of the time to
write (3.0 s against 8.6 s), and a page of 60 cards shown in 85-130 ms against 210-230 ms in
Chromium. Each thumbnail is made once per image (``ident``: input folder, key and stamp) and
stays in its sheet while the image is in the dataset; ``thumbnails.json`` says which image is
in which cell. New thumbnails fill new sheets; a sheet whose images are mostly gone has its
remaining cells moved (cropped, not made again) into a new one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from PIL import Image

from autodistill_metaclip.errors import ImageLoadError
from autodistill_metaclip.inputs.files import (
    PARTIAL_PREFIX,
    UnreadableFile,
    atomic_write,
    read_capped,
)
from autodistill_metaclip.inputs.images import load_image
from autodistill_metaclip.inputs.sources import SourceFile

COLUMNS = 10
"""Cells per row of a thumbnail sheet."""
CELLS = COLUMNS * COLUMNS
"""Cells per thumbnail sheet."""
INDEX = "thumbnails.json"
"""Which image's thumbnail is in which cell of which sheet."""
BACKGROUND = (250, 250, 250)
"""The colour around a thumbnail that is not square."""
QUALITY = 70
MAX_INDEX_BYTES = 256 * 1024 * 1024
_NAME = re.compile(r"^[0-9a-f]{32}\.(js|jpg)$")
_LEFTOVER = re.compile(rf"^{re.escape(PARTIAL_PREFIX)}[0-9a-f]{{16}}-")
_WORKERS = min(4, os.cpu_count() or 1)

Cell = tuple[str, int]
"""Where a thumbnail is: its sheet's name (without ``.jpg``) and its cell number."""


def content_name(data: bytes) -> str:
    """The name of an asset holding ``data``: 32 hex digits of its SHA-256."""
    return hashlib.sha256(data).hexdigest()[:32]


class AssetFolder:
    """One folder of the review page's files.

    Attributes:
        path: The folder (it exists, and is not a link).
        written: The files written by this object, in order.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written: list[str] = []
        self._existing = {
            e.name
            for e in os.scandir(path)
            if _NAME.match(e.name) and e.is_file(follow_symlinks=False)
        }
        self._used: set[str] = set()

    def put(self, name: str, data: bytes) -> None:
        """Use the file ``name`` holding ``data``; written only if the folder has no such file
        (names are content hashes)."""
        self._used.add(name)
        if name not in self._existing:
            with atomic_write(self.path / name) as f:
                f.write(data)
            self._existing.add(name)
            self.written.append(name)

    def exists(self, name: str) -> bool:
        """Whether the folder holds the file ``name`` (a plain file)."""
        return name in self._existing

    def keep(self, name: str) -> None:
        """Use the existing file ``name``: :meth:`prune` leaves it."""
        self._used.add(name)

    def prune(self) -> list[str]:
        """Remove the files of this tool's name pattern that were not used, and temporary
        files a killed write left; returns their names."""
        removed = []
        for entry in os.scandir(self.path):
            unused = _NAME.match(entry.name) and entry.name not in self._used
            if (unused or _LEFTOVER.match(entry.name)) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(entry.name)
        self._existing -= set(removed)
        return removed


def place_thumbnails(
    folder: AssetFolder, wanted: dict[str, SourceFile | None], size: int
) -> dict[str, Cell]:
    """Have a thumbnail of every wanted image in a sheet of ``folder``.

    Args:
        folder: Where the sheets and their index are.
        wanted: What each image's thumbnail is made from, by its ident (``None``: it cannot be
            made); made only for an image that has none yet.
        size: The side of a cell, in pixels.

    Returns:
        The cell of each wanted image that has a thumbnail.
    """
    placed: dict[str, Cell] = {}
    moving: dict[str, Cell] = {}
    kept: dict[str, list[str]] = {}
    earlier, text = _read_index(folder, size)
    for name, idents in earlier.items():
        live = [(n, i) for n, i in enumerate(idents) if i in wanted and i not in placed]
        if not live or not folder.exists(f"{name}.jpg"):
            continue
        if 2 * len(live) >= len(idents):  # dense enough: kept as it is
            folder.keep(f"{name}.jpg")
            kept[name] = idents
            placed.update({ident: (name, n) for n, ident in live})
        else:
            moving.update({ident: (name, n) for n, ident in live if ident not in moving})
    todo: list[tuple[str, SourceFile | None, Cell | None]]
    todo = [(ident, wanted[ident], cell) for ident, cell in moving.items()]
    todo += [
        (ident, source, None)
        for ident, source in wanted.items()
        if source is not None and ident not in placed and ident not in moving
    ]
    batches = [todo[n : n + CELLS] for n in range(0, len(todo), CELLS)]
    with ThreadPoolExecutor(_WORKERS) as pool:
        for made in pool.map(partial(_sheet, folder.path, size), batches):
            if made is not None:
                name, idents, data = made
                folder.put(f"{name}.jpg", data)
                kept[name] = idents
                placed.update({ident: (name, n) for n, ident in enumerate(idents)})
    _write_index(folder, size, kept, text)
    return placed


def _read_index(folder: AssetFolder, size: int) -> tuple[dict[str, list[str]], str]:
    """The sheets an earlier write made at this ``size`` (``{}`` if none, or unreadable), and
    the index's text."""
    try:
        text = read_capped(folder.path / INDEX, MAX_INDEX_BYTES).decode("utf-8")
        index = json.loads(text)
    except (UnreadableFile, ValueError):
        return {}, ""
    sheets = index.get("sheets") if isinstance(index, dict) else None
    if not isinstance(sheets, dict) or index.get("size") != size:
        return {}, text
    return {
        name: [str(i) for i in idents]
        for name, idents in sheets.items()
        if isinstance(idents, list) and re.fullmatch("[0-9a-f]{32}", name)
    }, text


def _write_index(folder: AssetFolder, size: int, sheets: dict[str, list[str]], old: str) -> None:
    """Write the index if it changed."""
    text = json.dumps({"format": 1, "size": size, "sheets": dict(sorted(sheets.items()))})
    if text != old:
        with atomic_write(folder.path / INDEX, "w") as f:
            f.write(text)
        folder.written.append(INDEX)


def _sheet(
    root: Path, size: int, batch: Sequence[tuple[str, SourceFile | None, Cell | None]]
) -> tuple[str, list[str], bytes] | None:
    """One sheet of the thumbnails of ``batch`` that can be had: ``(name, idents, JPEG)``."""
    cells: list[tuple[str, Image.Image]] = []
    sheets: dict[str, Image.Image | None] = {}
    for ident, source, earlier in batch:
        cell = _moved(root, size, earlier, sheets) if earlier is not None else None
        if cell is None and source is not None:
            cell = _thumbnail(source, size)
        if cell is not None:
            cells.append((ident, cell))
    if not cells:
        return None
    rows = -(-len(cells) // COLUMNS)
    sheet = Image.new("RGB", (COLUMNS * size, rows * size), BACKGROUND)
    for n, (_, cell) in enumerate(cells):
        sheet.paste(cell, (n % COLUMNS * size, n // COLUMNS * size))
    idents = [ident for ident, _ in cells]
    buffer = io.BytesIO()
    sheet.save(buffer, "JPEG", quality=QUALITY)
    return content_name("\n".join([str(size), *idents]).encode()), idents, buffer.getvalue()


def _thumbnail(source: SourceFile, size: int) -> Image.Image | None:
    """A cell with the image's thumbnail, centred (``None`` if it cannot be read)."""
    try:
        picture = load_image(source, draft_size=size)
    except (ImageLoadError, OSError):
        return None
    picture.thumbnail((size, size))
    cell = Image.new("RGB", (size, size), BACKGROUND)
    cell.paste(picture, ((size - picture.width) // 2, (size - picture.height) // 2))
    return cell


def _moved(
    root: Path, size: int, earlier: Cell, sheets: dict[str, Image.Image | None]
) -> Image.Image | None:
    """A cell cropped from an earlier sheet (each sheet read once per batch)."""
    name, n = earlier
    if name not in sheets:
        path = str(root / f"{name}.jpg")
        try:
            sheets[name] = load_image(SourceFile(name, path, "", os.path.realpath(root)))
        except (ImageLoadError, OSError):
            sheets[name] = None
    sheet = sheets[name]
    x, y = n % COLUMNS * size, n // COLUMNS * size
    if sheet is None or sheet.width < x + size or sheet.height < y + size:
        return None
    return sheet.crop((x, y, x + size, y + size))

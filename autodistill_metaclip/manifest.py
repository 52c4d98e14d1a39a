"""The manifest: one row per input file, UTF-8 CSV that programs and spreadsheets both read.

Columns (:data:`COLUMNS`): ``image`` (the key: the path relative to the input folder, a name
that is not valid UTF-8 escaped by :func:`autodistill_metaclip.sources.escape_key`),
``status`` (:data:`STATUSES`), ``class``, ``confidence``, ``split``, ``error``, ``stamp``
(size and modification time), ``top`` (the model's top 3, JSON ``[[class, p], ...]``) and
``decided`` (:data:`DECISIONS`: empty, ``human`` or ``excluded``).

A cell a spreadsheet would evaluate as a formula (starting with ``= + - @``, tab or carriage
return), or starting with ``'``, is written with a leading ``'``; :func:`read_manifest` removes
it again, so the rows read back are the rows written.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

from autodistill_metaclip.files import atomic_write, read_file

MANIFEST = "manifest.csv"
COLUMNS = ("image", "status", "class", "confidence", "split", "error", "stamp", "top", "decided")
STATUSES = ("labeled", "unlabeled", "failed")
DECISIONS = ("", "human", "excluded")
"""``decided``: the model's class; a human's class (``apply_corrections``); left out by one."""
MAX_MANIFEST_BYTES = 1 << 30
"""Largest manifest read back (about ten million rows)."""
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def append_rows(path: Path, rows: Iterable[dict[str, str]]) -> None:
    """Append rows (never through a link); a row torn by a crash is ended, not merged."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    with open(os.open(path, flags, 0o666), "a", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        if f.tell() == 0:
            writer.writeheader()
        elif _ends_without_newline(path):
            f.write("\r\n")  # the torn row is invalid on reading: it is redone
        writer.writerows(map(_neutralised, rows))


def write_rows(path: Path, rows: Iterable[dict[str, str]]) -> None:
    """Write the whole manifest, atomically."""
    with atomic_write(path, "w") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(map(_neutralised, rows))


def valid_row(row: dict[str, str], classes: set[str], splits_: set[str]) -> bool:
    """Whether a manifest row read back is whole and consistent (else it is redone)."""
    if row["status"] not in STATUSES or not row["stamp"] or row["split"] not in splits_:
        return False
    if row["decided"] not in DECISIONS or (row["decided"] and row["status"] != "labeled"):
        return False
    try:
        top_classes(row)
    except (ValueError, TypeError, IndexError):
        return False
    if row["status"] == "failed":
        return bool(row["error"])
    try:
        probability = float(row["confidence"])
    except ValueError:
        return False
    return row["class"] in classes and math.isfinite(probability) and 0 <= probability <= 1


def read_manifest(path: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """A manifest's rows by image key, cells as written before neutralising ({} if none).

    Raises:
        ValueError: The manifest is not a regular file, is too large, or is not UTF-8 CSV.
    """
    if not os.path.lexists(path):
        return {}
    data = read_file(path, MAX_MANIFEST_BYTES, "manifest")
    try:
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"manifest: {os.fspath(path)!r} is not UTF-8 CSV ({e})") from e
    restored = [{c: _restored(r.get(c) or "") for c in COLUMNS} for r in rows]
    return {r["image"]: r for r in restored if r["image"]}


def model_class(row: dict[str, str]) -> str:
    """The class the model predicted for a manifest row (``class`` may be a human's)."""
    top = top_classes(row)
    return top[0][0] if top else row["class"]


def top_classes(row: dict[str, str]) -> list[tuple[str, float]]:
    """The model's most probable classes of a manifest row, with their probabilities."""
    return [(str(c), float(p)) for c, p in json.loads(row["top"])] if row["top"] else []


def _neutralised(row: dict[str, str]) -> dict[str, str]:
    """A row whose cells no spreadsheet evaluates: ``'`` before a risky first character."""
    return {c: f"'{v}" if v.startswith(_FORMULA_START) else v for c, v in row.items()}


def _restored(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


def _ends_without_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"

"""The manifest: one row per input file, UTF-8 CSV that programs and spreadsheets both read.

Columns (:data:`COLUMNS`): ``image`` (the key: the path relative to the input folder, a name
that is not valid UTF-8 escaped by :func:`autodistill_metaclip.inputs.sources.escape_key`),
``status`` (:data:`STATUSES`), ``class``, ``confidence``, ``split``, ``error``, ``stamp``
(size and modification time), ``top`` (the model's top 3, JSON ``[[class, p], ...]``) and
``decided`` (:class:`Decision`: empty, ``human`` or ``excluded``).

A cell a spreadsheet would evaluate as a formula (starting with ``= + - @``, tab or carriage
return), or starting with ``'``, is written with a leading ``'``; :func:`read_manifest` removes
it again, so the rows read back are the rows written.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from autodistill_metaclip.inputs.files import append_csv, atomic_write, read_file
from autodistill_metaclip.results import Prediction, Status

MANIFEST = "manifest.csv"
COLUMNS = ("image", "status", "class", "confidence", "split", "error", "stamp", "top", "decided")
STATUSES = (Status.LABELED, Status.UNLABELED, Status.FAILED)
"""The statuses a manifest row can have."""
TOP = 3
"""How many of the model's most probable classes the ``top`` column keeps."""
MAX_MANIFEST_BYTES = 1 << 30
"""Largest manifest read back (about ten million rows)."""
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


class Decision(str, enum.Enum):
    """The manifest's ``decided`` column: who decided the row's class."""

    MODEL = ""
    """The model's class."""
    HUMAN = "human"
    """A human's class (``apply_corrections``)."""
    EXCLUDED = "excluded"
    """Left out of the dataset by a human; the row stays."""

    def __str__(self) -> str:
        return self.value


_DECISIONS = frozenset(Decision)


def new_row(key: str, stamp: str, **cells: Any) -> dict[str, str]:
    """A manifest row of one input: its key and stamp, and the cells a result decided
    (``status``, ``class``, ``confidence``, ``error``, ``top``; the others start empty)."""
    row = dict.fromkeys(COLUMNS, "")
    row.update({name: str(value) for name, value in cells.items()}, image=key, stamp=stamp)
    return row


def prediction_cells(prediction: Prediction) -> dict[str, str]:
    """The cells a prediction decides: status, class, confidence, error and the top classes
    (``label()`` and Ray's workers both write them)."""
    if prediction.error is not None:
        return {"status": str(Status.FAILED), "class": "", "confidence": "", "top": "",
                "error": str(prediction.error)}  # fmt: skip
    name, probability = prediction.best
    top = [[c, round(p, 6)] for c, p in prediction.top(TOP)]
    return {
        "status": str(prediction.status),
        "class": name,
        "confidence": f"{probability:.6f}",
        "top": json.dumps(top),
        "error": "",
    }


def append_rows(path: Path, rows: Iterable[dict[str, str]]) -> None:
    """Append rows (never through a link); a row torn by a crash is ended, not merged."""
    append_csv(path, COLUMNS, [[cell[c] for c in COLUMNS] for cell in map(_neutralised, rows)])


def write_rows(path: Path, rows: Iterable[dict[str, str]]) -> None:
    """Write the whole manifest, atomically."""
    with atomic_write(path, "w") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(map(_neutralised, rows))


def valid_row(row: dict[str, str], classes: set[str], splits: set[str]) -> bool:
    """Whether a manifest row read back is whole and consistent (else it is redone)."""
    if row["status"] not in STATUSES or not row["stamp"] or row["split"] not in splits:
        return False
    if row["decided"] not in _DECISIONS or (row["decided"] and row["status"] != Status.LABELED):
        return False
    try:
        top_classes(row)
    except (ValueError, TypeError, IndexError):
        return False
    if row["status"] == Status.FAILED:
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
    restored = [
        {c: v[1:] if (v := r.get(c) or "").startswith("'") else v for c in COLUMNS} for r in rows
    ]
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

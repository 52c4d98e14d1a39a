"""Near-duplicates as an action: keep one image of each group, move the others aside.

The one kept (the representative) is the **largest file**, usually the one with the most
pixels and the least compression; on a tie the **oldest** (earliest modification time), then
the first path in sorted order. The stamps the index recorded decide it: no file is read.

The others are **moved, never deleted**, into a folder you name, under their paths relative to
the indexed folder, and ``moves.csv`` there lists every move (``from,to,outcome``) to undo it.
It is a dry run unless ``apply=True``. A file that changed since it was indexed, or whose
destination exists, is skipped and says so.

Example:
    >>> groups = plan(index, threshold=0.97)  # doctest: +SKIP
    >>> move_duplicates(index, groups, "duplicates/", apply=True)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from autodistill_metaclip import sources
from autodistill_metaclip.files import atomic_write

if TYPE_CHECKING:
    from autodistill_metaclip.index import EmbeddingIndex

MOVES_FILE = "moves.csv"


@dataclass(frozen=True)
class DuplicateGroup:
    """One group of near-duplicates: the key kept, and the keys to move aside."""

    keep: str
    move: list[str]


@dataclass(frozen=True)
class Move:
    """One planned or done move, and what happened (``moved``, ``dry run``, ``skipped: ...``)."""

    source: Path
    destination: Path
    outcome: str


def plan(index: EmbeddingIndex, threshold: float = 0.95) -> list[DuplicateGroup]:
    """The near-duplicate groups of ``index`` with the representative each keeps."""
    stamps = dict(zip(index.keys, index.stamps, strict=True))

    def rank(key: str) -> tuple[int, int, str]:
        size, _, changed = stamps[key].partition(":")
        return (-_number(size), _number(changed), key)

    groups = []
    for keys in index.duplicate_keys(threshold):
        ordered = sorted(keys, key=rank)
        groups.append(DuplicateGroup(ordered[0], ordered[1:]))
    return groups


def move_duplicates(
    index: EmbeddingIndex,
    groups: list[DuplicateGroup],
    destination: str | os.PathLike[str],
    *,
    apply: bool = False,
) -> list[Move]:
    """Move every non-representative of ``groups`` under ``destination`` (a dry run unless
    ``apply``); returns each move with its outcome, also written to ``destination/moves.csv``.

    Raises:
        ValueError: The index is of a URI (only local folders are moved), or ``destination`` is
            inside the indexed folder (it would be indexed and found again).
    """
    root = sources.local_path(index.root)
    if root is None:
        raise ValueError(f"index: only a local folder's files can be moved, not {index.root!r}")
    target = Path(destination)
    if Path(os.path.realpath(target)).is_relative_to(os.path.realpath(root)):
        raise ValueError(f"destination: {str(target)!r} must not be inside {root!r}")
    stamps = dict(zip(index.keys, index.stamps, strict=True))
    moves = []
    for group in groups:
        for key in group.move:
            name = sources.unescape_key(key)
            move = Move(Path(root) / name, target / name, "dry run")
            if apply:
                move = Move(move.source, move.destination, _move(move, stamps[key]))
            moves.append(move)
    if apply and moves:
        target.mkdir(parents=True, exist_ok=True)
        with atomic_write(target / MOVES_FILE, "w") as f:
            writer = csv.writer(f)
            writer.writerow(["from", "to", "outcome"])
            writer.writerows([str(m.source), str(m.destination), m.outcome] for m in moves)
    return moves


def _move(move: Move, stamp: str) -> str:
    """Move one file (a rename, or copy then remove across filesystems); the outcome."""
    try:
        info = os.lstat(move.source)
    except OSError as e:
        return f"skipped: {e.strerror}"
    if f"{info.st_size}:{info.st_mtime_ns}" != stamp:
        return "skipped: changed since it was indexed"
    if os.path.lexists(move.destination):
        return "skipped: the destination exists"
    move.destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(move.source, move.destination)
    except OSError as e:
        if e.errno != errno.EXDEV:
            return f"skipped: {e.strerror}"
        with open(move.source, "rb") as source, atomic_write(move.destination) as copy:
            shutil.copyfileobj(source, copy)
        shutil.copystat(move.source, move.destination)
        os.unlink(move.source)
    return "moved"


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0

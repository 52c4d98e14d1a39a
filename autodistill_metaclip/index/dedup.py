"""Near-duplicates as an action: keep one image of each group, move the others aside.

The one kept (the representative) is the **largest file**, usually the one with the most
pixels and the least compression; on a tie the **oldest** (earliest modification time), then
the first path in sorted order. The stamps the index recorded decide it: no file is read.

The others are **moved, never deleted**, into a folder you name, under their paths relative to
the indexed folder, and ``moves.csv`` there lists every move (``from,to,outcome``) to undo it.
It is a dry run unless ``apply=True``. A file that changed since it was indexed, or whose
destination exists, is skipped and says so.

Examples:
    >>> groups = plan(index, threshold=0.97)  # doctest: +SKIP
    >>> move_duplicates(index, groups, "duplicates/", apply=True)  # doctest: +SKIP
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from autodistill_metaclip.errors import ArgumentError
from autodistill_metaclip.inputs import sources
from autodistill_metaclip.inputs.files import append_csv, atomic_write, make_folders

if TYPE_CHECKING:
    from autodistill_metaclip.index.core import EmbeddingIndex

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
    ``apply``); returns each move with its outcome. Applied moves are appended to
    ``destination/moves.csv`` one by one, as they happen.

    Skipped, with the reason: a group whose kept file changed or is gone since it was indexed;
    a symbolic link, or a file that is the kept one through a link; a file that changed since
    it was indexed; a path that leads out of the indexed folder; a destination that exists.

    Raises:
        ValueError: The index is of a URI (only local folders are moved), or ``destination`` is
            inside the indexed folder (it would be indexed and found again).
    """
    root = sources.local_path(index.root)
    if root is None:
        raise ArgumentError(
            "index", f"only a local folder's files can be moved, not {index.root!r}"
        )
    real_root, target = os.path.realpath(root), Path(destination)
    if Path(os.path.realpath(target)).is_relative_to(real_root):
        raise ArgumentError("destination", f"{str(target)!r} must not be inside {root!r}")
    stamps = dict(zip(index.keys, index.stamps, strict=True))
    if apply and any(group.move for group in groups):
        target.mkdir(parents=True, exist_ok=True)
    moves = []
    for group in groups:
        kept = Path(root) / sources.unescape_key(group.keep)
        kept_problem = _problem(kept, stamps[group.keep], real_root)
        for key in group.move:
            name = sources.unescape_key(key)
            move = Move(Path(root) / name, target / name, "dry run")
            if kept_problem:
                move = Move(move.source, move.destination, f"skipped: the kept file {kept_problem}")
            elif apply:
                outcome = _move(move, stamps[key], kept, real_root, target)
                move = Move(move.source, move.destination, outcome)
                _log(target, move)
            moves.append(move)
    return moves


def _problem(path: Path, stamp: str, real_root: str) -> str:
    """Why ``path`` is not the file the index saw, inside the indexed folder; or ``""``."""
    try:
        info = os.lstat(path)
    except OSError as e:
        return f"is unreadable ({e.strerror})"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not Path(os.path.realpath(path)).is_relative_to(real_root):
        return "is outside the indexed folder"
    if sources.stamp(info) != stamp:
        return "changed since it was indexed"
    return ""


def _move(move: Move, stamp: str, kept: Path, real_root: str, target: Path) -> str:
    """Move one file without ever replacing one (a hard link, then the source removed; a copy
    across filesystems); the outcome."""
    problem = _problem(move.source, stamp, real_root)
    if not problem and os.path.samefile(move.source, kept):
        problem = "is the kept file"
    if problem:
        return f"skipped: it {problem}"
    relative = move.destination.relative_to(target)
    if ".." in relative.parts:
        return "skipped: it leads out of the destination"
    try:
        make_folders(target, str(relative.parent))
        try:
            os.link(move.source, move.destination)  # fails if the destination exists
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            if os.path.lexists(move.destination):
                raise FileExistsError(move.destination) from None
            with open(move.source, "rb") as source, atomic_write(move.destination) as copy:
                shutil.copyfileobj(source, copy)
        os.unlink(move.source)
    except FileExistsError:
        return "skipped: the destination exists"
    except OSError as e:
        return f"skipped: {e.strerror or e}"
    return "moved"


def _log(target: Path, move: Move) -> None:
    """Append one move to ``target/moves.csv`` (never through a link), names escaped."""
    row = [sources.escape_key(os.path.abspath(p)) for p in (move.source, move.destination)]
    append_csv(target / MOVES_FILE, ("from", "to", "outcome"), [[*row, move.outcome]])


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0

"""Near-duplicates as an action: keep one image of each group, move the others aside.

The one kept (the representative) is the **largest file**, usually the one with the most
pixels and the least compression; on a tie the **oldest** (earliest modification time), then
the first path in sorted order. The stamps the index recorded decide it: no file is read.

The others are **moved, never deleted**, into a folder you name, under their paths relative to
the indexed folder, and ``moves.csv`` there lists every move (``from,to,outcome``) to undo it.
It is a dry run unless ``apply=True``, and applying needs ``folder``: the folder the index was
built from, named by you, since an index file (and the root it records) may come from anyone.

Every move is made relative to directory descriptors, opened one path component at a time from
``folder`` down without following a link (the same below the destination), so a folder on the
way swapped for a symbolic link is refused, never followed out. The file moved is the one whose
identity (device and inode) and stamp were checked through its own descriptor, and its name is
removed only once its bytes are at the destination: a hard link in place, or across filesystems
a copy written, flushed to disk and read back. A file that changed since it was indexed, a
link, a path out of the folder or a destination that exists is a skipped row that says why; no
row ends the run. (Within one folder, a file renamed over the moved one between the last check
and the removal of its name would lose that name; that needs write access to the indexed folder
itself, and never reaches outside it.)

Examples:
    >>> groups = plan(index, threshold=0.97)  # doctest: +SKIP
    >>> move_duplicates(
    ...     index, groups, "duplicates/", apply=True, folder="photos/"
    ... )  # doctest: +SKIP
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from autodistill_metaclip.errors import ArgumentError
from autodistill_metaclip.inputs import sources
from autodistill_metaclip.inputs.files import OPEN_NO_WAIT, append_csv, partial_name

if TYPE_CHECKING:
    from autodistill_metaclip.index.core import EmbeddingIndex

MOVES_FILE = "moves.csv"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_FOLDER = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
_FILE = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | OPEN_NO_WAIT
_CHUNK = 1 << 20
_SUPPORTED = {os.open, os.link, os.mkdir, os.stat, os.unlink} <= os.supports_dir_fd


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


class _Skip(Exception):
    """One file is not moved: the reason, as the row's outcome shows it."""


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


def indexed_folder(index: EmbeddingIndex, folder: str | os.PathLike[str] | None) -> Path:
    """The folder whose files ``index`` lists, as the caller names it: ``folder``, which must be
    the folder the index was built from (its recorded root, the same folder on disk); without
    ``folder`` the recorded root.

    Raises:
        ArgumentError: The index is of a URI (only local folders are moved), or ``folder`` is
            not the folder the index was built from.
    """
    root = sources.local_path(index.root)
    if root is None:
        raise ArgumentError(
            "index", f"only a local folder's files can be moved, not {index.root!r}"
        )
    if folder is None:
        return Path(root)
    try:
        same = os.path.samefile(folder, root)
    except OSError as e:
        raise ArgumentError(
            "folder", f"expected the folder the index was built from, {root!r}, but "
            f"{os.fspath(folder)!r} cannot be compared with it ({e.strerror or e})"
        ) from None  # fmt: skip
    if not same:
        raise ArgumentError(
            "folder",
            f"expected the folder the index was built from, {root!r}, but got "
            f"{os.fspath(folder)!r}; files are moved only inside the folder you name",
        )
    return Path(folder)


def move_duplicates(
    index: EmbeddingIndex,
    groups: list[DuplicateGroup],
    destination: str | os.PathLike[str],
    *,
    apply: bool = False,
    folder: str | os.PathLike[str] | None = None,
) -> list[Move]:
    """Move every non-representative of ``groups`` under ``destination`` (a dry run unless
    ``apply``); returns each move with its outcome. Applied moves are appended to
    ``destination/moves.csv`` one by one, as they happen.

    Args:
        index: The index the groups come from.
        groups: From :func:`plan`.
        destination: Where the moved files go, under their paths relative to ``folder``.
        apply: Really move them; without it nothing changes.
        folder: The folder the index was built from, named by you (required with ``apply``):
            nothing outside it is moved, whatever root the index records.

    Skipped, with the reason: a group whose kept file changed or is gone since it was indexed;
    a symbolic link, or a path through one; a file that is the kept one (a hard link of it); a
    file that changed since it was indexed, or was replaced during its move; a path that leads
    out of the indexed folder; a destination that exists; a file that cannot be read or placed.

    Raises:
        ValueError: The index is of a URI (only local folders are moved), ``apply`` without
            ``folder``, ``folder`` is not the folder the index was built from, or
            ``destination`` is inside it (it would be indexed and found again).
    """
    if not _SUPPORTED:
        raise ArgumentError(
            "index", "moving files safely needs directory descriptors (Linux, macOS, BSD)"
        )
    if apply and folder is None:
        raise ArgumentError(
            "folder",
            "expected the folder the index was built from (files are moved only inside a "
            "folder you name, never where an index file says), but got none",
        )
    base, target = indexed_folder(index, folder), Path(destination)
    if Path(os.path.realpath(target)).is_relative_to(os.path.realpath(base)):
        raise ArgumentError("destination", f"{str(target)!r} must not be inside {str(base)!r}")
    stamps = dict(zip(index.keys, index.stamps, strict=True))
    moves = []
    with ExitStack() as stack:
        try:
            source_root = _open_root(base, stack)
            recorded = str(sources.local_path(index.root))  # local: checked above
            same = os.path.samestat(os.fstat(source_root), os.stat(recorded))
        except OSError as e:
            raise ArgumentError(
                "folder" if folder is not None else "index",
                f"the indexed folder {str(base)!r} cannot be opened ({e.strerror or e})",
            ) from None
        if not same:  # replaced since it was compared
            raise ArgumentError("folder", f"{str(base)!r} was replaced by another folder")
        target_root = -1
        if apply and any(group.move for group in groups):
            target.mkdir(parents=True, exist_ok=True)
            target_root = _open_root(target, stack)
        for group in groups:
            kept_problem, kept = _kept(source_root, group.keep, stamps.get(group.keep))
            for key in group.move:
                name = sources.unescape_key(key)
                move = Move(base / name, target / name.lstrip("/"), "dry run")
                if kept_problem:
                    outcome = f"skipped: the kept file {kept_problem}"
                elif apply:
                    outcome = _move(source_root, target_root, key, stamps.get(key), kept)
                else:
                    outcome = move.outcome
                move = Move(move.source, move.destination, outcome)
                if apply:
                    _log(target, move)
                moves.append(move)
    return moves


def _open_root(folder: Path, stack: ExitStack) -> int:
    """A descriptor of ``folder`` (a path the caller named: a link to it is followed), closed
    with ``stack``."""
    descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
    stack.callback(os.close, descriptor)
    return descriptor


def _parts(key: str) -> list[str]:
    """The path components of a key, refusing one that leads out of the folder."""
    name = sources.unescape_key(key)
    parts = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise _Skip("is outside the indexed folder")
    return parts


def _walk(root: int, parts: list[str], stack: ExitStack, *, create: bool = False) -> int:
    """A descriptor of the folder ``root/parts...``, opened one component at a time without
    following a link (``create``: making the missing ones), closed with ``stack``."""
    folder = root
    for part in parts:
        if create:
            try:
                os.mkdir(part, 0o777, dir_fd=folder)
            except FileExistsError:
                pass
        folder = os.open(part, _FOLDER, dir_fd=folder)
        stack.callback(os.close, folder)
    return folder


def _open_file(root: int, parts: list[str], stamp: str | None, stack: ExitStack) -> tuple[int, int]:
    """``(its folder, the file)`` as descriptors, checked to be the regular file the index saw
    (``stamp``; ``None``: a key the index does not hold).

    Raises:
        _Skip: Why it is not.
    """
    if stamp is None:
        raise _Skip("is not in the index")
    try:
        folder = _walk(root, parts[:-1], stack)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _Skip("is under a symbolic link or a file, not a folder") from None
        raise _Skip(f"is unreadable ({e.strerror or e})") from None
    try:
        file = os.open(parts[-1], _FILE, dir_fd=folder)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _Skip("is a symbolic link") from None
        raise _Skip(f"is unreadable ({e.strerror or e})") from None
    stack.callback(os.close, file)
    info = os.fstat(file)
    if not stat.S_ISREG(info.st_mode):
        raise _Skip("is not a regular file")
    if sources.stamp(info) != stamp:
        raise _Skip("changed since it was indexed")
    return folder, file


def _kept(root: int, key: str, stamp: str | None) -> tuple[str, tuple[int, int] | None]:
    """Why the kept file of a group is not the one indexed (or ``""``), and its identity."""
    with ExitStack() as stack:
        try:
            _, file = _open_file(root, _parts(key), stamp, stack)
        except _Skip as e:
            return str(e), None
        except (OSError, ValueError) as e:
            return f"is unreadable ({getattr(e, 'strerror', None) or e})", None
        info = os.fstat(file)
        return "", (info.st_dev, info.st_ino)


def _move(
    source_root: int, target_root: int, key: str, stamp: str | None, kept: tuple[int, int] | None
) -> str:
    """Move one file (see the module's description); the outcome, never an exception."""
    with ExitStack() as stack:
        try:
            parts = _parts(key)
            folder, file = _open_file(source_root, parts, stamp, stack)
            info = os.fstat(file)
            if (info.st_dev, info.st_ino) == kept:
                raise _Skip("is the kept file")
            try:
                target = _walk(target_root, parts[:-1], stack, create=True)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EEXIST):
                    return "skipped: a folder of its destination is a link or a file"
                raise
            _place(folder, target, parts[-1], file, info)
            os.fsync(target)
            now = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
            if not _same(now, info):
                return "skipped: it changed or was replaced during its move; a copy is kept"
            os.unlink(parts[-1], dir_fd=folder)
        except _Skip as e:
            return f"skipped: it {e}"
        except FileExistsError:
            return "skipped: the destination exists"
        except (OSError, ValueError) as e:
            return f"skipped: {getattr(e, 'strerror', None) or e}"
    return "moved"


def _place(folder: int, target: int, name: str, file: int, info: os.stat_result) -> None:
    """Put the open ``file`` (``name`` in ``folder``) at ``name`` in ``target``, never replacing
    a file there: a hard link, checked to be that file; across filesystems a verified copy.

    Raises:
        FileExistsError: The destination exists.
        _Skip: The name was replaced by another file after it was opened.
    """
    try:
        os.link(name, name, src_dir_fd=folder, dst_dir_fd=target, follow_symlinks=False)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        _copy(file, info, target, name)
        return
    if not _same(os.stat(name, dir_fd=target, follow_symlinks=False), info):
        os.unlink(name, dir_fd=target)  # our new link to another file of the folder: undone
        raise _Skip("changed or was replaced during its move")


def _copy(file: int, info: os.stat_result, target: int, name: str) -> None:
    """Copy the open ``file`` to ``name`` in ``target`` (another filesystem): written beside it,
    flushed to disk, read back and compared, then linked into place (never replacing a file),
    with the source's permissions and times.

    Raises:
        FileExistsError: The destination exists.
        _Skip: The source changed while it was copied, or the copy reads back otherwise.
    """
    temporary = partial_name(name)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    copy = os.open(temporary, flags, 0o600, dir_fd=target)
    try:
        written, offset = hashlib.sha256(), 0
        while chunk := os.pread(file, _CHUNK, offset):
            written.update(chunk)
            offset += len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(copy, view) :]
        os.fchmod(copy, stat.S_IMODE(info.st_mode))
        os.utime(copy, ns=(info.st_atime_ns, info.st_mtime_ns))
        os.fsync(copy)
        if sources.stamp(os.fstat(file)) != sources.stamp(info) or offset != info.st_size:
            raise _Skip("changed while it was copied")
        read, offset = hashlib.sha256(), 0
        while chunk := os.pread(copy, _CHUNK, offset):
            read.update(chunk)
            offset += len(chunk)
        if read.digest() != written.digest():
            raise _Skip("was not copied intact")
        os.link(temporary, name, src_dir_fd=target, dst_dir_fd=target, follow_symlinks=False)
    finally:
        os.close(copy)
        os.unlink(temporary, dir_fd=target)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    """The same regular file, unchanged: device, inode and stamp."""
    return (
        stat.S_ISREG(a.st_mode)
        and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
        and sources.stamp(a) == sources.stamp(b)
    )


def _log(target: Path, move: Move) -> None:
    """Append one move to ``target/moves.csv`` (never through a link), names escaped."""
    row = [sources.escape_key(os.path.abspath(p)) for p in (move.source, move.destination)]
    append_csv(target / MOVES_FILE, ("from", "to", "outcome"), [[*row, move.outcome]])


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0

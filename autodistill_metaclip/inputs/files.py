"""Files read and written safely.

Every file this package writes appears whole or not at all (a temporary file beside it, then one
rename), or is appended to (a log), never through a symbolic link. Every file it reads (image,
ontology, model config, index, manifest) goes through one capped reader: it must be a regular
file, and is read with a size cap, so a FIFO, ``/dev/zero`` or a huge file is an error, not a
hang or a ``MemoryError``.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import secrets
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

from autodistill_metaclip.errors import ArgumentError

OPEN_NO_WAIT = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
"""Flags that open a FIFO or device without waiting on it (then refused by ``fstat``)."""
PARTIAL_PREFIX = ".partial-"
"""Temporary files start with this, in the target's folder, until renamed into place."""
NAME_MAX = 255
"""The longest file name, in bytes, on the usual filesystems (ext4, XFS, APFS, NTFS...)."""


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    On any error (or interruption) the temporary file is removed and an earlier file at
    ``path`` is left as it was. The new file gets the usual permissions (0666 less the umask),
    as ``open`` would give it.

    Examples:
        >>> with atomic_write("out.csv", "w") as f:  # doctest: +SKIP
        ...     f.write("a,b\\n")
    """
    target = Path(path)
    temporary = target.with_name(partial_name(target.name))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(temporary, flags, 0o666)
    try:
        text = "b" not in mode
        with os.fdopen(
            descriptor, mode, encoding="utf-8" if text else None, newline="" if text else None
        ) as file:
            yield file
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def partial_name(name: str) -> str:
    """The name of a temporary file for ``name``: ``.partial-<16 hex>-<name>``, the name cut
    (at a byte) so that the whole stays within :data:`NAME_MAX` bytes.

    Examples:
        >>> len(os.fsencode(partial_name("a" * 250 + ".png")))
        255
    """
    head = f"{PARTIAL_PREFIX}{secrets.token_hex(8)}-"
    room = NAME_MAX - len(head)
    return head + os.fsdecode(os.fsencode(name)[:room])


class UnreadableFile(OSError):
    """A file the capped reader refuses; ``problem`` says why, in words."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def open_capped(
    path: str | os.PathLike[str], limit: int, *, within: str | None = None
) -> tuple[BinaryIO, int]:
    """Open a regular file of at most ``limit`` bytes for reading: ``(file, size)``.

    A FIFO or device is refused without being read or waited on. With ``within`` (a real
    folder path), the file opened must be inside it: a link that leads out, or a path swapped
    between opening it and checking it, is refused.

    Raises:
        UnreadableFile: Missing, a broken link or a loop, not a regular file, outside
            ``within``, or over ``limit``; ``problem`` says which.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | OPEN_NO_WAIT)
    except FileNotFoundError:
        broken = os.path.islink(path)
        raise UnreadableFile("broken symlink" if broken else "file not found") from None
    except OSError as e:
        loop = e.errno == errno.ELOOP
        raise UnreadableFile("symlink loop" if loop else e.strerror or str(e)) from None
    try:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise UnreadableFile("is a directory, not a regular file")
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile("is not a regular file")
        if within is not None:
            _check_inside(os.fspath(path), info, within)
        if info.st_size > limit:
            raise UnreadableFile(f"is larger than {limit} bytes")
    except BaseException:
        os.close(descriptor)
        raise
    file = os.fdopen(descriptor, "rb")
    return file, info.st_size


def read_capped(path: str | os.PathLike[str], limit: int, *, within: str | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (see :func:`open_capped`)."""
    file, _ = open_capped(path, limit, within=within)
    with file:
        try:
            data = file.read(limit + 1)
        except OSError as e:
            raise UnreadableFile(f"cannot be read ({e.strerror or e})") from None
    if len(data) > limit:  # grew while being read
        raise UnreadableFile(f"is larger than {limit} bytes")
    return data


def open_file(path: str | os.PathLike[str], limit: int, name: str) -> BinaryIO:
    """:func:`open_capped` for a file named by argument ``name``.

    Raises:
        ArgumentError: Naming ``name`` and the path, and the problem.
    """
    try:
        return open_capped(path, limit)[0]
    except UnreadableFile as e:
        raise ArgumentError(name, f"{os.fspath(path)!r} {_as_clause(e.problem)}") from None


def read_file(path: str | os.PathLike[str], limit: int, name: str) -> bytes:
    """:func:`read_capped` for a file named by argument ``name`` (see :func:`open_file`)."""
    try:
        return read_capped(path, limit)
    except UnreadableFile as e:
        raise ArgumentError(name, f"{os.fspath(path)!r} {_as_clause(e.problem)}") from None


def append_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Append CSV rows to ``path``, never through a link; a new file gets ``header`` first, and
    a last row torn by a crash is ended (its cells are then invalid), never merged."""
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    with open(os.open(path, flags, 0o666), "a+b") as binary:
        size = binary.seek(0, os.SEEK_END)
        torn = False
        if size:
            binary.seek(size - 1)
            torn = binary.read(1) != b"\n"
        with io.TextIOWrapper(binary, encoding="utf-8", newline="") as text:
            writer = csv.writer(text)
            if not size:
                writer.writerow(header)
            elif torn:
                text.write("\r\n")
            writer.writerows(rows)


def _as_clause(problem: str) -> str:
    """``"file not found"`` -> ``"cannot be read (file not found)"``; verbs stay as they are."""
    return problem if problem.startswith(("is ", "cannot ")) else f"cannot be read ({problem})"


def _check_inside(path: str, opened: os.stat_result, within: str) -> None:
    """Refuse an open file that is not ``path``'s real file inside ``within``."""
    real = os.path.realpath(path)
    if os.path.commonpath([real, within]) != within:
        raise UnreadableFile(
            "a symbolic link to a file outside the input folder; not followed "
            "(follow_links=True, or --follow-links, follows links anywhere)"
        )
    try:
        now = os.stat(real)
    except OSError:
        now = None
    if now is None or (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
        raise UnreadableFile("replaced while it was being opened; not read")


def make_folders(root: Path, relative: str) -> Path:
    """Create ``root/relative`` folder by folder, refusing any part that is a link or a file.

    Raises:
        FileExistsError: A part of the path below ``root`` is a symbolic link (which this tool
            never writes through) or not a folder.
    """
    folder = root
    for part in Path(relative).parts:
        folder = folder / part
        try:
            folder.mkdir()
        except FileExistsError:
            if folder.is_symlink() or not folder.is_dir():
                kind = "a symbolic link" if folder.is_symlink() else "not a folder"
                raise FileExistsError(
                    f"output_folder: {str(folder)!r} is {kind}; this tool writes only into "
                    "folders it can see are real, never through links: remove it"
                ) from None
    return folder


def refuse_link(path: Path) -> None:
    """Refuse a path that is a symbolic link (a file this tool would write or remove)."""
    if path.is_symlink():
        raise FileExistsError(
            f"output_folder: {str(path)!r} is a symbolic link; this tool never writes or "
            "removes through links: remove it"
        )

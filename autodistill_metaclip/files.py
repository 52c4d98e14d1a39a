"""Files read and written safely.

Every file this package writes appears whole or not at all (a temporary file beside it, then one
rename), never through a symbolic link; an output folder has one writer at a time (a lock file
holding the writer's pid). Every user file it reads (ontology, model config, index, manifest) is
checked to be a regular file and read with a size cap, so a FIFO, ``/dev/zero`` or a huge file
is an error, not a hang or a ``MemoryError``.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

OPEN_NO_WAIT = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
"""Flags that open a FIFO or device without waiting on it (then refused by ``fstat``)."""
PARTIAL_PREFIX = ".partial-"
"""Temporary files start with this, in the target's folder, until renamed into place."""


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    On any error (or interruption) the temporary file is removed and an earlier file at
    ``path`` is left as it was. The new file gets the usual permissions (0666 less the umask),
    as ``open`` would give it.

    Example:
        >>> with atomic_write("out.csv", "w") as f:  # doctest: +SKIP
        ...     f.write("a,b\\n")
    """
    target = Path(path)
    temporary = target.with_name(f"{PARTIAL_PREFIX}{secrets.token_hex(8)}-{target.name}")
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


def open_file(path: str | os.PathLike[str], limit: int, name: str) -> BinaryIO:
    """Open a regular file of at most ``limit`` bytes for reading.

    Raises:
        ValueError: Naming ``name`` (the argument or option the path came from) and the path:
            it is missing, not a regular file (a folder, FIFO, device...), or over ``limit``.
            A FIFO or device is refused without being read or waited on.
    """
    shown = f"{name}: {os.fspath(path)!r}"
    try:
        descriptor = os.open(path, os.O_RDONLY | OPEN_NO_WAIT)
    except OSError as e:
        raise ValueError(f"{shown} cannot be read ({e.strerror or e})") from None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{shown} is not a regular file")
        raise ValueError(f"{shown} is larger than the {limit:,} bytes allowed")
    return os.fdopen(descriptor, "rb")


def read_file(path: str | os.PathLike[str], limit: int, name: str) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (see :func:`open_file`)."""
    with open_file(path, limit, name) as file:
        data = file.read(limit + 1)
    if len(data) > limit:  # grew while being read
        raise ValueError(f"{name}: {os.fspath(path)!r} is larger than the {limit:,} bytes allowed")
    return data


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


_HELD: set[Path] = set()  # locks held by this process


def acquire_lock(lock: Path, output: Path) -> Path:
    """Hold ``lock`` for this process; a lock left by a process that is gone is taken over.

    The lock file appears with the holder's pid already in it (written aside, then linked into
    place, which fails if it exists), so no one ever reads an empty lock.
    """
    with atomic_write(lock.with_name(f"{lock.name}.{os.getpid()}"), "w") as f:
        f.write(str(os.getpid()))
    mine = lock.with_name(f"{lock.name}.{os.getpid()}")
    try:
        for _ in range(2):
            try:
                os.link(mine, lock)
            except FileExistsError:
                holder = _holder(lock)
                if holder is not None and _alive(holder, lock):
                    raise RuntimeError(
                        f"output_folder: {str(output)!r} is being written by process {holder}; "
                        "wait for it to finish, or choose another output_folder"
                    ) from None
                lock.unlink(missing_ok=True)  # left by a process that was killed
                continue
            _HELD.add(lock)
            return lock
    finally:
        mine.unlink(missing_ok=True)
    raise RuntimeError(f"output_folder: cannot take the lock {str(lock)!r}")


def _holder(lock: Path) -> int | None:
    try:
        return int(read_file(lock, 64, "lock").decode("ascii").strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int, lock: Path) -> bool:
    if pid == os.getpid():  # this process: alive only if it holds it (not an earlier life)
        return lock in _HELD
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def release_lock(lock: Path) -> None:
    """Remove the lock if this process still holds it."""
    if lock in _HELD:
        _HELD.discard(lock)
        if _holder(lock) == os.getpid():
            lock.unlink(missing_ok=True)

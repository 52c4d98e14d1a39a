"""Writing files safely: every file this package writes appears whole or not at all, and an
output folder has one writer at a time (a lock file holding the writer's pid)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

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
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
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
        return int(lock.read_text(encoding="utf-8").strip())
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

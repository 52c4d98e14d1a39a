"""One writer at a time for an output folder: a lock file holding the writer's pid.

A lock left by a process that is gone is taken over.
"""

from __future__ import annotations

import os
from pathlib import Path

from autodistill_metaclip.inputs.files import atomic_write, read_file

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

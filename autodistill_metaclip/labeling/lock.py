"""One writer at a time for an output folder: a lock file the kernel locks for its holder.

The lock is an exclusive ``flock`` on ``.autodistill-metaclip/lock``, taken without waiting.
The kernel releases it when the holder's file is closed, also when the holder is killed
(``SIGKILL``, out of memory, a lost container), so there is no stale lock to take over and no
race between two processes that find one (a child forked by the holder shares its lock until
it exits too). The holder writes its pid into the file, only so that a refused process can name
it; the pid decides nothing.

On release the holder removes the file while it still holds the lock; a process that locked
that file just before (it opened it earlier) sees that the path no longer names what it locked
and tries again, so two processes never both hold the folder.

Limits: ``flock`` is advisory and local. It excludes every process of this tool on one machine
(any user, any container sharing the filesystem's kernel). On NFS it may not exclude a writer on
another machine (Linux maps it to NFS byte-range locks, which need a working lock manager;
other clients may not honour it at all): give each machine its own output folder. On Windows,
which has no ``flock``, the same rule rests on ``msvcrt.locking`` (also released by the system
when the holder dies), and the lock file is left in place on release.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl

_HELD: dict[Path, tuple[int, int]] = {}  # lock path -> (the open file holding it, our pid)
_TRIES = 100  # a lock removed under us by its releasing holder, again and again: give up
_WINDOWS_BYTE = 1 << 20  # the byte locked on Windows: past the pid, which stays readable


def acquire_lock(lock: Path, output: Path) -> Path:
    """Hold ``lock`` for this process, without waiting; returns ``lock``.

    The file is opened without following a link, locked, checked to be still the file at
    ``lock`` (its holder removes it on release), and then given this process's pid.

    Raises:
        RuntimeError: Another process (or this one, through another call) holds it, named by
            its pid: ``output_folder: '...' is being written by process N; ...``.
        OSError: The lock file cannot be opened (e.g. it is a symbolic link).
    """
    for _ in range(_TRIES):
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        try:
            if not _try_lock(descriptor):
                holder = _holder(descriptor)
                raise RuntimeError(
                    f"output_folder: {str(output)!r} is being written by "
                    f"{f'process {holder}' if holder else 'another process'}; "
                    "wait for it to finish, or choose another output_folder"
                )
            if not _still_there(descriptor, lock):
                os.close(descriptor)  # its holder removed it as it let go: lock the new one
                continue
            os.ftruncate(descriptor, 0)
            os.lseek(descriptor, 0, os.SEEK_SET)
            os.write(descriptor, str(os.getpid()).encode("ascii"))
        except BaseException:
            os.close(descriptor)
            raise
        _HELD[lock] = (descriptor, os.getpid())
        return lock
    raise RuntimeError(f"output_folder: cannot take the lock {str(lock)!r}; try again")


def release_lock(lock: Path) -> None:
    """Let go of ``lock`` if this process holds it: the file is removed (if it is still the one
    locked), then closed, which releases the lock. Not held (or held by the parent of this
    forked process, whose lock it shares): nothing happens."""
    descriptor, holder = _HELD.pop(lock, (-1, -1))
    if holder != os.getpid():
        return
    try:
        if sys.platform == "win32":
            os.lseek(descriptor, _WINDOWS_BYTE, os.SEEK_SET)
            msvcrt.locking(descriptor, msvcrt.LK_UNLCK, 1)
        elif _still_there(descriptor, lock):
            os.unlink(lock)
    finally:
        os.close(descriptor)


def _try_lock(descriptor: int) -> bool:
    """Lock an open file exclusively without waiting; ``False`` if another holds it."""
    try:
        if sys.platform == "win32":
            os.lseek(descriptor, _WINDOWS_BYTE, os.SEEK_SET)
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        else:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, errno.EDEADLK):
            return False
        raise
    return True


def _still_there(descriptor: int, lock: Path) -> bool:
    """Whether ``lock`` still names the file open as ``descriptor``."""
    try:
        now = os.stat(lock, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino)


def _holder(descriptor: int) -> int | None:
    """The pid written in a lock file; ``None`` if its holder has not written it within 0.1 s
    (it writes it just after locking)."""
    for _ in range(20):
        try:
            os.lseek(descriptor, 0, os.SEEK_SET)
            return int(os.read(descriptor, 64).decode("ascii").strip())
        except (OSError, ValueError):
            time.sleep(0.005)
    return None

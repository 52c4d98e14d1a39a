"""One writer at a time: a lock held by a live process is refused, a dead one's taken over."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from autodistill_metaclip import MetaCLIP
from autodistill_metaclip.labeling.lock import acquire_lock, release_lock
from autodistill_metaclip.labeling.state import STATE
from tests.helpers import resume_run


def test_a_folder_in_use_is_refused(finished: Path, shapes_model: MetaCLIP) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (finished / "out" / STATE / "lock").write_text(str(holder.pid))
        with pytest.raises(RuntimeError, match=rf"being written by process {holder.pid}"):
            shapes_model.label(
                finished / "in", ".png", finished / "out", resume=True, progress=False
            )
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is taken over
    resume_run(shapes_model, finished)
    assert not (finished / "out" / STATE / "lock").exists()


def test_a_lock_of_an_earlier_life_of_this_pid_is_taken_over(
    finished: Path, shapes_model: MetaCLIP
) -> None:
    """A container restarts its job as the same pid (often 1): that old lock is stale."""
    (finished / "out" / STATE / "lock").write_text(str(os.getpid()))
    resume_run(shapes_model, finished)
    assert not (finished / "out" / STATE / "lock").exists()


def test_a_lock_appears_whole_holds_and_goes(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    assert acquire_lock(lock, tmp_path) == lock
    assert lock.read_text() == str(os.getpid())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lock"]  # nothing left aside
    with pytest.raises(RuntimeError, match=rf"being written by process {os.getpid()}"):
        acquire_lock(lock, tmp_path)  # held by this process, in this life
    release_lock(lock)
    assert not lock.exists()
    release_lock(lock)  # not held: nothing happens
    for unreadable in ("", "not a pid"):
        lock.write_text(unreadable)  # a lock with no live holder in it is stale
        assert acquire_lock(lock, tmp_path) == lock and lock.read_text() == str(os.getpid())
        release_lock(lock)


def test_a_lock_taken_over_by_another_is_not_removed(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    acquire_lock(lock, tmp_path)
    lock.write_text("1")  # someone else's now
    release_lock(lock)
    assert lock.read_text() == "1"

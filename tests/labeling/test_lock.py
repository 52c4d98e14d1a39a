"""One writer at a time: a kernel lock (``flock``) held by a live process is refused, and one
held by a process that died is free at once, with no takeover to race on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from autodistill_metaclip import MetaCLIP
from autodistill_metaclip.labeling.lock import acquire_lock, release_lock
from autodistill_metaclip.labeling.state import STATE
from tests.helpers import ROOT, resume_run

HOLD = """
import sys, time
from pathlib import Path
from autodistill_metaclip.labeling.lock import acquire_lock
acquire_lock(Path(sys.argv[1]), Path(sys.argv[1]).parent)
print("holding", flush=True)
time.sleep(60)
"""

RACE = """
import os, signal, sys, time
from pathlib import Path
from autodistill_metaclip.labeling.lock import acquire_lock, release_lock
lock, start, rounds, slot = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), 0.05
marker = lock.with_name("inside")
codes = []
for n in range(rounds):
    time.sleep(max(0.0, start + n * slot - time.time()))
    child = os.fork()
    if child == 0:  # one try, in a process of its own
        try:
            acquire_lock(lock, lock.parent)
        except RuntimeError as e:
            os._exit(3 if "is being written by process" in str(e) else 5)
        try:  # nobody else may be inside now
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            os._exit(4)
        time.sleep(0.003)
        os.unlink(marker)
        if n % 4:  # three winners in four
            os.kill(os.getpid(), signal.SIGKILL)  # dies holding it: the kernel lets go
        release_lock(lock)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    codes.append(os.waitstatus_to_exitcode(status))
print(" ".join(map(str, codes)))
"""


def _hold(lock: Path) -> subprocess.Popen[str]:
    """A process that takes ``lock`` and keeps it (until killed)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
    return holder


def test_a_folder_in_use_is_refused_until_its_writer_is_killed(
    finished: Path, shapes_model: MetaCLIP
) -> None:
    lock = finished / "out" / STATE / "lock"
    holder = _hold(lock)
    try:
        with pytest.raises(RuntimeError, match=rf"being written by process {holder.pid};"):
            shapes_model.label(
                finished / "in", ".png", finished / "out", resume=True, progress=False
            )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert lock.read_text() == str(holder.pid)  # left behind, but the kernel let go of it
    resume_run(shapes_model, finished)
    assert not lock.exists()


def test_a_lock_file_with_a_pid_but_no_holder_is_free(finished: Path, shapes_model) -> None:
    """A pid in the file decides nothing: a container restarts its job as the same pid (often
    1), a killed run leaves its file; only the kernel's lock counts."""
    for pid in (os.getpid(), 1):
        (finished / "out" / STATE / "lock").write_text(str(pid))
        resume_run(shapes_model, finished)
        assert not (finished / "out" / STATE / "lock").exists()


def test_a_lock_holds_names_its_holder_and_goes(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    assert acquire_lock(lock, tmp_path) == lock
    assert lock.read_text() == str(os.getpid())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lock"]  # nothing left aside
    with pytest.raises(RuntimeError, match=rf"being written by process {os.getpid()}"):
        acquire_lock(lock, tmp_path)  # held by this process, through another call
    release_lock(lock)
    assert not lock.exists()
    release_lock(lock)  # not held: nothing happens
    for unreadable in ("", "not a pid", "99999999"):
        lock.write_text(unreadable)
        assert acquire_lock(lock, tmp_path) == lock and lock.read_text() == str(os.getpid())
        release_lock(lock)


def test_a_lock_file_replaced_by_another_is_not_removed(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    acquire_lock(lock, tmp_path)
    (tmp_path / "other").write_text("1")
    os.replace(tmp_path / "other", lock)  # someone else's file now
    release_lock(lock)
    assert lock.read_text() == "1"


def test_a_lock_file_that_is_a_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("keep")
    (tmp_path / "lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        acquire_lock(tmp_path / "lock", tmp_path)
    assert (tmp_path / "elsewhere").read_text() == "keep"


def test_processes_racing_for_a_lock_never_both_hold_it(tmp_path: Path) -> None:
    """Six processes try at the same moments, 40 times; three winners in four are SIGKILLed
    while holding it, leaving its file and pid behind (the case where two processes used to
    find a stale lock at once and both take it over). Never two inside at once, a refusal names a
    pid, and the lock is free when they are done."""
    lock, rounds, racers = tmp_path / "lock", 40, 6
    start = time.time() + 2  # all started and imported by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(lock), str(start), str(rounds)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(racers)
    ]
    try:
        results = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert all(p.returncode == 0 for p in procs), results
    codes = [[int(c) for c in out.split()] for out, _ in results]
    per_round = [Counter(c[n] for c in codes) for n in range(rounds)]
    assert not any(r[4] for r in per_round), "two processes held the lock at once"
    assert not any(r[5] for r in per_round), "a refusal did not name the holder's pid"
    won = sum(r[0] + r[-signal.SIGKILL] for r in per_round)
    assert won >= rounds // 2 and sum(r[-signal.SIGKILL] for r in per_round) >= rounds // 4
    assert sum(r[3] for r in per_round) > 0, "nobody was ever refused: no race was run"
    assert not (tmp_path / "inside").exists()
    assert acquire_lock(lock, tmp_path) == lock  # nothing stale is left to get in the way
    release_lock(lock)

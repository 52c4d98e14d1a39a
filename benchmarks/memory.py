"""This process's memory, in MiB, measured so that a parent's size never counts.

Not ``ru_maxrss``: on Linux a child started by fork and exec keeps the larger of its own peak
and the RSS of the forked copy of its parent, so a benchmark driver holding a million vectors
inflates every child's figure. ``VmHWM`` belongs to the process's own memory map, and writing
``5`` to ``/proc/self/clear_refs`` starts it again from the current RSS (Linux 4.0 and later).
"""

from __future__ import annotations

import resource


def rss_mb() -> float:
    """Resident memory now."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def reset_peak() -> None:
    """Make :func:`peak_mb` count from now."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")


def peak_mb() -> float:
    """The highest resident memory since the process started, or since :func:`reset_peak`."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")

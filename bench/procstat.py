"""Process and machine figures for the benchmarks: CPU time, load, and where processes run.

The machines are shared (2 cores, other work running), so every table records the load average
next to its figures, and the simulator is pinned to core 1 with the measured side on core 0.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    """The 1- and 5-minute load averages, as a note for a table."""
    one, five = Path("/proc/loadavg").read_text().split()[:2]
    return f"load {one}/{five}"


def machine() -> str:
    """Architecture, cores and Python version."""
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


_CORES = len(os.sched_getaffinity(0))  # at import: before this process pins itself


def two_cores() -> bool:
    return _CORES > 1


def pin(pid: int | None, core: int) -> None:
    """Pin a process (0: this one) to one core where there are two; else leave it."""
    if pid is not None and two_cores():
        os.sched_setaffinity(pid, {core})

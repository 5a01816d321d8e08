"""Child processes that end with the process that started them, even one killed with SIGKILL
(which runs none of its clean-up code): the simulator ``batchrun run`` starts, and the Streamlit
server of ``batchrun dashboard``.

``spawn`` runs a ``python -m MODULE ...`` command as ``python -m batchrun.sim.lifeline ...``,
which sets up two guards in the child, then runs MODULE in that same process:

- on Linux, ``prctl(PR_SET_PDEATHSIG, SIGTERM)``: the kernel sends the child SIGTERM when its
  parent dies (strictly, when the parent's thread that started it ends: keep a ``spawn`` block
  in one thread);
- everywhere, a pipe: the parent holds its writing end, which the system closes when the parent
  ends however it ends; a thread of the child reads the other end, and at its end sends the
  child SIGTERM, and ends it for good if it is still there a few seconds later.

It sits in ``batchrun.sim`` as the lowest package that starts a child process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
GRACE_SECONDS = 5.0  # after SIGTERM, how long the child may take to stop before it is ended
EXIT_ORPHANED = 143  # 128 + SIGTERM, as if the signal had ended it


@contextlib.contextmanager
def spawn(command: Sequence[str], **options: Any) -> Iterator[subprocess.Popen[Any]]:
    """Start ``command`` (``python -m MODULE ARGS...``) as a child that ends with this process;
    ``options`` go to ``subprocess.Popen``. Leaving the block closes the pipe (so the child stops
    if it was not stopped already) and waits for the child to end."""
    if len(command) < 3 or command[1] != "-m":
        raise ValueError(f"spawn runs `python -m MODULE ...`, not {list(command)!r}")
    reading, writing = os.pipe()
    wrapped = [
        command[0], "-m", __name__, f"--parent={os.getpid()}", f"--fd={reading}", *command[2:],
    ]  # fmt: skip
    try:
        process = subprocess.Popen(wrapped, pass_fds=(reading,), **options)  # noqa: S603
    except BaseException:
        os.close(writing)
        raise
    finally:
        os.close(reading)
    with process:
        try:
            yield process
        finally:
            os.close(writing)


def guard(parent: int, fd: int) -> None:
    """In the child: end this process when ``parent`` ends (or has already ended)."""
    _ask_kernel()
    if os.getppid() != parent:  # it died before the kernel's guard was set
        sys.stderr.write("batchrun: the process that started this one has ended; stopping\n")
        os._exit(EXIT_ORPHANED)
    os.set_inheritable(fd, False)  # this process's own children do not hold it
    threading.Thread(target=_watch, args=(fd,), name="lifeline", daemon=True).start()


def _ask_kernel() -> None:
    """Linux: the kernel sends SIGTERM to this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _watch(fd: int) -> None:
    """Wait for the end of the parent's pipe, then stop this process: politely, then for good."""
    with contextlib.suppress(OSError):
        while os.read(fd, 512):
            pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(GRACE_SECONDS)
    os._exit(EXIT_ORPHANED)


def main(argv: Sequence[str]) -> None:
    """``python -m batchrun.sim.lifeline --parent=PID --fd=N MODULE ARGS...``."""
    parent, fd, module, *rest = argv
    guard(int(parent.removeprefix("--parent=")), int(fd.removeprefix("--fd=")))
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])

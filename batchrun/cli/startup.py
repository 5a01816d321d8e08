"""What a command's process spends on the garbage collector around the SDK, and at exit.

The ``anthropic`` SDK's pydantic types are some 160,000 objects. Importing them with the collector
running cost about 0.2 s of CPU in collections that find almost nothing (under 2,000 objects), and
the interpreter's last collection at exit walked them all again (about 0.3 s after a run).
"""

from __future__ import annotations

import gc

from batchrun.cli import options as opt


def load_sender() -> None:
    """Import the SDK (through batchrun.api.client) with the collector paused, then freeze it.

    Frozen objects are left out of later collections; the little cyclic garbage the import made
    stays with them. Called by the commands that send, before their first SDK import.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        import batchrun.api.client  # noqa: F401, PLC0415 - the point of this function
    finally:
        if enabled:
            gc.enable()
    gc.freeze()


def exiting_fast() -> None:
    """Close the command's stores, then spare the interpreter's exit its last collection.

    After gc.freeze, atexit handlers, flushes and the clean-up of objects freed by reference count
    still run; objects in reference cycles are left to the operating system, as Python allows at
    exit. A store's connections sit in such cycles, so they are closed first (SQLite then
    checkpoints and removes its WAL files).
    """
    opt.close_stores()
    gc.freeze()

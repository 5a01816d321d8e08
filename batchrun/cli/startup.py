"""What a command's process spends on the garbage collector around its imports, and at exit.

The sender's imports (aiohttp, the store's SQLAlchemy) are tens of thousands of objects; the
``anthropic`` SDK's pydantic types, some 160,000, are no longer imported by the commands (see
batchrun/api/client.py). Importing them with the collector running cost CPU in collections that
find almost nothing, and the interpreter's last collection at exit walked them all again.
"""

from __future__ import annotations

import gc

from batchrun.cli import options as opt


def load_sender() -> None:
    """Import the sender (batchrun.api.client) with the collector paused, then freeze it.

    Frozen objects are left out of later collections; the little cyclic garbage the import made
    stays with them. Called by the commands that send, before they import the client.
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

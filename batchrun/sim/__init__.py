"""A MiniMax-compatible simulator of the Anthropic Messages API, held to MiniMax's documents
and, by default, to what MiniMax was seen to do in the field (see settings.py, PROFILES).

Use ``serve`` (in the running loop), ``simulator_thread`` (background thread) or
``simulator_process`` (child process), or ``batchrun sim`` on the command line.

Light to import: the server (uvicorn, asyncio) loads when one of its names is first used, so
``batchrun`` can register ``batchrun sim`` without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchrun.sim.host import RunningSimulator, serve, simulator_process, simulator_thread
    from batchrun.sim.settings import FaultRates, SimSettings

__all__ = [
    "FaultRates",
    "RunningSimulator",
    "SimSettings",
    "serve",
    "simulator_process",
    "simulator_thread",
]

_HOME = {
    "FaultRates": "batchrun.sim.settings",
    "RunningSimulator": "batchrun.sim.host",
    "SimSettings": "batchrun.sim.settings",
    "serve": "batchrun.sim.host",
    "simulator_process": "batchrun.sim.host",
    "simulator_thread": "batchrun.sim.host",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

"""A MiniMax-compatible simulator of the Anthropic Messages API, held to MiniMax's documents.

Use ``serve`` (in the running loop), ``simulator_thread`` (background thread) or
``simulator_process`` (child process), or ``batchrun sim`` on the command line.
"""

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

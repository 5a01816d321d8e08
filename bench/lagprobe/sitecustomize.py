"""Event-loop lag probe for benchmarks: on PYTHONPATH, it watches every loop batchrun runs.

Python imports ``sitecustomize`` at start-up. When BENCH_LOOPLAG_DIR names a directory, every
event loop made by ``batchrun.sim.loop.loop_factory`` (``batchrun run``'s and the simulator's)
runs the runner's own monitor, ``batchrun.run.looplag.LoopLag``, every INTERVAL seconds, keeping
every lateness it sees; at exit the process writes its samples to DIR/lag-PID.json. A wrapper for
benchmarks only, so that the code measured stays as users run it.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import sys
from collections.abc import Callable
from pathlib import Path

INTERVAL = 0.01  # seconds between two wanted wake-ups
_TASKS: set[asyncio.Task[None]] = set()  # the loop holds its tasks weakly


def _watch(loop: asyncio.AbstractEventLoop, late: list[float]) -> None:
    """A LoopLag task in ``loop`` once it runs (asyncio.Runner cancels it when the run ends)."""
    from batchrun.run.looplag import LoopLag

    lag = LoopLag(interval_s=INTERVAL, samples=late)

    def start() -> None:
        task = loop.create_task(lag.watch())
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)

    loop.call_soon(start)


def _install(out: Path) -> None:
    import orjson

    from batchrun.sim import loop as loops

    late: list[float] = []
    original = loops.loop_factory

    def factory() -> Callable[[], asyncio.AbstractEventLoop]:
        make = original()

        def watched() -> asyncio.AbstractEventLoop:
            loop = make()
            _watch(loop, late)
            return loop

        return watched

    loops.loop_factory = factory

    def save() -> None:
        if late:
            record = {"argv": sys.argv[:3], "late": late}
            (out / f"lag-{os.getpid()}.json").write_bytes(orjson.dumps(record))

    atexit.register(save)


if os.environ.get("BENCH_LOOPLAG_DIR"):
    _install(Path(os.environ["BENCH_LOOPLAG_DIR"]))

"""Event-loop lag probe for benchmarks: on PYTHONPATH, it watches every loop batchrun runs.

Python imports ``sitecustomize`` at start-up. When BENCH_LOOPLAG_DIR names a directory, every
event loop made by ``batchrun.sim.loop.loop_factory`` (``batchrun run``'s and the simulator's)
gets a callback that asks to run every INTERVAL seconds and records how late it ran; at exit the
process writes its samples to DIR/lag-PID.json. A benchmark-only wrapper, so that the runner's
own code stays as users run it; another branch brings a monitor into the runner itself.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import sys
from collections.abc import Callable
from pathlib import Path

INTERVAL = 0.01  # seconds between two wanted wake-ups


def _watch(loop: asyncio.AbstractEventLoop, late: list[float]) -> None:
    wanted = loop.time() + INTERVAL

    def tick() -> None:
        nonlocal wanted
        now = loop.time()
        late.append(now - wanted)
        wanted = now + INTERVAL
        loop.call_at(wanted, tick)

    loop.call_at(wanted, tick)


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

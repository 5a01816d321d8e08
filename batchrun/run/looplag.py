"""How late the event loop wakes: a task that sleeps a short interval and records the overshoot.

Anything that blocks the loop (a synchronous database round trip, heavy parsing) delays every
stream the process holds; this measures it from inside. Plain anyio, no batchrun imports, so a
run, a worker or a benchmark can each start one (``async with`` it, or ``start_soon(lag.watch)``);
bench/lagprobe starts one in every loop a benchmarked process makes, keeping every sample.
"""

from __future__ import annotations

import time
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

INTERVAL_S = 0.05  # short enough to see a 100 ms stall, long enough to cost nothing


class LoopLag:
    """The longest late wake-up of the loop: since the last ``take`` and since the start;
    with ``samples``, every wake-up's lateness is appended to that list too (for percentiles)."""

    def __init__(self, interval_s: float = INTERVAL_S, samples: list[float] | None = None) -> None:
        self.interval_s = interval_s
        self.longest_s = 0.0  # since the monitor started
        self.recent_s = 0.0  # since the last take()
        self.samples = samples
        self._group: TaskGroup | None = None

    def note(self, late_s: float) -> None:
        """Record one wake-up that came ``late_s`` seconds after it was due."""
        late_s = max(0.0, late_s)
        self.longest_s = max(self.longest_s, late_s)
        self.recent_s = max(self.recent_s, late_s)
        if self.samples is not None:
            self.samples.append(late_s)

    def take(self) -> float:
        """The longest lateness since the last take (then start over): a heartbeat's figure."""
        recent, self.recent_s = self.recent_s, 0.0
        return recent

    async def watch(self) -> None:
        """Sleep ``interval_s`` again and again, noting how late each wake-up came; forever."""
        while True:
            due = time.monotonic() + self.interval_s
            await anyio.sleep(self.interval_s)
            self.note(time.monotonic() - due)

    async def __aenter__(self) -> LoopLag:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self.watch)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> bool | None:
        assert self._group is not None  # entered
        self._group.cancel_scope.cancel()
        return await self._group.__aexit__(kind, error, trace)

"""One timer per millisecond for every stream due in it, instead of one timer per write.

At MiniMax's full rate the simulator writes about 70,000 events a second, one per write (the
field's behaviour). With ``asyncio.sleep`` before each write, every write cost a timer of its own
(a timer handle made, armed and fired); a profile at full rate put about a tenth of the
simulator's CPU there. Streams here wait for the slot of ``resolution`` seconds their next chunk
falls due in: the first stream to ask for a slot arms its one timer, every other stream due in
it only adds a future. So a write comes at most ``resolution`` (1 ms) later than its own timer
would have woken it, the writes of a busy second stay spread over its thousand slots rather than
bunched into ticks, and the timing log records when each really went out.
"""

from __future__ import annotations

import asyncio
import math

RESOLUTION_S = 0.001


class Ticker:
    """Wakes, at each multiple of ``resolution`` seconds of loop time, the streams waiting."""

    def __init__(self, resolution: float = RESOLUTION_S) -> None:
        if resolution <= 0:
            raise ValueError(f"a ticker needs a resolution above 0 seconds, not {resolution}")
        self.resolution = resolution
        self._slots: dict[int, list[asyncio.Future[None]]] = {}

    def wait(self, loop: asyncio.AbstractEventLoop, due: float) -> asyncio.Future[None]:
        """A future done at the first slot at or after loop time ``due``."""
        slot = math.ceil(due / self.resolution)
        waiting = self._slots.get(slot)
        if waiting is None:
            waiting = self._slots[slot] = []
            loop.call_at(slot * self.resolution, self._wake, slot)
        future = loop.create_future()
        waiting.append(future)
        return future

    def _wake(self, slot: int) -> None:
        for future in self._slots.pop(slot):
            if not future.done():  # a stream whose task was cancelled meanwhile
                future.set_result(None)

"""The ticker that wakes the simulator's streams: never before a stream's due time, one timer
per slot however many streams wait in it, and a cancelled stream does not break the others."""

from __future__ import annotations

import asyncio
import math

import pytest

from batchrun.sim.ticker import Ticker


def test_streams_wake_at_or_after_their_due_time_in_due_order() -> None:
    async def main() -> list[tuple[int, bool]]:
        loop = asyncio.get_running_loop()
        ticker = Ticker(0.002)
        start = loop.time()
        woken: list[tuple[int, bool]] = []

        async def stream(index: int, delay: float) -> None:
            due = start + delay
            await ticker.wait(loop, due)
            woken.append((index, loop.time() >= due))

        await asyncio.gather(*(stream(i, 0.004 * (5 - i)) for i in range(5)))
        return woken

    woken = asyncio.run(main())
    assert [index for index, _ in woken] == [4, 3, 2, 1, 0]
    assert all(on_time for _, on_time in woken)


def test_streams_due_in_one_slot_share_one_timer() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        ticker = Ticker(0.01)
        due = (math.floor(loop.time() / 0.01) + 2) * 0.01 + 0.001  # early in a slot
        timers = 0
        real_call_at = loop.call_at

        def counting_call_at(*args: object) -> asyncio.TimerHandle:
            nonlocal timers
            timers += 1
            return real_call_at(*args)  # type: ignore[arg-type]

        loop.call_at = counting_call_at  # type: ignore[method-assign]
        futures = [ticker.wait(loop, due + i * 0.0001) for i in range(50)]
        futures[3].cancel()  # a stream cancelled while it waits
        await asyncio.gather(*futures, return_exceptions=True)
        assert all(f.done() for f in futures)
        return timers

    assert asyncio.run(main()) == 1


def test_a_ticker_needs_a_positive_resolution() -> None:
    with pytest.raises(ValueError, match="resolution"):
        Ticker(0)

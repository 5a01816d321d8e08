"""The client-side limiter with a fake clock: pacing, refunds, backing off and recovering."""

from __future__ import annotations

import pytest

from batchrun.run.limits import (
    MIN_FACTOR,
    ModelLimiter,
    ModelLimitSettings,
    Pacer,
    default_concurrency,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pacer_spreads_requests_evenly() -> None:
    clock = Clock()
    pacer = Pacer(rate_per_s=10.0, clock=clock)
    waits = [pacer.reserve(1) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    clock.now += 1.0  # idle time is not banked as a burst
    assert pacer.reserve(1) == 0.0
    assert pacer.reserve(1) == pytest.approx(0.1)


def test_pacer_refund_never_moves_into_the_past() -> None:
    clock = Clock()
    pacer = Pacer(rate_per_s=100.0, clock=clock)
    pacer.reserve(500)  # 5 s of tokens
    pacer.refund(300)
    assert pacer.reserve(1) == pytest.approx(2.0)
    pacer.refund(10_000)
    assert pacer.reserve(1) == 0.0


def test_repeated_429s_keep_slowing_the_model_down_then_it_recovers() -> None:
    clock = Clock()
    limiter = ModelLimiter(ModelLimitSettings(rpm=600, tpm=None, concurrency=64), clock)
    factors = []
    for _ in range(24):  # a 429 every half second; it shrinks at most once per 2 s
        limiter.on_throttled(rate_limited=True, retry_after=None)
        limiter._recover()
        factors.append(limiter.factor)
        clock.now += 0.5
    assert factors[0] == 0.5
    assert factors[-1] < 0.05 + 1e-9
    assert limiter.factor == MIN_FACTOR
    assert limiter.slots.total_tokens == 4  # 64 x 0.05, rounded up
    clock.now += 1.0
    limiter._recover()
    assert limiter.factor == MIN_FACTOR  # still within the quiet period
    clock.now += 10.0
    limiter._recover()
    assert limiter.factor == 1.0
    assert limiter.slots.total_tokens == 64


def test_529s_shrink_gently_and_retry_after_pauses() -> None:
    clock = Clock()
    limiter = ModelLimiter(ModelLimitSettings(rpm=None, tpm=None, concurrency=10), clock)
    limiter.on_throttled(rate_limited=False, retry_after=3.0)
    assert limiter.factor == pytest.approx(0.9)
    limiter.on_throttled(rate_limited=False, retry_after=None)  # within a second: no change
    assert limiter.factor == pytest.approx(0.9)
    assert limiter._paused_until == pytest.approx(clock.now + 3.0)


def test_default_concurrency_holds_the_rate() -> None:
    assert default_concurrency(500) == 250  # 500/min x 20 s x 1.5
    assert default_concurrency(None) == 64
    assert default_concurrency(10) == 8


@pytest.mark.anyio
async def test_requests_do_not_burst_after_the_event_loop_was_blocked() -> None:
    # 20 requests a second from 8 workers; the loop is blocked for 0.6 s while some of them
    # sleep towards their slots. Without care they all wake together and go out as one burst.
    import time

    import anyio

    limiter = ModelLimiter(
        ModelLimitSettings(rpm=20 * 60 / 0.98, tpm=None, concurrency=8, headroom=0.98)
    )
    sent: list[float] = []

    async def worker() -> None:
        while len(sent) < 30:
            async with limiter.slots:
                await limiter.acquire(1)
                sent.append(time.monotonic())
                await anyio.sleep(0.01)

    async def block_the_loop() -> None:
        await anyio.sleep(0.5)
        time.sleep(0.6)  # noqa: ASYNC251 - blocking the event loop is the point

    async with anyio.create_task_group() as group:
        group.start_soon(block_the_loop)
        for _ in range(8):
            group.start_soon(worker)
    # Paced at 50 ms a request, any 100 ms holds two or three of them, however the loop stalled.
    bunched = max(sum(1 for t in sent if start <= t < start + 0.1) for start in sent)
    assert bunched <= 3, sorted(round(t - sent[0], 3) for t in sent)


@pytest.mark.anyio
async def test_a_model_without_rates_gets_its_concurrency_back_after_a_429() -> None:
    clock = Clock()
    limiter = ModelLimiter(ModelLimitSettings(rpm=None, tpm=None, concurrency=64), clock)
    limiter.on_throttled(rate_limited=True, retry_after=None)
    assert limiter.slots.total_tokens == 32
    clock.now += 100.0
    await limiter.acquire(1)  # the only place recovery runs: it must run without rates too
    assert limiter.factor == 1.0
    assert limiter.slots.total_tokens == 64


@pytest.mark.anyio
async def test_tokens_refunded_by_short_answers_are_spent_on_the_next_requests() -> None:
    # 6,000 tokens a minute (100/s) and requests that reserve 1,000 but use 100: spacing each
    # request by its reservation would allow one every 10 s; the refunds allow one a second.
    import time

    clock = Clock()  # moved by hand a second a request; any real sleep is the limiter's own
    limiter = ModelLimiter(
        ModelLimitSettings(rpm=None, tpm=6000, concurrency=8, headroom=1.0), clock
    )
    started = time.monotonic()
    for _ in range(4):
        await limiter.acquire(1000)
        limiter.settle(1000, 100)
        clock.now += 1.0
    assert time.monotonic() - started < 1.0

"""The client-side limiter with a fake clock: pacing, refunds, backing off and recovering, for a
model and for a pool of limits several models share."""

from __future__ import annotations

import itertools

import pytest

from batchrun.run.limits import (
    MIN_FACTOR,
    ModelLimiter,
    ModelLimitSettings,
    Pacer,
    PoolSettings,
    default_concurrency,
    describe_limits,
    make_limiters,
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


# --- pools: limits several models share ------------------------------------------------------


def _pooled(
    pool_rpm: float | None,
    models: dict[str, float | None],
    *,
    pool_tpm: float | None = None,
    clock: Clock | None = None,
    concurrency: int = 8,
) -> dict[str, ModelLimiter]:
    """Limiters for ``models`` (name -> own RPM) sharing one pool, headroom 1."""
    pool = PoolSettings(
        name="account", models=tuple(models), rpm=pool_rpm, tpm=pool_tpm, headroom=1.0
    )
    limits = {
        name: ModelLimitSettings(
            rpm=rpm, tpm=None, concurrency=concurrency, headroom=1.0, pools=(pool,)
        )
        for name, rpm in models.items()
    }
    return make_limiters(limits, clock) if clock is not None else make_limiters(limits)


def _most_within(times: list[float], window: float) -> int:
    """The most of ``times`` that fall in any ``window`` seconds."""
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


def test_models_of_one_pool_share_one_pool_limiter() -> None:
    shared = PoolSettings(name="account", models=("a", "b"), rpm=60, tpm=None)
    other = PoolSettings(name="other", models=("c",), rpm=60, tpm=None)
    made = make_limiters(
        {
            "a": ModelLimitSettings(rpm=None, tpm=None, concurrency=4, pools=(shared,)),
            "b": ModelLimitSettings(rpm=None, tpm=None, concurrency=4, pools=(shared,)),
            "c": ModelLimitSettings(rpm=None, tpm=None, concurrency=4, pools=(other,)),
            "d": ModelLimitSettings(rpm=None, tpm=None, concurrency=4),
        }
    )
    assert made["a"].pools[0] is made["b"].pools[0]
    assert made["c"].pools[0] is not made["a"].pools[0]
    assert made["d"].pools == ()
    described = describe_limits({"a": made["a"].settings, "d": made["d"].settings})
    assert described["pools"] == {
        "account": {"models": ["a", "b"], "rpm": 60, "tpm": None, "source": ""}
    }
    assert described["models"]["a"]["pools"] == ["account"]
    assert described["models"]["d"]["pools"] == []


@pytest.mark.anyio
async def test_a_pool_holds_its_models_together_under_its_rate_and_each_under_its_own() -> None:
    # Three models, a pool of 50 requests a second over them; model "slow" also has its own
    # limit of 10 a second. Without the pool, 24 workers would send everything at once.
    import time

    import anyio

    limiters = _pooled(3000, {"a": None, "b": 100_000, "slow": 600})
    sent: dict[str, list[float]] = {name: [] for name in limiters}

    async def worker(name: str) -> None:
        limiter = limiters[name]
        while len(sent[name]) < 8:
            async with limiter.slots:
                await limiter.acquire(1)
                sent[name].append(time.monotonic())
                await anyio.sleep(0.01)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            for name in limiters:
                for _ in range(8):
                    group.start_soon(worker, name)
    together = sorted(t for times in sent.values() for t in times)
    # Paced at 20 ms a request, 100 ms hold five or six of them.
    assert _most_within(together, 0.1) <= 7, [round(t - together[0], 3) for t in together]
    assert _most_within(sent["slow"], 0.2) <= 3  # its own 100 ms spacing holds too


@pytest.mark.anyio
async def test_a_pool_does_not_burst_after_the_event_loop_was_blocked() -> None:
    # As for one model: two models whose own rates are unlimited share a pool of 20 a second;
    # the loop is blocked while requests of both sleep towards the pool's slots.
    import time

    import anyio

    limiters = _pooled(20 * 60, {"a": None, "b": None})
    sent: list[float] = []

    async def worker(limiter: ModelLimiter) -> None:
        while len(sent) < 30:
            async with limiter.slots:
                await limiter.acquire(1)
                sent.append(time.monotonic())
                await anyio.sleep(0.01)

    async def block_the_loop() -> None:
        await anyio.sleep(0.5)
        time.sleep(0.6)  # noqa: ASYNC251 - blocking the event loop is the point

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(block_the_loop)
            for limiter in limiters.values():
                for _ in range(4):
                    group.start_soon(worker, limiter)
    sent.sort()
    assert _most_within(sent, 0.1) <= 3, [round(t - sent[0], 3) for t in sent]
    # Spaced from the late one: 50 ms less LATE_TOLERANCE; without the pool's spacing the first
    # request after the stall takes a slot gone by and follows the late one at once.
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert min(gaps) >= 0.01, [round(t - sent[0], 3) for t in sent]


@pytest.mark.anyio
async def test_token_refunds_go_back_to_the_pool() -> None:
    # The pool allows 6,000 tokens a minute; requests reserve 1,000 and use 100. Without the
    # refund reaching the pool, the second request would wait 10 s.
    import time

    import anyio

    clock = Clock()
    limiters = _pooled(None, {"a": None, "b": None}, pool_tpm=6000, clock=clock)
    started = time.monotonic()
    with anyio.fail_after(5):
        for name in ("a", "b", "a", "b"):
            await limiters[name].acquire(1000)
            limiters[name].settle(1000, 100)
            clock.now += 1.0
    assert time.monotonic() - started < 1.0


def test_an_account_429_slows_the_pool_and_another_429_the_model() -> None:
    clock = Clock()
    limiters = _pooled(600, {"a": 600, "b": 600}, clock=clock)
    a, b = limiters["a"], limiters["b"]
    pool = a.pools[0]
    account = "rate limit exceeded (account requests per minute) (1002)"
    a.on_throttled(rate_limited=True, retry_after=1.5, message=account)
    assert pool.factor == 0.5
    assert pool._paused_until == pytest.approx(clock.now + 1.5)
    assert (a.factor, b.factor) == (1.0, 1.0)  # the models keep their own pace and concurrency
    assert a.slots.total_tokens == 8
    clock.now += 3.0
    b.on_throttled(rate_limited=True, retry_after=None, message="rate limit exceeded (1002)")
    assert b.factor == 0.5
    assert a.factor == 1.0
    assert pool.factor == 0.5  # not shrunk again, and still quiet-period: no recovery yet
    b.on_throttled(rate_limited=False, retry_after=None, message="account overloaded (529)")
    assert pool.factor == 0.5  # a 529 is never the account's limit
    clock.now += 20.0
    pool._recover()
    assert pool.factor == 1.0


def test_an_account_429_without_a_pool_slows_the_model() -> None:
    limiter = ModelLimiter(ModelLimitSettings(rpm=600, tpm=None, concurrency=8), Clock())
    limiter.on_throttled(True, None, "rate limit exceeded (account requests per minute) (1002)")
    assert limiter.factor == 0.5


@pytest.mark.anyio
async def test_models_in_two_pools_never_wait_for_each_other() -> None:
    # Pools are passed in one order whatever order a model lists them in: no deadlock.
    import anyio

    first = PoolSettings(name="a-pool", models=("x", "y"), rpm=6000, tpm=None)
    second = PoolSettings(name="b-pool", models=("x", "y"), rpm=6000, tpm=None)
    limiters = make_limiters(
        {
            "x": ModelLimitSettings(rpm=None, tpm=None, concurrency=4, pools=(first, second)),
            "y": ModelLimitSettings(rpm=None, tpm=None, concurrency=4, pools=(second, first)),
        }
    )
    done = 0

    async def worker(limiter: ModelLimiter) -> None:
        nonlocal done
        for _ in range(5):
            async with limiter.slots:
                await limiter.acquire(1)
                done += 1

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            for limiter in limiters.values():
                for _ in range(4):
                    group.start_soon(worker, limiter)
    assert done == 40

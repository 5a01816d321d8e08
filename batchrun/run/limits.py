"""Client-side limits per model: requests per minute, tokens per minute, concurrency, adaptation.

Rates are paced, not burst: each request (and each token) gets a slot on a virtual clock that
advances by 1 / rate (the generic cell rate algorithm), so any window of the server's holds no
more than the limit. A headroom factor (default 0.98) keeps timing jitter from tipping a window
over. On 429 the model's rate and concurrency halve (once per two seconds at most), on 529 they
shrink by a tenth (once per second at most), and they recover by a tenth of the configured rate
per second without such errors. A ``retry-after`` pauses the model's dispatch until it has passed.

A slot is only good at its time: requests that sleep towards their slots and all wake together
after the event loop was blocked (a loaded machine, a long write) would reach the server as one
burst. So one request at a time waits for its slot, and each request is also spaced from the one
before by its share of the request rate, measured from when that one really went (less
LATE_TOLERANCE): after a stall the requests resume at the paced rate, while a steady lag of the
loop (every wake-up equally late) costs no throughput.

A pool holds limits that several models share (an account's, where MiniMax counts the account
rather than the model): its own RPM and TPM pacers, one waiter at a time and spacing after
stalls, exactly as a model's (both are a RateGate). A request passes its model's gate, then each
of the model's pools' in name order, holding every gate it passed until it goes (one fixed order,
so no two requests wait for each other), and is marked as sent on all of them at once. Holding
the model's gate while it waits for a pool keeps at most one request of each model queued at the
pool, so the pool serves its models in turn. A 429 whose message names the account (the
simulator's ``(account requests per minute)``) slows and pauses the model's pools; any other 429
or 529 the model, as without pools. A pool paces rates only: concurrency stays per model.

A team's workers (teams/shared.py) swap in pacers and concurrency slots kept in the database:
a gate asks of its pacers only what ``GatePacer`` names (``take``, ``put_back``,
``note_throttle``, which hands a 429 / 529 to a shared pacer for the other workers), so a plain
``Pacer`` and a team's ``SharedPacer`` each have only what they do; ``RateGate.adopt`` applies
a back-off that another worker saw.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import anyio

MIN_FACTOR = 0.05
RECOVERY_PER_SECOND = 0.1
RECOVERY_QUIET = 2.0  # seconds after a throttle before the rate starts to recover
LATE_TOLERANCE = 0.02  # seconds two requests may come closer than their spacing
# A 429 whose message holds this word is the account's limit: the simulator says
# "rate limit exceeded (account requests per minute) (1002)". MiniMax's own wording for an
# account-wide refusal is not documented (an assumption).
ACCOUNT_WORD = "account"


@dataclass(frozen=True, kw_only=True)
class PoolSettings:
    """Limits several models share (an account's); None means unlimited."""

    name: str
    models: tuple[str, ...]
    rpm: float | None
    tpm: float | None
    headroom: float = 0.98
    source: str = ""  # where the figures come from, as shown and stored


@dataclass(frozen=True, kw_only=True)
class ModelLimitSettings:
    """Configured limits of one model, and the pools it shares; None means unlimited."""

    rpm: float | None
    tpm: float | None
    concurrency: int
    headroom: float = 0.98
    pools: tuple[PoolSettings, ...] = ()

    def pool_names(self) -> list[str]:
        """The names of the pools this model shares."""
        return [pool.name for pool in self.pools]


class GatePacer(Protocol):
    """What a RateGate asks of a pacer: slots to wait for, slots to give back, and a 429 / 529
    to tell (a team's pacer tells the other workers)."""

    rate_per_s: float

    async def take(self, amount: float, factor: float = 1.0) -> float:
        """Take ``amount`` units; the seconds to wait before using them."""

    def put_back(self, amount: float, factor: float = 1.0) -> None:
        """Give back units taken but not used."""

    def note_throttle(self, factor: float, retry_after: float | None) -> None:
        """A 429 / 529 slowed the gate to ``factor``."""


class Pacer:
    """Hands out slots on a virtual clock: ``amount`` units take ``amount / rate`` seconds.

    A GatePacer kept in this process: ``take`` and ``put_back`` are ``reserve`` and ``refund``.
    """

    def __init__(self, rate_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self._clock = clock
        self._next = clock()

    def reserve(self, amount: float, factor: float = 1.0) -> float:
        """Reserve ``amount`` units; return the seconds to wait before using them."""
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + amount / (self.rate_per_s * factor)
        return slot - now

    def refund(self, amount: float, factor: float = 1.0) -> None:
        """Give back units reserved but not used (never moving the clock into the past)."""
        self._next = max(self._clock(), self._next - amount / (self.rate_per_s * factor))

    async def take(self, amount: float, factor: float = 1.0) -> float:
        """What a gate reserves by (GatePacer): ``reserve``."""
        return self.reserve(amount, factor)

    def put_back(self, amount: float, factor: float = 1.0) -> None:
        """What a gate refunds by (GatePacer): ``refund``."""
        self.refund(amount, factor)

    def note_throttle(self, factor: float, retry_after: float | None) -> None:
        """A 429 / 529 slowed the gate to ``factor``: nothing to tell for a local pacer."""
        del factor, retry_after


class Slots(Protocol):
    """A model's concurrency: anyio's CapacityLimiter, or a team's shared slots."""

    total_tokens: float

    async def __aenter__(self) -> None:
        """Wait for a free slot and take it."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """Give the slot back."""


class RateGate:
    """RPM and TPM pacers passed by one request at a time, with back-off and recovery.

    What a model's limiter and a pool's have in common; a None rate is unlimited.
    """

    def __init__(
        self, rpm: float | None, tpm: float | None, headroom: float, clock: Callable[[], float]
    ) -> None:
        self._clock = clock
        self.requests: GatePacer | None = Pacer(rpm * headroom / 60.0, clock) if rpm else None
        self.tokens: GatePacer | None = Pacer(tpm * headroom / 60.0, clock) if tpm else None
        self.dispatch = anyio.Lock(fast_acquire=True)  # held by the one request waiting its turn
        self._earliest = float("-inf")  # when the next request may go, from the last one's send
        self.factor = 1.0
        self._changed_at = clock()
        self._shrunk_at = float("-inf")
        self._throttled_at = float("-inf")
        self._paused_until = 0.0
        self.throttled = 0  # 429s and 529s seen

    def paces(self) -> bool:
        """Whether a request may have to wait at this gate at all."""
        return self.requests is not None or self.tokens is not None or self._paused_until != 0.0

    async def wait_turn(self, tokens: int) -> None:
        """Sleep until one more request of ``tokens`` may pass: past any pause, to its slot, and
        its spacing from the last one sent. The caller holds ``dispatch``."""
        pause = self._paused_until - self._clock()
        if pause > 0:
            await anyio.sleep(pause)
        wait = await self._take(tokens)
        # A shared pacer may have read a pause another worker's 429 set while it took slots.
        wait = max(wait, self._paused_until - self._clock())
        if wait > 0:
            await anyio.sleep(wait)
        hold = self._earliest - self._clock()
        if hold > 0:  # the previous request went late (a stall): keep the spacing from it
            await anyio.sleep(hold)

    def mark_sent(self) -> None:
        """The request goes now: the next one is spaced from this moment."""
        self._earliest = self._clock() + self._spacing() - LATE_TOLERANCE

    def _spacing(self) -> float:
        """The seconds one request spans at the current request rate.

        Only the request rate: a request's tokens are reserved at their worst case (input plus
        max_tokens) and partly refunded by ``settle``, so spacing by them would cap the rate at
        the worst case's however little the answers use.
        """
        if self.requests is None:
            return 0.0
        return 1.0 / (self.requests.rate_per_s * self.factor)

    async def _take(self, tokens: int) -> float:
        wait = 0.0
        if self.requests is not None:
            wait = await self.requests.take(1, self.factor)
        if self.tokens is not None:
            wait = max(wait, await self.tokens.take(tokens, self.factor))
        return wait

    def settle(self, reserved: int, used: int) -> None:
        """Return the tokens reserved for a request but not used by it."""
        if self.tokens is not None and used < reserved:
            self.tokens.put_back(reserved - used, self.factor)

    def slow_down(self, rate_limited: bool, retry_after: float | None) -> None:
        """A 429 (``rate_limited``) or 529: slow down, and pause for retry-after."""
        self.throttled += 1
        now = self._clock()
        self._throttled_at = now
        if retry_after is not None:
            self._paused_until = max(self._paused_until, now + retry_after)
        shrink, spacing = (0.5, 2.0) if rate_limited else (0.9, 1.0)
        if now - self._shrunk_at >= spacing:
            self._shrunk_at = now
            self._set_factor(self.factor * shrink, now)
        lead = self.requests or self.tokens
        if lead is not None:
            lead.note_throttle(self.factor, retry_after)

    def adopt(self, factor: float, throttled_ago: float, pause_s: float) -> None:
        """Another worker's 429 / 529 (a team's back-off): slow to ``factor`` if that is lower,
        recovering as if throttled ``throttled_ago`` seconds ago, and pause ``pause_s``."""
        now = self._clock()
        if pause_s > 0:
            self._paused_until = max(self._paused_until, now + pause_s)
        if factor < self.factor:
            # The same storm: no second shrink for it here, and recovery from when it was seen.
            self._throttled_at = max(self._throttled_at, now - throttled_ago)
            self._shrunk_at = max(self._shrunk_at, now - throttled_ago)
            self._set_factor(factor, now)

    def _recover(self) -> None:
        now = self._clock()
        if now - self._throttled_at < RECOVERY_QUIET:
            return  # throttled a moment ago: no recovery yet
        if self.factor < 1.0:
            since = max(self._changed_at, self._throttled_at + RECOVERY_QUIET)
            gained = (now - since) * RECOVERY_PER_SECOND
            if gained >= 0.01:
                self._set_factor(self.factor + gained, now)

    def _set_factor(self, factor: float, now: float) -> None:
        self.factor = min(1.0, max(MIN_FACTOR, factor))
        self._changed_at = now


class PoolLimiter(RateGate):
    """The pacers of limits several models share: one per pool, in its models' limiters."""

    def __init__(self, settings: PoolSettings, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(settings.rpm, settings.tpm, settings.headroom, clock)
        self.settings = settings


class ModelLimiter(RateGate):
    """Everything that paces one model's requests; shared by all of that model's workers.

    ``pools``: the limiters of the pools the model shares (``make_limiters`` builds them).
    """

    def __init__(
        self,
        settings: ModelLimitSettings,
        clock: Callable[[], float] = time.monotonic,
        pools: Sequence[PoolLimiter] = (),
    ) -> None:
        super().__init__(settings.rpm, settings.tpm, settings.headroom, clock)
        self.settings = settings
        self.slots: Slots = anyio.CapacityLimiter(settings.concurrency)
        self.started = 0  # requests sent for the first time, or finished unsent (claims.py)
        # One order for every model, so that no two requests hold gates the other waits for.
        self.pools = tuple(sorted(pools, key=lambda pool: pool.settings.name))

    async def acquire(self, tokens: int) -> None:
        """Wait until one more request of ``tokens`` (input plus max_tokens) may be sent.

        The caller holds a concurrency slot (``self.slots``) around the whole request.
        """
        self._recover()  # also for a model without rates: its concurrency recovers after a 429
        if not self.pools and not self.paces():
            return
        for pool in self.pools:
            pool._recover()
        gates: list[RateGate] = [self, *self.pools]
        async with contextlib.AsyncExitStack() as held:
            for gate in gates:
                await held.enter_async_context(gate.dispatch)
                await gate.wait_turn(tokens)
            for gate in gates:
                gate.mark_sent()

    def settle(self, reserved: int, used: int) -> None:
        """Return the tokens reserved for a request but not used by it, to its pools too."""
        super().settle(reserved, used)
        for pool in self.pools:
            pool.settle(reserved, used)

    def on_throttled(
        self, rate_limited: bool, retry_after: float | None, message: str = ""
    ) -> None:
        """A 429 (``rate_limited``) or 529: slow this model down and pause it for retry-after;
        a 429 whose ``message`` names the account slows and pauses the model's pools instead."""
        if rate_limited and self.pools and ACCOUNT_WORD in message.lower():
            self.throttled += 1
            for pool in self.pools:
                pool.slow_down(rate_limited, retry_after)
            return
        self.slow_down(rate_limited, retry_after)

    def _set_factor(self, factor: float, now: float) -> None:
        super()._set_factor(factor, now)
        self.slots.total_tokens = max(1, math.ceil(self.settings.concurrency * self.factor))


def make_limiters(
    limits: Mapping[str, ModelLimitSettings], clock: Callable[[], float] = time.monotonic
) -> dict[str, ModelLimiter]:
    """A limiter for each model; the models of one pool share one PoolLimiter."""
    pools: dict[str, PoolLimiter] = {}
    for settings in limits.values():
        for pool in settings.pools:
            if pool.name not in pools:
                pools[pool.name] = PoolLimiter(pool, clock)
    return {
        model: ModelLimiter(settings, clock, pools=[pools[name] for name in settings.pool_names()])
        for model, settings in limits.items()
    }


def describe_limits(limits: Mapping[str, ModelLimitSettings]) -> dict[str, Any]:
    """A run's limits as JSON, as a batch's settings keep them: each model's, each pool's."""
    pools = {
        pool.name: {
            "models": list(pool.models),
            "rpm": pool.rpm,
            "tpm": pool.tpm,
            "source": pool.source,
        }
        for settings in limits.values()
        for pool in settings.pools
    }
    models = {
        model: {
            "rpm": s.rpm,
            "tpm": s.tpm,
            "concurrency": s.concurrency,
            "pools": s.pool_names(),
        }
        for model, s in limits.items()
    }
    return {"models": models, "pools": pools}


def default_concurrency(rpm: float | None, expected_seconds: float = 20.0) -> int:
    """Enough workers to hold ``rpm`` when each request takes ``expected_seconds``."""
    if not rpm:
        return 64
    return max(8, min(1024, math.ceil(rpm * expected_seconds * 1.5 / 60.0)))

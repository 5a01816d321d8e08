"""Limits and budgets shared by every worker through the database.

A pacer (see limits.Pacer) is one row per model and kind holding the next free slot (and one per
pool and kind, ``rpm:pool:NAME``, for limits several models share). Reserving advances it
atomically, on the database's clock for PostgreSQL so that the machines' clocks do not matter:
the workers together keep one model's pace, and one pool's, however many of them there are and
whenever they join or leave. A worker takes its slots in small blocks (BLOCK_N requests' worth,
at most BLOCK_S seconds of the pacer's clock, in one ``UPDATE``), hands them out locally,
and gives back the unused end of its
last block when it is done, so a request costs no round trip of its own; every call to the
database goes through a thread (run/offload.py), never blocking the streams in flight.

The same ``UPDATE`` carries the team's back-off: a 429 or 529 one worker sees is written on the
model's (or pool's) pacer row, rate factor and retry-after pause, and every worker adopts it
with its next block. A model's concurrency can be the team's (``SharedSlots``): one row counts
the calls in flight, each worker's part kept in slot_holds so a dead worker's are freed by reap.

A capped batch has one budgets row; a reservation is a single ``UPDATE ... WHERE spent +
reserved + amount <= cap``, so the workers together never commit more than the cap, and each
worker's share of ``reserved`` is kept in budget_holds so that it is freed when the worker dies
(see claims.reap). Settling is written with the next reservation (or ``flush``): until then the
row holds the worst case, which only holds the budget tighter. The SQL is in store/limits.py.
A model that a period budget of its own caps (a batch of several models, run/budget.py) is held
the same way, in a model_budgets row per (batch, model) (``ModelLedger``): its cap is the batch's
spend on the model plus what is left of the budget, both read in the transaction that opens the
row (store/limits.py ``open_period``), so every sender sets the same cap whenever it starts.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType

import anyio

from batchrun.exceptions import StoreError
from batchrun.run.budget import Budget, BudgetRoom, model_rooms, period_began
from batchrun.run.limits import (
    RECOVERY_PER_SECOND,
    RECOVERY_QUIET,
    ModelLimiter,
    ModelLimitSettings,
    PoolLimiter,
    RateGate,
    make_limiters,
)
from batchrun.run.offload import offload
from batchrun.store import Store
from batchrun.store.limits import Block, PeriodCap, Throttle

log = logging.getLogger(__name__)

BUDGET_POLL = 0.2  # seconds between tries while other workers' reservations are in flight
# A block of a pacer's slots: BLOCK_N requests' worth (one UPDATE for them, not one each), but
# never more than BLOCK_S seconds of the clock, the most another worker waits to see a back-off
# while both send. By requests, not by time alone: at a rate far above what is sent, a block of
# 0.5 s would leave the slots of every other worker's block idle (each would wait its turn).
BLOCK_N = 8
BLOCK_S = 0.5
SLOT_SLACK = 0.1  # seconds a slot of our block may be late and still be used
SLOT_POLL = (
    0.1  # seconds between looks for a free shared concurrency slot while the team's are full
)


class SharedPacer:
    """A pacer (limits.GatePacer) whose virtual clock is a row of the ``pacers`` table.

    ``clock``: the time reservations are made at; None (the default) for the current time, on
    the database's clock for PostgreSQL. ``take`` and ``put_back`` work on a block of slots
    held locally, ``close`` gives back its unused end.
    """

    def __init__(
        self,
        store: Store,
        name: str,
        rate_per_s: float,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.store = store
        self.name = name
        self.clock = clock
        self.gate: RateGate | None = None  # told the team's back-off read with each block
        self._start = self._cursor = self._end = 0.0  # our block, on the pacer row's clock
        self._offset = 0.0  # the row's clock minus time.time()
        self._throttle: Throttle | None = None  # a 429 / 529 to write with the next block
        store.pacers.add(name)

    async def take(self, amount: float, factor: float = 1.0) -> float:
        """The next ``amount`` units from our block (a new block when it is used up, or a
        429 / 529 is to be written); the seconds to wait."""
        step = amount / (self.rate_per_s * factor)
        # Slots that passed are gone, but for the last SLOT_SLACK seconds: a loaded loop wakes
        # a little late, and each late send would otherwise lose the end of every block.
        self._cursor = max(self._cursor, self._row_now() - SLOT_SLACK)
        if self._throttle is not None or self._cursor + step > self._end + 1e-9:
            await self._next_block(step)
        slot = self._cursor
        self._cursor += step
        return max(0.0, slot - self._row_now())

    def put_back(self, amount: float, factor: float = 1.0) -> None:
        """Give back units taken but not used, to our block (never before its start or now)."""
        step = amount / (self.rate_per_s * factor)
        self._cursor = max(self._start, self._row_now(), self._cursor - step)

    def note_throttle(self, factor: float, retry_after: float | None) -> None:
        """A 429 / 529 slowed this worker to ``factor``: written with the next block."""
        self._throttle = Throttle(factor=factor, pause_s=retry_after)

    async def close(self) -> None:
        """Give back the unused end of our block, if nobody took slots after it."""
        unused = self._end - max(self._cursor, self._row_now())
        if unused > 0:
            await offload(self.store, self.store.pacers.give_back, self.name, unused, self._end)
        self._start = self._cursor = self._end = 0.0

    async def _next_block(self, step: float) -> None:
        # Whole slots: a block's odd remainder would be lost whenever another worker's follows.
        length = step * max(1, min(BLOCK_N, math.floor(BLOCK_S / step + 1e-9)))
        throttle, self._throttle = self._throttle, None
        sent = time.time()
        block = await offload(
            self.store, self.store.pacers.take_block, self.name, length, throttle, self._given_now()
        )
        # The row's clock read halfway through the round trip, as well as can be told.
        self._offset = block.now - (sent + time.time()) / 2
        start = block.end - length
        if abs(start - self._end) > 1e-6:  # others took slots since our last block: afresh
            self._start = self._cursor = start
        self._end = block.end
        self._adopt(block)

    def _adopt(self, block: Block) -> None:
        """Apply the team's back-off the row holds to our gate."""
        if self.gate is None or block.factor is None:
            return
        ago = block.now - (block.throttled_at or block.now)
        factor = min(1.0, block.factor + max(0.0, ago - RECOVERY_QUIET) * RECOVERY_PER_SECOND)
        pause = (block.paused_until or 0.0) - block.now
        if factor < 1.0 or pause > 0:
            self.gate.adopt(factor, ago, pause)

    def _given_now(self) -> float | None:
        return None if self.clock is None else self.clock()

    def _row_now(self) -> float:
        """The time on the row's clock: the given clock's, else ours moved to the database's."""
        return self.clock() if self.clock is not None else time.time() + self._offset


class SharedSlots:
    """A model's concurrency held by the team: at most ``total_tokens`` calls in flight across
    every worker (a ModelLimiter's ``slots``). One task of the worker at a time looks for a slot
    in the database; a slot freed while another task waits is handed to it without a round trip.
    """

    def __init__(self, store: Store, name: str, owner: str, limit: int) -> None:
        self.store = store
        self.name = name
        self.owner = owner
        self.limit = limit
        self.total_tokens: float = limit  # lowered by the model's back-off
        self._queue = anyio.Lock()
        self._spare = 0  # slots held in the database that no call of ours uses
        self._freed = anyio.Event()
        store.pacers.add_slots(name)

    async def __aenter__(self) -> None:
        async with self._queue:
            while not self._use_spare():
                limit = max(1, math.ceil(self.total_tokens))
                got = await offload(
                    self.store, self.store.pacers.take_slot, self.name, self.owner, limit
                )
                if got:
                    return
                with anyio.move_on_after(SLOT_POLL):
                    await self._freed.wait()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        # Handed on while a task of ours waits (unless backing off, when the team has fewer).
        if self._queue.locked() and self.total_tokens >= self.limit:
            self._spare += 1
            self._freed.set()
            self._freed = anyio.Event()
            return
        with anyio.CancelScope(shield=True):
            await self._give(1)

    async def close(self) -> None:
        """Give back the slots held that no call uses."""
        spare, self._spare = self._spare, 0
        with anyio.CancelScope(shield=True):
            await self._give(spare)

    def _use_spare(self) -> bool:
        if self._spare == 0:
            return False
        self._spare -= 1
        return True

    async def _give(self, count: int) -> None:
        for _ in range(count):
            try:
                await offload(self.store, self.store.pacers.give_slot, self.name, self.owner)
            except StoreError as exc:  # the hold stays: freed when this worker's row is reaped
                log.warning("could not give back a concurrency slot: %s", exc)


def shared_limiters(
    store: Store,
    limits: Mapping[str, ModelLimitSettings],
    *,
    owner: str | None = None,
) -> dict[str, ModelLimiter]:
    """Limiters whose RPM and TPM pacers, their pools' too, and their back-off are shared
    through the store; with an ``owner``, each model's concurrency is the team's too (else each
    worker's own)."""
    made = make_limiters(limits)
    pools: dict[str, PoolLimiter] = {}
    for model, limiter in made.items():
        _use_shared_pacers(store, limiter, model)
        if owner is not None:
            limiter.slots = SharedSlots(store, model, owner, limiter.settings.concurrency)
        pools.update((pool.settings.name, pool) for pool in limiter.pools)
    for name, pool in pools.items():
        # "pool:" keeps a pool's rows apart from a model's of the same name.
        _use_shared_pacers(store, pool, f"pool:{name}")
    return made


async def close_limiters(limiters: Mapping[str, ModelLimiter]) -> None:
    """Give back what the limiters hold unused: their blocks' slots, their concurrency slots."""
    gates: dict[int, RateGate] = {}
    for limiter in limiters.values():
        gates.update((id(gate), gate) for gate in (limiter, *limiter.pools))
        if isinstance(limiter.slots, SharedSlots):
            await limiter.slots.close()
    for gate in gates.values():
        for pacer in (gate.requests, gate.tokens):
            if isinstance(pacer, SharedPacer):
                await pacer.close()


def _use_shared_pacers(store: Store, gate: RateGate, key: str) -> None:
    """Swap the gate's pacers for rows ``rpm:<key>`` and ``tpm:<key>`` of the pacers table."""
    if gate.requests is not None:
        gate.requests = SharedPacer(store, f"rpm:{key}", gate.requests.rate_per_s)
    if gate.tokens is not None:
        gate.tokens = SharedPacer(store, f"tpm:{key}", gate.tokens.rate_per_s)
    # The back-off goes with the lead pacer, as RateGate.slow_down tells it.
    lead = gate.requests or gate.tokens
    if isinstance(lead, SharedPacer):
        lead.gate = gate


class SharedBudget(Budget):
    """A batch's cap (or, with ``model``, that model's cap within the batch, which its
    ``period`` budget sets) held in the database: reservations are atomic across every worker.
    Making one opens its row: store work, to be done off the event loop."""

    def __init__(
        self,
        store: Store,
        batch_id: str,
        owner: str,
        cap_nanos: int | None = None,
        *,
        model: str | None = None,
        period: PeriodCap | None = None,
    ) -> None:
        self.store = store
        self.batch_id = batch_id
        self.owner = owner
        if model is None:
            assert cap_nanos is not None  # a batch's cap is given
            self.ledger, self.key = store.budgets, {"batch_id": batch_id}
            spent = store.batch_spend(batch_id)
            self.ledger.open(self.key, cap_nanos=cap_nanos, spent_nanos=spent)
        else:
            assert period is not None  # a model's is worked out where its row is opened
            self.ledger, self.key = store.model_budgets, {"batch_id": batch_id, "model": model}
            cap_nanos, spent = self.ledger.open_period(self.key, period)
        super().__init__(cap_nanos, spent)
        self._settled = [0, 0]  # reserved and actual, not written yet
        self._lock = threading.Lock()  # settle runs in the loop, the writes in a thread

    async def reserve(self, nanos: int) -> bool:
        """Reserve ``nanos`` of the batch's cap; False when it can never fit."""
        while not self.exhausted:
            fits, others = await offload(self.store, self._try, nanos)
            if fits:
                self.reserved_nanos += nanos
                return True
            if others == 0:
                self.exhausted = True
                break
            await anyio.sleep(BUDGET_POLL)
        return False

    def settle(self, reserved: int, actual: int) -> None:
        """Replace a reservation by what the attempt really cost: here at once, in the shared
        row with the next reservation or ``flush`` (it holds the worst case meanwhile)."""
        with self._lock:
            self._settled[0] += reserved
            self._settled[1] += actual
        self.reserved_nanos -= reserved
        self.spent_nanos += actual

    def flush(self) -> None:
        """Write the settlements not written yet.

        A row that cannot be written (a full disk) keeps the reservation, which only holds the
        budget tighter: the answer is never dropped for it (the next open of the budget counts
        the batch's stored spend again).
        """
        with self._lock:
            (reserved, actual), self._settled = self._settled, [0, 0]
        if reserved == actual == 0:
            return
        try:
            self.ledger.settle(self.key, self.owner, reserved=reserved, actual=actual)
        except StoreError as exc:
            log.warning("could not settle a budget reservation: %s", exc)

    def _try(self, nanos: int) -> tuple[bool, int]:
        """Settle what is due, then one atomic reservation; (whether it fitted, the
        reservations in flight)."""
        self.flush()
        return self.ledger.reserve(self.key, self.owner, nanos)


class ModelLedger:
    """The model budgets of one sender of a batch, held in the store for every sender of it:
    ``share`` opens each (store work: call it off the event loop), ``flush`` writes their
    settlements. ``simulated``: the kind of spend the budgets count, as for the rooms."""

    def __init__(self, store: Store, batch_id: str, owner: str, *, simulated: bool) -> None:
        self.store = store
        self.batch_id = batch_id
        self.owner = owner
        self.simulated = simulated
        self.made: list[SharedBudget] = []

    def share(self, rooms: Sequence[BudgetRoom]) -> tuple[BudgetRoom, ...]:
        """The rooms, each model's tightest budget of its own (run.budget.model_rooms) held
        through this ledger: its shared budget made now, handed over by the room's
        ``held_by``."""
        held = {id(room): self._open(room) for room in model_rooms(rooms).values()}
        return tuple(
            dataclasses.replace(room, held_by=_given(held[id(room)])) if id(room) in held else room
            for room in rooms
        )

    def flush(self) -> None:
        """Write every model budget's settlements not written yet."""
        for budget in self.made:
            budget.flush()

    def _open(self, room: BudgetRoom) -> SharedBudget:
        model = room.budget.model
        assert model is not None  # model_rooms gives only rooms of one model
        # The cap is worked out in the row's transaction, the same from every sender whenever
        # it starts: the batch's spend on the model plus what is left of the budget.
        period = PeriodCap(
            budget_nanos=room.budget.cap_nanos,
            since=period_began(room.budget.period, time.time()),
            simulated=self.simulated,
        )
        budget = SharedBudget(self.store, self.batch_id, self.owner, model=model, period=period)
        self.made.append(budget)
        return budget


def _given(budget: Budget) -> Callable[[BudgetRoom], Budget]:
    """A room's ``held_by`` that hands over a budget made beforehand."""
    return lambda _room: budget


__all__: Sequence[str] = [
    "ModelLedger",
    "SharedBudget",
    "SharedPacer",
    "SharedSlots",
    "close_limiters",
    "shared_limiters",
]

"""A hard budget cap: each attempt reserves its worst-case cost before it is sent.

The worst case is the request's input tokens plus ``max_tokens`` of output, at the model's price
on that day. When the attempt ends, the reservation is replaced by what it actually cost (zero
for a failed attempt). A reservation that does not fit waits while other reservations are in
flight (they usually settle lower); when nothing is in flight and it still does not fit, the
budget is spent and dispatch stops. So committed spend never passes the cap, whatever the
concurrency and retries. (With ``--no-precheck`` or where count_tokens is refused, the input is a
generous local estimate rather than an exact count.)

The period budgets of the budgets file (batchrun.budgets) are enforced through the same cap: a
run's cap is the batch's own, lowered to its spend plus what is left of the tightest budget that
applies (``run_cap``). A budget over every model applies to every batch, and so does a budget of
the batch's only model. In a batch of several models, a budget of one of them caps that model
alone: a ``ModelBudget`` beside the batch's, holding what is left of the model's tightest budget
(``model_budgets``). When it is spent that model stops, its requests stay pending, and the other
models go on; resume sends them once the period renews. A run is measured against spend of its
own kind: a simulated run against simulated spend, a real one against real spend.

Every sender of a batch (``batchrun run`` and resume, one process or ``--processes``, team
workers: teams/sender.py and teams/worker.py) holds a ``ModelBudget`` in the database as it holds
the batch's cap (teams/shared.py): the room's ``held_by`` makes the shared budget, so that all of
them together stop at what is left of the model's budget. A room without ``held_by`` (the
judge's calls, grading/judge.py) holds it in memory.

A ``SpendWatch`` follows the spend of a run against every budget that applies to it, and says
once, at the moment it happens, that the spend crossed a budget's soft threshold (warn_at).
"""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import TYPE_CHECKING

import anyio

from batchrun.budgets import PeriodBudget, budgets_file, load_budgets, period_start
from batchrun.pricing import usd
from batchrun.run.progress import BudgetWarning

if TYPE_CHECKING:
    from batchrun.store import BatchInfo, Store

log = logging.getLogger(__name__)
# A soft threshold crossed during a run; apart, so that a run of several processes can say each
# once (cli/processes.py) rather than once per process.
crossings = logging.getLogger(f"{__name__}.crossings")


@dataclass(frozen=True, kw_only=True, slots=True)
class BudgetRoom:
    """One period budget that applies to a batch: the period's spend so far, and whether it caps
    the run (else it is only watched)."""

    budget: PeriodBudget
    spent_nanos: int
    enforced: bool
    # How a cap of one model of several is held: None, by this process alone; else the budget
    # this makes of the room (shared by every sender of the batch, teams/shared.py).
    held_by: Callable[[BudgetRoom], Budget] | None = field(default=None, compare=False)

    @property
    def left_nanos(self) -> int:
        """What is left of the budget (never below zero)."""
        return max(0, self.budget.cap_nanos - self.spent_nanos)

    @property
    def warned(self) -> bool:
        """Whether the spend passed the budget's soft threshold."""
        return self.spent_nanos >= self.budget.warn_at * self.budget.cap_nanos

    def warning(self) -> str:
        """``the day budget of $5.00 for all models: $4.10 spent this day (82%), past its
        warning threshold of 80%``."""
        used = self.spent_nanos / self.budget.cap_nanos
        return (
            f"{self.name()}: {usd(self.spent_nanos)} spent this {self.budget.period} "
            f"({used:.0%}), past its warning threshold of {self.budget.warn_at:.0%}"
        )

    def name(self) -> str:
        """``the day budget of $5.00 for all models``: which budget, for people."""
        whom = self.budget.model or "all models"
        return f"the {self.budget.period} budget of {usd(self.budget.cap_nanos)} for {whom}"

    def renews(self, now: float) -> str:
        """When the period ends and the budget is whole again, in UTC."""
        start = period_start(self.budget.period, now)
        if self.budget.period == "day":
            end = start + timedelta(days=1)
        else:
            end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
        return f"{end.isoformat()} 00:00 UTC"


@dataclass(frozen=True, kw_only=True, slots=True)
class RunCap:
    """A run's cap and the budgets behind it."""

    cap_nanos: int | None  # None: nothing caps the run
    rooms: tuple[BudgetRoom, ...]  # every period budget that applies to the batch
    binding: BudgetRoom | None  # the period budget that sets the cap; None: the batch's own

    def model_rooms(self) -> dict[str, BudgetRoom]:
        """Per model of a batch of several: the tightest budget of that model alone."""
        return model_rooms(self.rooms)


def period_began(period: str, now: float) -> float:
    """The epoch second the period going on began (its first UTC midnight)."""
    return float(calendar.timegm(period_start(period, now).timetuple()))


def budget_rooms(
    store: Store,
    models: Sequence[str],
    budgets: Sequence[PeriodBudget],
    *,
    simulated: bool,
    now: float,
) -> tuple[BudgetRoom, ...]:
    """The budgets that apply to a batch of ``models``, each with its period's spend so far."""
    chosen = [b for b in budgets if b.model is None or b.model in models]
    spend = {b.period: store.spend_since(period_began(b.period, now), simulated) for b in chosen}
    return tuple(
        BudgetRoom(
            budget=b,
            spent_nanos=sum(spend[b.period].values())
            if b.model is None
            else spend[b.period].get(b.model, 0),
            enforced=b.model is None or set(models) == {b.model},
        )
        for b in chosen
    )


def run_cap(
    store: Store,
    batch: BatchInfo,
    max_cost_nanos: int | None,
    budgets: Sequence[PeriodBudget],
    *,
    simulated: bool,
    now: float,
) -> RunCap:
    """The run's cap: the batch's own (kept with it, as ``batch_cap``), or its spend plus what
    is left of the tightest enforced period budget when that is less."""
    own = batch_cap(store, batch, max_cost_nanos)
    rooms = budget_rooms(store, store.batch_models(batch.id), budgets, simulated=simulated, now=now)
    enforced = [room for room in rooms if room.enforced]
    if not enforced:
        return RunCap(cap_nanos=own, rooms=rooms, binding=None)
    tightest = min(enforced, key=lambda room: room.left_nanos)
    period_cap = store.batch_spend(batch.id) + tightest.left_nanos
    if own is not None and own <= period_cap:
        return RunCap(cap_nanos=own, rooms=rooms, binding=None)
    return RunCap(cap_nanos=period_cap, rooms=rooms, binding=tightest)


def model_rooms(rooms: Sequence[BudgetRoom]) -> dict[str, BudgetRoom]:
    """Per model: the tightest of its own budgets that the batch's cap does not hold (a batch of
    several models); each caps that model alone."""
    tightest: dict[str, BudgetRoom] = {}
    for room in rooms:
        model = room.budget.model
        if room.enforced or model is None:
            continue
        if model not in tightest or room.left_nanos < tightest[model].left_nanos:
            tightest[model] = room
    return tightest


def period_rooms(store: Store, batch: BatchInfo, *, simulated: bool) -> tuple[BudgetRoom, ...]:
    """The budgets file's period budgets that apply to the batch now."""
    chosen = load_budgets(budgets_file())
    if not chosen:
        return ()
    models = store.batch_models(batch.id)
    return budget_rooms(store, models, chosen, simulated=simulated, now=time.time())


def worker_cap(store: Store, batch: BatchInfo, *, simulated: bool) -> int | None:
    """A team worker's cap for a batch: ``run_cap`` with the budgets file of its environment."""
    cap = run_cap(
        store, batch, None, load_budgets(budgets_file()), simulated=simulated, now=time.time()
    )
    if cap.binding is not None:
        log.warning(
            "batch %s is capped by %s: %s left", batch.name, cap.binding.name(),
            usd(cap.binding.left_nanos),
        )  # fmt: skip
    return cap.cap_nanos


def batch_cap(store: Store, batch: BatchInfo, max_cost_nanos: int | None) -> int | None:
    """The batch's cap for this run: the one given now, else the one it had; kept with it."""
    cap = max_cost_nanos or batch.max_cost_nanos
    if cap is not None:
        store.set_batch(batch.id, max_cost_nanos=cap)
    return cap


class Budget:
    """Spend so far, reservations in flight, and the cap (nano-dollars)."""

    def __init__(self, cap_nanos: int, spent_nanos: int) -> None:
        self.cap_nanos = cap_nanos
        self.spent_nanos = spent_nanos
        self.reserved_nanos = 0
        self.exhausted = False
        self._changed = anyio.Event()

    async def reserve(self, nanos: int) -> bool:
        """Reserve ``nanos``; False when it can never fit (the budget is spent)."""
        while not self.exhausted:
            if self.spent_nanos + self.reserved_nanos + nanos <= self.cap_nanos:
                self.reserved_nanos += nanos
                return True
            if self.reserved_nanos == 0:
                self.exhausted = True
                break
            await self._changed.wait()
        self._notify()
        return False

    def settle(self, reserved: int, actual: int) -> None:
        """Replace a reservation by what the attempt really cost."""
        self.reserved_nanos -= reserved
        self.spent_nanos += actual
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


class ModelBudget:
    """One model's cap inside a run of several: what is left of its tightest period budget,
    held by this process alone or, through the room's ``held_by``, by every sender of the batch."""

    def __init__(self, room: BudgetRoom) -> None:
        self.room = room
        self.held = room.held_by(room) if room.held_by else Budget(room.left_nanos, 0)

    async def reserve(self, nanos: int) -> bool:
        """Reserve ``nanos`` of the model's cap; False when it can never fit."""
        return await self.held.reserve(nanos)

    def settle(self, reserved: int, actual: int) -> None:
        """Replace a reservation by what the attempt really cost."""
        self.held.settle(reserved, actual)

    def why(self) -> str:
        """Why the model stopped, for people: which budget, and when it is whole again."""
        return (
            f"{self.room.name()} has no room for the next request's worst case; the other "
            f"models go on. It is whole again at {self.room.renews(time.time())}; then "
            "resume the batch to send the rest"
        )


def model_budgets(rooms: Sequence[BudgetRoom]) -> dict[str, ModelBudget]:
    """A ``ModelBudget`` per model that a budget of its own caps apart (``model_rooms``)."""
    return {model: ModelBudget(room) for model, room in model_rooms(rooms).items()}


class SpendWatch:
    """A run's spend against each budget that applies to it: the soft thresholds it crosses."""

    def __init__(self, rooms: Sequence[BudgetRoom]) -> None:
        self._rooms = list(rooms)
        self._warned = {room.budget for room in rooms if room.warned}

    def add(self, model: str, nanos: int) -> list[BudgetWarning]:
        """Count ``nanos`` spent on ``model``; a warning per budget whose threshold that
        crossed (each said once, also to the log)."""
        said: list[BudgetWarning] = []
        for n, before in enumerate(self._rooms):
            if nanos <= 0 or before.budget.model not in (None, model):
                continue
            room = self._rooms[n] = replace(before, spent_nanos=before.spent_nanos + nanos)
            if room.warned and room.budget not in self._warned:
                self._warned.add(room.budget)
                said.append(BudgetWarning(budget=room.budget, text=room.warning()))
                crossings.warning("%s", said[-1].text)
        return said

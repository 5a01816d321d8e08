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
applies (``run_cap``). A budget over every model applies to every batch; a budget of one model
applies to a batch of that model alone, and is only watched for a batch of several models (one
cap over the batch cannot hold one model's spend apart). A run is measured against spend of its
own kind: a simulated run against simulated spend, a real one against real spend.
"""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import anyio

from batchrun.budgets import PeriodBudget, budgets_file, load_budgets, period_start
from batchrun.pricing import usd

if TYPE_CHECKING:
    from batchrun.store import BatchInfo, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class BudgetRoom:
    """One period budget that applies to a batch: the period's spend so far, and whether it caps
    the run (else it is only watched)."""

    budget: PeriodBudget
    spent_nanos: int
    enforced: bool

    @property
    def left_nanos(self) -> int:
        """What is left of the budget (never below zero)."""
        return max(0, self.budget.cap_nanos - self.spent_nanos)

    @property
    def warned(self) -> bool:
        """Whether the spend passed the budget's soft threshold."""
        return self.spent_nanos >= self.budget.warn_at * self.budget.cap_nanos

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


def _since(period: str, now: float) -> float:
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
    spend = {b.period: store.spend_since(_since(b.period, now), simulated) for b in chosen}
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

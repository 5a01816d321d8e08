"""Limits and budgets shared by every worker through the database.

A pacer (see limits.Pacer) is one row per model and kind holding the next free slot (and one per
pool and kind, ``rpm:pool:NAME``, for limits several models share). Reserving advances it
atomically, on the database's clock for PostgreSQL so that the machines' clocks do not matter:
the workers together keep one model's pace, and one pool's, however many of them there are and
whenever they join or leave. A capped batch has one budgets row; a reservation is a single
``UPDATE ... WHERE spent + reserved + amount <= cap``, so the workers together never commit more
than the cap, and each worker's share of ``reserved`` is kept in budget_holds so that it is freed
when the worker dies (see claims.reap). The SQL is in store/limits.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import anyio

from batchrun.exceptions import StoreError
from batchrun.run.budget import Budget
from batchrun.run.limits import (
    ModelLimiter,
    ModelLimitSettings,
    Pacer,
    PoolLimiter,
    RateGate,
    make_limiters,
)
from batchrun.store import Store

log = logging.getLogger(__name__)

BUDGET_POLL = 0.2  # seconds between tries while other workers' reservations are in flight


class SharedPacer(Pacer):
    """A pacer whose virtual clock is a row of the ``pacers`` table.

    ``clock``: the time reservations are made at; None (the default) for the current time, on
    the database's clock for PostgreSQL.
    """

    def __init__(
        self,
        store: Store,
        name: str,
        rate_per_s: float,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(rate_per_s)
        self.store = store
        self.name = name
        self.clock = clock
        store.pacers.add(name)

    def reserve(self, amount: float, factor: float = 1.0) -> float:
        """Reserve ``amount`` units on the shared clock; the seconds to wait."""
        step = amount / (self.rate_per_s * factor)
        next_at, now = self.store.pacers.advance(self.name, step, self._now())
        return max(0.0, next_at - step - now)

    def refund(self, amount: float, factor: float = 1.0) -> None:
        """Give back units reserved but not used."""
        step = amount / (self.rate_per_s * factor)
        self.store.pacers.move_back(self.name, step, self._now())

    def _now(self) -> float | None:
        return None if self.clock is None else self.clock()


def shared_limiters(
    store: Store, limits: Mapping[str, ModelLimitSettings]
) -> dict[str, ModelLimiter]:
    """Limiters whose RPM and TPM pacers, their pools' too, are shared through the store
    (concurrency, spacing and back-off stay local to each worker)."""
    made = make_limiters(limits)
    pools: dict[str, PoolLimiter] = {}
    for model, limiter in made.items():
        _share(store, limiter, model)
        pools.update((pool.settings.name, pool) for pool in limiter.pools)
    for name, pool in pools.items():
        # "pool:" keeps a pool's rows apart from a model's of the same name.
        _share(store, pool, f"pool:{name}")
    return made


def _share(store: Store, gate: RateGate, key: str) -> None:
    """Swap the gate's pacers for rows ``rpm:<key>`` and ``tpm:<key>`` of the pacers table."""
    if gate.requests is not None:
        gate.requests = SharedPacer(store, f"rpm:{key}", gate.requests.rate_per_s)
    if gate.tokens is not None:
        gate.tokens = SharedPacer(store, f"tpm:{key}", gate.tokens.rate_per_s)


class SharedBudget(Budget):
    """A batch's cap held in the database: reservations are atomic across every worker."""

    def __init__(self, store: Store, batch_id: str, owner: str, cap_nanos: int) -> None:
        spent = store.batch_spend(batch_id)
        super().__init__(cap_nanos, spent)
        self.store = store
        self.batch_id = batch_id
        self.owner = owner
        store.budgets.open(batch_id, cap_nanos=cap_nanos, spent_nanos=spent)

    async def reserve(self, nanos: int) -> bool:
        """Reserve ``nanos`` of the batch's cap; False when it can never fit."""
        while not self.exhausted:
            fits, others = self._try(nanos)
            if fits:
                self.reserved_nanos += nanos
                return True
            if others == 0:
                self.exhausted = True
                break
            await anyio.sleep(BUDGET_POLL)
        return False

    def settle(self, reserved: int, actual: int) -> None:
        """Replace a reservation by what the attempt really cost, in the shared row.

        A row that cannot be written (a full disk) keeps the reservation, which only holds the
        budget tighter: the answer is never dropped for it (the next open of the budget counts
        the batch's stored spend again).
        """
        try:
            self.store.budgets.settle(self.batch_id, self.owner, reserved=reserved, actual=actual)
        except StoreError as exc:
            log.warning("could not settle a budget reservation: %s", exc)
        self.reserved_nanos -= reserved
        self.spent_nanos += actual

    def _try(self, nanos: int) -> tuple[bool, int]:
        """One atomic reservation; (whether it fitted, the reservations in flight)."""
        return self.store.budgets.reserve(self.batch_id, self.owner, nanos)


__all__: Sequence[str] = ["SharedBudget", "SharedPacer", "shared_limiters"]

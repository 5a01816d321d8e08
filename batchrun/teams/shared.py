"""Limits and budgets shared by every worker through the database.

A pacer (see limits.Pacer) is one row per model and kind holding the next free slot. Reserving
advances it atomically, on the database's clock for PostgreSQL so that the machines' clocks do
not matter: the workers together keep one model's pace, however many of them there are and
whenever they join or leave. A capped batch has one budgets row; a reservation is a single
``UPDATE ... WHERE spent + reserved + amount <= cap``, so the workers together never commit more
than the cap, and each worker's share of ``reserved`` is kept in budget_holds so that it is freed
when the worker dies (see claims.reap).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
from sqlalchemy import Float, Select, cast, func, insert, literal, select, update
from sqlalchemy.sql.elements import ColumnElement

from batchrun.run.budget import Budget
from batchrun.run.limits import ModelLimiter, ModelLimitSettings, Pacer
from batchrun.store import Store
from batchrun.store.tables import budget_holds, budgets, pacers

BUDGET_POLL = 0.2  # seconds between tries while other workers' reservations are in flight


def _now(store: Store) -> ColumnElement[float]:
    if store.engine.dialect.name == "postgresql":
        return cast(func.extract("epoch", func.now()), Float)
    return literal(time.time(), Float)


def _greatest(store: Store, a: ColumnElement[float], b: ColumnElement[float]) -> Any:
    name = "greatest" if store.engine.dialect.name == "postgresql" else "max"
    return getattr(func, name)(a, b)


class SharedPacer(Pacer):
    """A pacer whose virtual clock is a row of the ``pacers`` table."""

    def __init__(self, store: Store, name: str, rate_per_s: float) -> None:
        super().__init__(rate_per_s)
        self.store = store
        self.name = name
        with store._begin() as connection:
            connection.execute(
                store._insert_ignore(pacers).values(name=name, next_at=0.0),
            )

    def reserve(self, amount: float, factor: float = 1.0) -> float:
        """Reserve ``amount`` units on the shared clock; the seconds to wait."""
        step = amount / (self.rate_per_s * factor)
        now = _now(self.store)
        with self.store._begin() as connection:
            next_at, at = connection.execute(
                update(pacers)
                .where(pacers.c.name == self.name)
                .values(next_at=_greatest(self.store, pacers.c.next_at, now) + step)
                .returning(pacers.c.next_at, now)
            ).one()
        return max(0.0, float(next_at) - step - float(at))

    def refund(self, amount: float, factor: float = 1.0) -> None:
        """Give back units reserved but not used."""
        step = amount / (self.rate_per_s * factor)
        now = _now(self.store)
        with self.store._begin() as connection:
            connection.execute(
                update(pacers)
                .where(pacers.c.name == self.name)
                .values(next_at=_greatest(self.store, now, pacers.c.next_at - step))
            )


def shared_limiters(
    store: Store, limits: Mapping[str, ModelLimitSettings]
) -> dict[str, ModelLimiter]:
    """Limiters whose RPM and TPM pacers are shared through the store (concurrency stays local)."""
    made = {}
    for model, settings in limits.items():
        limiter = ModelLimiter(settings)
        if limiter.requests is not None:
            limiter.requests = SharedPacer(store, f"rpm:{model}", limiter.requests.rate_per_s)
        if limiter.tokens is not None:
            limiter.tokens = SharedPacer(store, f"tpm:{model}", limiter.tokens.rate_per_s)
        made[model] = limiter
    return made


class SharedBudget(Budget):
    """A batch's cap held in the database: reservations are atomic across every worker."""

    def __init__(self, store: Store, batch_id: str, owner: str, cap_nanos: int) -> None:
        spent = store.batch_spend(batch_id)
        super().__init__(cap_nanos, spent)
        self.store = store
        self.batch_id = batch_id
        self.owner = owner
        with store._begin() as connection:
            connection.execute(
                store._insert_ignore(budgets).values(
                    batch_id=batch_id, cap_nanos=cap_nanos, spent_nanos=spent, reserved_nanos=0
                )
            )
            connection.execute(
                update(budgets).where(budgets.c.batch_id == batch_id).values(cap_nanos=cap_nanos)
            )

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
        """Replace a reservation by what the attempt really cost, in the shared row."""
        with self.store._begin() as connection:
            connection.execute(
                update(budgets)
                .where(budgets.c.batch_id == self.batch_id)
                .values(
                    reserved_nanos=budgets.c.reserved_nanos - reserved,
                    spent_nanos=budgets.c.spent_nanos + actual,
                )
            )
            self._hold(connection, -reserved)
        self.reserved_nanos -= reserved
        self.spent_nanos += actual

    def _try(self, nanos: int) -> tuple[bool, int]:
        """One atomic reservation; (whether it fitted, the reservations in flight)."""
        row = budgets.c
        with self.store._begin() as connection:
            done = connection.execute(
                update(budgets)
                .where(
                    row.batch_id == self.batch_id,
                    row.spent_nanos + row.reserved_nanos + nanos <= row.cap_nanos,
                )
                .values(reserved_nanos=row.reserved_nanos + nanos)
            )
            if done.rowcount == 1:
                self._hold(connection, nanos)
                return True, 0
            reserved = connection.execute(_reserved(self.batch_id)).scalar_one()
        return False, int(reserved)

    def _hold(self, connection: Any, nanos: int) -> None:
        held = connection.execute(
            update(budget_holds)
            .where(budget_holds.c.worker_id == self.owner, budget_holds.c.batch_id == self.batch_id)
            .values(nanos=budget_holds.c.nanos + nanos)
        )
        if held.rowcount == 0:
            connection.execute(
                insert(budget_holds).values(
                    worker_id=self.owner, batch_id=self.batch_id, nanos=nanos
                )
            )


def _reserved(batch_id: str) -> Select[tuple[int]]:
    return select(budgets.c.reserved_nanos).where(budgets.c.batch_id == batch_id)


__all__: Sequence[str] = ["SharedBudget", "SharedPacer", "shared_limiters"]

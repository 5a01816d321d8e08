"""Limits shared through the database (teams/shared.py's SQL): pacers and budgets.

A pacer is one row per name holding the next free slot; advancing it is one ``UPDATE``, on the
database's clock for PostgreSQL unless the caller gives its own time. A capped batch has one
budgets row; a reservation is one ``UPDATE ... WHERE spent + reserved + amount <= cap``, and each
worker's share of ``reserved`` is kept in budget_holds so that it is freed when the worker dies.
"""

from __future__ import annotations

import time

from sqlalchemy import ColumnElement, Connection, Float, insert, literal, select, update

from batchrun.store.database import Database
from batchrun.store.tables import budget_holds, budgets, pacers


class Pacers:
    """The pacers table: one virtual clock per name (``rpm:<model>``, ``tpm:<model>``, and
    ``rpm:pool:<name>``, ``tpm:pool:<name>`` for a pool of limits several models share)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def add(self, name: str) -> None:
        """Make the pacer's row if it has none (its first slot free at once)."""
        with self.database.begin() as connection:
            connection.execute(self.database.insert_ignore(pacers).values(name=name, next_at=0.0))

    def advance(self, name: str, step: float, now: float | None = None) -> tuple[float, float]:
        """Take the next slot and move the clock ``step`` past it: (the new next slot, now).

        ``now``: the caller's time; None for the database's clock.
        """
        at = self._now(now)
        with self.database.begin() as connection:
            next_at, then = connection.execute(
                update(pacers)
                .where(pacers.c.name == name)
                .values(next_at=self.database.greatest(pacers.c.next_at, at) + step)
                .returning(pacers.c.next_at, at)
            ).one()
        return float(next_at), float(then)

    def move_back(self, name: str, step: float, now: float | None = None) -> None:
        """Give ``step`` back to the clock, never to before ``now``."""
        at = self._now(now)
        with self.database.begin() as connection:
            connection.execute(
                update(pacers)
                .where(pacers.c.name == name)
                .values(next_at=self.database.greatest(at, pacers.c.next_at - step))
            )

    def _now(self, now: float | None) -> ColumnElement[float]:
        if now is not None:
            return literal(now, Float)
        return self.database.clock(time.time())


class Budgets:
    """The budgets and budget_holds tables: a batch's cap, and each worker's reservations."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def open(self, batch_id: str, *, cap_nanos: int, spent_nanos: int) -> None:
        """Make the batch's budget row if it has none, and set its cap (and its spend to at least
        ``spent_nanos``)."""
        row = {"batch_id": batch_id, "spent_nanos": spent_nanos, "reserved_nanos": 0}
        with self.database.begin() as connection:
            connection.execute(
                self.database.insert_ignore(budgets).values(cap_nanos=cap_nanos, **row)
            )
            # Never below the spend stored with the results (a settle that could not be written,
            # a run from before the shared budget): the cap counts all of it.
            connection.execute(
                update(budgets)
                .where(budgets.c.batch_id == batch_id)
                .values(
                    cap_nanos=cap_nanos,
                    spent_nanos=self.database.greatest(budgets.c.spent_nanos, literal(spent_nanos)),
                )
            )

    def reserve(self, batch_id: str, owner: str, nanos: int) -> tuple[bool, int]:
        """One atomic reservation; (whether it fitted, the reservations in flight if not)."""
        row = budgets.c
        with self.database.begin() as connection:
            done = connection.execute(
                update(budgets)
                .where(
                    row.batch_id == batch_id,
                    row.spent_nanos + row.reserved_nanos + nanos <= row.cap_nanos,
                )
                .values(reserved_nanos=row.reserved_nanos + nanos)
            )
            if done.rowcount == 1:
                _hold(connection, batch_id, owner, nanos)
                return True, 0
            reserved = connection.execute(
                select(row.reserved_nanos).where(row.batch_id == batch_id)
            ).scalar_one()
        return False, int(reserved)

    def settle(self, batch_id: str, owner: str, *, reserved: int, actual: int) -> None:
        """Replace a reservation by what the attempt really cost."""
        with self.database.begin() as connection:
            connection.execute(
                update(budgets)
                .where(budgets.c.batch_id == batch_id)
                .values(
                    reserved_nanos=budgets.c.reserved_nanos - reserved,
                    spent_nanos=budgets.c.spent_nanos + actual,
                )
            )
            _hold(connection, batch_id, owner, -reserved)


def _hold(connection: Connection, batch_id: str, owner: str, nanos: int) -> None:
    """Add ``nanos`` to the worker's hold on the batch's budget."""
    held = connection.execute(
        update(budget_holds)
        .where(budget_holds.c.worker_id == owner, budget_holds.c.batch_id == batch_id)
        .values(nanos=budget_holds.c.nanos + nanos)
    )
    if held.rowcount == 0:
        connection.execute(
            insert(budget_holds).values(worker_id=owner, batch_id=batch_id, nanos=nanos)
        )

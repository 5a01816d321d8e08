"""Limits shared through the database (teams/shared.py's SQL): pacers and budgets.

A pacer is one row per name holding the next free slot; advancing it is one ``UPDATE``, on the
database's clock for PostgreSQL unless the caller gives its own time. A capped batch has one
budgets row; a reservation is one ``UPDATE ... WHERE spent + reserved + amount <= cap``, and each
worker's share of ``reserved`` is kept in budget_holds so that it is freed when the worker dies.
A model that a period budget of its own caps within a batch has a model_budgets row, held the
same way (model_budget_holds).

A worker takes a pacer's slots in blocks (``take_block``: one ``UPDATE`` for several slots, which
also reads and writes the team's back-off kept on the row), and gives back the unused end of its
last block only when nobody took slots after it (``give_back``). A model's shared concurrency is
one slots row of calls in flight, each worker's part in slot_holds (freed as budget_holds are).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Table,
    and_,
    case,
    func,
    insert,
    literal,
    select,
    update,
)

from batchrun.store.database import Database, dialect_insert
from batchrun.store.tables import (
    budget_holds,
    budgets,
    model_budget_holds,
    model_budgets,
    pacers,
    results,
    slot_holds,
    slots,
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Throttle:
    """A 429 / 529 to write with a pacer row: the rate factor now, and a pause (or none)."""

    factor: float
    pause_s: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Block:
    """Slots taken in one go: they span [end - step, end) on the clock that ``now`` is on, and
    the team's back-off as the row holds it (None: never throttled)."""

    end: float
    now: float
    factor: float | None
    throttled_at: float | None
    paused_until: float | None


class Pacers:
    """The pacers table: one virtual clock per name (``rpm:<model>``, ``tpm:<model>``, and
    ``rpm:pool:<name>``, ``tpm:pool:<name>`` for a pool of limits several models share)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def add(self, name: str) -> None:
        """Make the pacer's row if it has none (its first slot free at once)."""
        with self.database.begin() as connection:
            connection.execute(self.database.insert_ignore(pacers).values(name=name, next_at=0.0))

    def take_block(
        self, name: str, step: float, throttle: Throttle | None = None, now: float | None = None
    ) -> Block:
        """Take ``step`` seconds of slots at once, writing a 429 / 529 seen (``throttle``) first;
        the block and the back-off the row holds."""
        at = self._now(now)
        row = pacers.c
        with self.database.begin() as connection:
            if throttle is not None:
                connection.execute(self._throttled(name, throttle, at))
            found = connection.execute(
                update(pacers)
                .where(row.name == name)
                .values(next_at=self.database.greatest(row.next_at, at) + step)
                .returning(row.next_at, at, row.factor, row.throttled_at, row.paused_until)
            ).one()
        end, then, factor, throttled_at, paused_until = found
        return Block(
            end=float(end),
            now=float(then),
            factor=factor,
            throttled_at=throttled_at,
            paused_until=paused_until,
        )

    def _throttled(self, name: str, throttle: Throttle, at: ColumnElement[float]) -> Any:
        """The UPDATE that writes a 429 / 529 on the row: the factor, and a longer pause."""
        values: dict[str, Any] = {"factor": throttle.factor, "throttled_at": at}
        if throttle.pause_s is not None:
            since = func.coalesce(pacers.c.paused_until, 0.0)
            values["paused_until"] = self.database.greatest(since, at + throttle.pause_s)
        return update(pacers).where(pacers.c.name == name).values(**values)

    def give_back(self, name: str, step: float, end: float) -> bool:
        """Move the clock back ``step`` if it still ends at ``end`` (nobody took slots after
        ours, so they are free again); whether it did."""
        with self.database.begin() as connection:
            done = connection.execute(
                update(pacers)
                .where(pacers.c.name == name, pacers.c.next_at == end)
                .values(next_at=pacers.c.next_at - step)
            )
        return bool(done.rowcount)

    def add_slots(self, name: str) -> None:
        """Make the shared concurrency row of ``name`` if it has none (nothing in flight)."""
        with self.database.begin() as connection:
            connection.execute(self.database.insert_ignore(slots).values(name=name, in_flight=0))

    def take_slot(self, name: str, owner: str, limit: int) -> bool:
        """One more call in flight for ``owner`` if the team has fewer than ``limit``."""
        with self.database.begin() as connection:
            done = connection.execute(
                update(slots)
                .where(slots.c.name == name, slots.c.in_flight < limit)
                .values(in_flight=slots.c.in_flight + 1)
            )
            if done.rowcount != 1:
                return False
            _hold_slot(connection, owner, name, 1)
        return True

    def give_slot(self, name: str, owner: str) -> None:
        """One call of ``owner`` in flight less."""
        with self.database.begin() as connection:
            connection.execute(
                update(slots).where(slots.c.name == name).values(in_flight=slots.c.in_flight - 1)
            )
            _hold_slot(connection, owner, name, -1)

    def _now(self, now: float | None) -> ColumnElement[float]:
        if now is not None:
            return literal(now, Float)
        return self.database.clock(time.time())


def _hold_slot(connection: Connection, owner: str, name: str, change: int) -> None:
    """Add ``change`` to the worker's calls in flight of ``name``."""
    where = (slot_holds.c.worker_id == owner, slot_holds.c.name == name)
    held = connection.execute(
        update(slot_holds).where(*where).values(slots=slot_holds.c.slots + change)
    )
    if held.rowcount == 0:
        connection.execute(insert(slot_holds).values(worker_id=owner, name=name, slots=change))


def free_slots(connection: Connection, owner: str) -> None:
    """Give a dead or leaving worker's calls in flight back to their rows, and drop its holds
    (each slots row locked before its hold, as take_slot and give_slot lock them)."""
    names = connection.execute(
        select(slot_holds.c.name).where(slot_holds.c.worker_id == owner).order_by(slot_holds.c.name)
    ).scalars()
    for name in list(names):
        connection.execute(select(slots.c.in_flight).where(slots.c.name == name).with_for_update())
        mine = (slot_holds.c.worker_id == owner, slot_holds.c.name == name)
        held = connection.execute(select(slot_holds.c.slots).where(*mine)).scalar_one_or_none()
        if held is None:
            continue
        connection.execute(
            update(slots).where(slots.c.name == name).values(in_flight=slots.c.in_flight - held)
        )
        connection.execute(slot_holds.delete().where(*mine))


Key = Mapping[str, str]  # a budget's row: {"batch_id": ...}, and "model" for a model's


@dataclass(frozen=True, kw_only=True, slots=True)
class PeriodCap:
    """A model's cap within a batch that a period budget of its own sets: the budget's cap,
    the epoch second its period began, and the kind of spend it counts (simulated or real)."""

    budget_nanos: int
    since: float
    simulated: bool


class Budgets:
    """A budgets table and its holds table: a cap, and each worker's reservations of it.

    ``store.budgets`` holds a batch's cap (key ``{"batch_id": ...}``), ``store.model_budgets`` a
    model's within a batch (key ``{"batch_id": ..., "model": ...}``): the same SQL on two pairs
    of tables (HOLDS).
    """

    def __init__(self, database: Database, table: Table = budgets) -> None:
        self.database = database
        self.table = table
        self.holds = HOLDS[table]

    def open(self, key: Key, *, cap_nanos: int, spent_nanos: int) -> None:
        """Make the budget's row if it has none, and set its cap (and its spend to at least
        ``spent_nanos``)."""
        with self.database.begin() as connection:
            self._open(connection, key, cap_nanos, spent_nanos)

    def open_period(self, key: Key, period: PeriodCap) -> tuple[int, int]:
        """Open a model's row (key ``batch_id`` and ``model``) at the cap its period budget
        leaves: the batch's spend on the model plus what is left of the budget, both read in
        this transaction, so that every sender sets the same cap whenever it starts; (the cap,
        the batch's spend on the model)."""
        with self.database.begin() as connection:
            spent, period_spent = _model_spend(connection, key, period)
            cap = spent + max(0, period.budget_nanos - period_spent)
            self._open(connection, key, cap, spent)
        return cap, spent

    def _open(self, connection: Connection, key: Key, cap_nanos: int, spent_nanos: int) -> None:
        row = {**key, "spent_nanos": spent_nanos, "reserved_nanos": 0}
        connection.execute(
            self.database.insert_ignore(self.table).values(cap_nanos=cap_nanos, **row)
        )
        # Never below the spend stored with the results (a settle that could not be written,
        # a run from before the shared budget): the cap counts all of it.
        spent = self.table.c.spent_nanos
        connection.execute(
            update(self.table)
            .where(*_match(self.table, key))
            .values(
                cap_nanos=cap_nanos,
                spent_nanos=self.database.greatest(spent, literal(spent_nanos)),
            )
        )

    def reserve(self, key: Key, owner: str, nanos: int) -> tuple[bool, int]:
        """One atomic reservation; (whether it fitted, the reservations in flight if not).

        The worker's hold is written before the budget row, the order settle and free_holds
        lock them in (no deadlock between them on PostgreSQL); a reservation that does not
        fit rolls both back.
        """
        try:
            with self.database.begin() as connection:
                self._take(connection, key, owner, nanos)
        except _NoRoom:
            with self.database.connect() as connection:
                reserved = connection.execute(
                    select(self.table.c.reserved_nanos).where(*_match(self.table, key))
                ).scalar_one()
            return False, int(reserved)
        return True, 0

    def _take(self, connection: Connection, key: Key, owner: str, nanos: int) -> None:
        """The hold, then the budget row if the reservation fits; else _NoRoom."""
        self._hold(connection, key, owner, nanos)
        row = self.table.c
        done = connection.execute(
            update(self.table)
            .where(
                *_match(self.table, key),
                row.spent_nanos + row.reserved_nanos + nanos <= row.cap_nanos,
            )
            .values(reserved_nanos=row.reserved_nanos + nanos)
        )
        if done.rowcount != 1:
            raise _NoRoom

    def settle(self, key: Key, owner: str, *, reserved: int, actual: int) -> None:
        """Replace a reservation by what the attempt really cost (the hold first, as reserve)."""
        row = self.table.c
        with self.database.begin() as connection:
            self._hold(connection, key, owner, -reserved)
            connection.execute(
                update(self.table)
                .where(*_match(self.table, key))
                .values(
                    reserved_nanos=row.reserved_nanos - reserved,
                    spent_nanos=row.spent_nanos + actual,
                )
            )

    def _hold(self, connection: Connection, key: Key, owner: str, nanos: int) -> None:
        """Add ``nanos`` to the worker's hold on the budget: one upsert, since two reservations
        of one worker may make its first hold at once (nothing serializes them before it)."""
        holds = self.holds
        made = dialect_insert(connection.dialect.name, holds)
        made = made.values(worker_id=owner, nanos=nanos, **key)
        connection.execute(
            made.on_conflict_do_update(
                index_elements=list(holds.primary_key.columns),
                set_={"nanos": holds.c.nanos + made.excluded.nanos},
            )
        )


class _NoRoom(Exception):
    """A reservation that does not fit: its transaction is rolled back."""


# Each budgets table, and the table of the workers' holds on its rows (the key's columns).
HOLDS: Mapping[Table, Table] = {budgets: budget_holds, model_budgets: model_budget_holds}


def free_holds(
    database: Database, connection: Connection, owner: str, *, died: bool = False
) -> None:
    """Give a worker's holds back to the budgets they are on (it stopped, or ``died``).

    A dead worker may have had answers stored whose cost it never settled on the row: then
    each budget's spend is raised to at least what the results say (as ``open`` does), so
    that the others cannot reserve it again. (That can count twice a live worker's stored but
    unsettled answers: the budget is held tighter, never passed.) The holds are locked before
    the budget rows, in key order, the order ``reserve`` and ``settle`` lock them in, so that
    freeing a worker's holds beside its live reservations cannot deadlock on PostgreSQL.
    """
    for table, holds in HOLDS.items():
        names = [c.name for c in holds.primary_key.columns if c.name != "worker_id"]
        found = connection.execute(
            select(*(holds.c[name] for name in names), holds.c.nanos)
            .where(holds.c.worker_id == owner)
            .order_by(*(holds.c[name] for name in names))
            .with_for_update()
        ).all()
        for *values, nanos in found:
            key = dict(zip(names, values, strict=True))
            given: dict[str, Any] = {"reserved_nanos": table.c.reserved_nanos - nanos}
            if died:
                stored = select(func.coalesce(func.sum(results.c.cost_nanos), 0))
                spend = stored.where(*_match(results, key)).scalar_subquery()
                given["spent_nanos"] = database.greatest(table.c.spent_nanos, spend)
            connection.execute(update(table).where(*_match(table, key)).values(**given))
        connection.execute(holds.delete().where(holds.c.worker_id == owner))


def _model_spend(connection: Connection, key: Key, period: PeriodCap) -> tuple[int, int]:
    """The batch's spend on the model, and the period's on it (every batch, of the kind the
    budget counts), in one statement: one snapshot, so a result committed meanwhile is in
    both or in neither."""
    cost = results.c.cost_nanos
    in_period = and_(results.c.sent_at >= period.since, results.c.simulated == period.simulated)
    batch, spent = connection.execute(
        select(
            func.coalesce(func.sum(case((results.c.batch_id == key["batch_id"], cost))), 0),
            func.coalesce(func.sum(case((in_period, cost))), 0),
        ).where(results.c.model == key["model"])
    ).one()
    return int(batch), int(spent)


def _match(table: Table, key: Key) -> list[ColumnElement[bool]]:
    return [table.c[name] == value for name, value in key.items()]

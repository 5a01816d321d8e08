"""Claims: leases on pending requests, and the workers' heartbeat rows (teams/claims.py's SQL).

The claiming ``UPDATE`` picks its rows with ``FOR UPDATE SKIP LOCKED`` so concurrent workers
never wait on each other nor take the same rows (SQLite has one writer at a time, which gives the
same guarantee). Every method takes the worker's ``now``: the leases are on the workers' clocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, or_, select, update

from batchrun.store.database import Database
from batchrun.store.limits import free_holds, free_slots
from batchrun.store.tables import requests, workers
from batchrun.store.work import PENDING


def _free(now: float) -> ColumnElement[bool]:
    return or_(requests.c.claimed_by.is_(None), requests.c.lease_until < now)


class Claims:
    """The claim columns of requests, and the workers table."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def claim(
        self, batch_id: str, model: str, *, owner: str, limit: int, lease_until: float, now: float
    ) -> list[int]:
        """Claim up to ``limit`` free pending requests of one model; their ids."""
        pick = (
            select(requests.c.id)
            .where(requests.c.batch_id == batch_id, requests.c.model == model, PENDING, _free(now))
            .order_by(requests.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(requests)
            .where(requests.c.id.in_(pick.scalar_subquery()))
            .values(claimed_by=owner, lease_until=lease_until)
            .returning(requests.c.id)
        )
        with self.database.begin() as connection:
            return list(connection.execute(claim).scalars())

    def renew(self, owner: str, *, lease_until: float, now: float) -> None:
        """Extend the worker's leases and record its heartbeat."""
        with self.database.begin() as connection:
            connection.execute(
                update(requests)
                .where(requests.c.claimed_by == owner, PENDING)
                .values(lease_until=lease_until)
            )
            connection.execute(
                update(workers).where(workers.c.id == owner).values(heartbeat_at=now)
            )

    def record_vitals(self, owner: str, vitals: Mapping[str, float | int]) -> None:
        """Write the worker's figures (sent, sent_per_min, stall_s, stall_max_s) to its row."""
        with self.database.begin() as connection:
            connection.execute(update(workers).where(workers.c.id == owner).values(**vitals))

    def release(self, owner: str) -> int:
        """Give back the worker's claims on requests still pending; return how many."""
        with self.database.begin() as connection:
            done = connection.execute(
                update(requests)
                .where(requests.c.claimed_by == owner, PENDING)
                .values(claimed_by=None, lease_until=None)
            )
        return int(done.rowcount)

    def register(self, owner: str, *, host: str, pid: int, now: float) -> None:
        """Add the worker's heartbeat row."""
        row = {"id": owner, "host": host, "pid": pid, "started_at": now, "heartbeat_at": now}
        with self.database.begin() as connection:
            connection.execute(insert(workers).values(**row))

    def silent_since(self, cutoff: float) -> list[str]:
        """Ids of the workers whose last heartbeat is older than ``cutoff``."""
        query = select(workers.c.id).where(workers.c.heartbeat_at < cutoff)
        with self.database.connect() as connection:
            return list(connection.execute(query).scalars())

    def live_count(self, since: float) -> int:
        """How many workers have heartbeaten since ``since``."""
        query = select(func.count()).where(workers.c.heartbeat_at >= since)
        with self.database.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def forget(self, owner: str, *, died: bool = False) -> None:
        """Free a worker's budget reservations and calls in flight and delete its row, in one
        transaction; for a worker that ``died``, its budgets' spend is counted from the results
        too (limits.free_holds)."""
        with self.database.begin() as connection:
            free_holds(self.database, connection, owner, died=died)
            free_slots(connection, owner)
            connection.execute(delete(workers).where(workers.c.id == owner))

    def pending_counts(self, batch_id: str, models: Sequence[str], now: float) -> tuple[int, int]:
        """Pending requests of these models: (free to claim now, all of them)."""
        where = [requests.c.batch_id == batch_id, requests.c.model.in_(models), PENDING]
        with self.database.connect() as connection:
            free = connection.execute(select(func.count()).where(*where, _free(now))).scalar_one()
            total = connection.execute(select(func.count()).where(*where)).scalar_one()
        return int(free), int(total)

    def held_by_others(self, batch_id: str, owner: str | None, now: float) -> int:
        """Pending requests of a batch under a live lease of another worker than ``owner``."""
        query = select(func.count()).where(
            requests.c.batch_id == batch_id,
            PENDING,
            requests.c.claimed_by.is_not(None),
            requests.c.lease_until >= now,
        )
        if owner is not None:
            query = query.where(requests.c.claimed_by != owner)
        with self.database.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def worker_rows(self, now: float) -> list[dict[str, Any]]:
        """Every registered worker with its last heartbeat and the requests it holds now."""
        held = (
            select(func.count())
            .where(requests.c.claimed_by == workers.c.id, requests.c.lease_until > now)
            .scalar_subquery()
        )
        query = select(workers, held.label("holding")).order_by(workers.c.started_at)
        with self.database.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

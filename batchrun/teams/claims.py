"""Claims and leases on requests, and the workers' heartbeat rows.

A claim sets ``requests.claimed_by`` and ``lease_until``. Pending requests that nobody holds, or
whose lease has run out, can be claimed; the claiming ``UPDATE`` picks its rows with ``FOR UPDATE
SKIP LOCKED`` so concurrent workers never wait on each other nor take the same rows (SQLite has
one writer at a time, which gives the same guarantee).
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Sequence

from sqlalchemy import ColumnElement, delete, func, insert, or_, select, update

from batchrun.store import Store, WorkItem
from batchrun.store.tables import batches, budget_holds, budgets, requests, workers

OPEN_BATCHES = ("queued", "running")


def new_worker_id() -> str:
    """A worker id unique across machines: host, process and a random part."""
    host = socket.gethostname()[:40]
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


class ClaimSource:
    """A runner's work source that claims requests for one worker (see runner.WorkSource)."""

    def __init__(self, store: Store, owner: str, *, lease_s: float, page: int) -> None:
        self.store = store
        self._owner = owner
        self.lease_s = lease_s
        self.page = page

    @property
    def owner(self) -> str:
        """The worker id the claims are made under."""
        return self._owner

    async def take(self, batch_id: str, model: str, after: int, limit: int) -> list[WorkItem]:
        """Claim up to ``page`` requests (never by id order alone: expired leases come back)."""
        del after  # a lease that ran out may free a request below the feeder's position
        return claim(
            self.store,
            batch_id,
            model,
            owner=self._owner,
            limit=min(limit, self.page),
            lease_s=self.lease_s,
        )


def _free(now: float) -> ColumnElement[bool]:
    return or_(requests.c.claimed_by.is_(None), requests.c.lease_until < now)


def claim(
    store: Store, batch_id: str, model: str, *, owner: str, limit: int, lease_s: float
) -> list[WorkItem]:
    """Claim up to ``limit`` free pending requests of one model; the claimed work items."""
    now = time.time()
    pick = (
        select(requests.c.id)
        .where(
            requests.c.batch_id == batch_id,
            requests.c.model == model,
            requests.c.status == "pending",
            _free(now),
        )
        .order_by(requests.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    with store._begin() as connection:
        ids = list(
            connection.execute(
                update(requests)
                .where(requests.c.id.in_(pick.scalar_subquery()))
                .values(claimed_by=owner, lease_until=now + lease_s)
                .returning(requests.c.id)
            ).scalars()
        )
    if not ids:
        return []
    return store.pending(batch_id, model, 0, len(ids), only=ids)


def renew(store: Store, owner: str, lease_s: float) -> None:
    """Extend the worker's leases and record its heartbeat."""
    now = time.time()
    with store._begin() as connection:
        connection.execute(
            update(requests)
            .where(requests.c.claimed_by == owner, requests.c.status == "pending")
            .values(lease_until=now + lease_s)
        )
        connection.execute(update(workers).where(workers.c.id == owner).values(heartbeat_at=now))


def release(store: Store, owner: str) -> int:
    """Give back the worker's claims on requests still pending; return how many."""
    with store._begin() as connection:
        done = connection.execute(
            update(requests)
            .where(requests.c.claimed_by == owner, requests.c.status == "pending")
            .values(claimed_by=None, lease_until=None)
        )
    return int(done.rowcount)


def register(store: Store, owner: str) -> None:
    """Add the worker's heartbeat row."""
    now = time.time()
    row = {"id": owner, "host": socket.gethostname()[:200], "pid": os.getpid()}
    with store._begin() as connection:
        connection.execute(insert(workers).values(started_at=now, heartbeat_at=now, **row))


def unregister(store: Store, owner: str) -> None:
    """On a clean exit: release the claims, free the budget holds, remove the heartbeat row."""
    release(store, owner)
    _forget(store, owner)


def reap(store: Store, dead_after: float) -> list[str]:
    """Forget workers whose heartbeat stopped ``dead_after`` seconds ago; their ids."""
    cutoff = time.time() - dead_after
    with store._connect() as connection:
        dead = list(
            connection.execute(
                select(workers.c.id).where(workers.c.heartbeat_at < cutoff)
            ).scalars()
        )
    for owner in dead:
        _forget(store, owner)
    return dead


def _forget(store: Store, owner: str) -> None:
    """Free a worker's budget reservations and delete its row, in one transaction."""
    with store._begin() as connection:
        holds = connection.execute(
            select(budget_holds.c.batch_id, budget_holds.c.nanos)
            .where(budget_holds.c.worker_id == owner)
            .with_for_update()
        ).all()
        for batch_id, nanos in holds:
            connection.execute(
                update(budgets)
                .where(budgets.c.batch_id == batch_id)
                .values(reserved_nanos=budgets.c.reserved_nanos - nanos)
            )
        connection.execute(delete(budget_holds).where(budget_holds.c.worker_id == owner))
        connection.execute(delete(workers).where(workers.c.id == owner))


def open_batches(store: Store) -> list[str]:
    """Ids of the submitted batches workers take work from, oldest first.

    A batch made by ``batchrun run`` is left to that process: only ``submit`` marks a batch
    for workers (``settings.workers``).
    """
    with store._connect() as connection:
        rows = connection.execute(
            select(batches.c.id, batches.c.settings)
            .where(batches.c.status.in_(OPEN_BATCHES))
            .order_by(batches.c.created_at)
        ).all()
    return [row.id for row in rows if (row.settings or {}).get("workers")]


def pending_counts(store: Store, batch_id: str, models: Sequence[str]) -> tuple[int, int]:
    """Pending requests of these models: (free to claim now, all of them)."""
    now = time.time()
    where = [
        requests.c.batch_id == batch_id,
        requests.c.model.in_(models),
        requests.c.status == "pending",
    ]
    with store._connect() as connection:
        free = connection.execute(select(func.count()).where(*where, _free(now))).scalar_one()
        total = connection.execute(select(func.count()).where(*where)).scalar_one()
    return int(free), int(total)


def worker_rows(store: Store) -> list[dict[str, object]]:
    """Every registered worker with its last heartbeat and the requests it holds now."""
    now = time.time()
    held = (
        select(func.count())
        .where(requests.c.claimed_by == workers.c.id, requests.c.lease_until > now)
        .scalar_subquery()
    )
    query = select(workers, held.label("holding")).order_by(workers.c.started_at)
    with store._connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]

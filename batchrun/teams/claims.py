"""Claims and leases on requests, and the workers' heartbeat rows.

A claim sets ``requests.claimed_by`` and ``lease_until``. Pending requests that nobody holds, or
whose lease has run out, can be claimed; the claiming ``UPDATE`` picks its rows with ``FOR UPDATE
SKIP LOCKED`` so concurrent workers never wait on each other nor take the same rows (SQLite has
one writer at a time, which gives the same guarantee). The SQL is in store/claims.py; this
module keeps the workers' side: their ids, clocks and leases.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Sequence

import anyio
import anyio.to_thread

from batchrun.status import OPEN_BATCHES
from batchrun.store import Store, WorkItem

__all__ = [
    "OPEN_BATCHES",
    "ClaimSource",
    "claim",
    "new_worker_id",
    "open_batches",
    "pending_counts",
    "reap",
    "reap_local",
    "register",
    "release",
    "renew",
    "unregister",
    "worker_rows",
]


def new_worker_id() -> str:
    """A worker id unique across machines: host, process and a random part."""
    host = socket.gethostname()[:40]
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


class ClaimSource:
    """A runner's work source that claims requests for one worker (see runner.WorkSource)."""

    def __init__(
        self, store: Store, owner: str, *, lease_s: float, page: int, wait_s: float | None = None
    ) -> None:
        self.store = store
        self._owner = owner
        self.lease_s = lease_s
        self.page = page
        # None: a worker, which moves on to other batches when nothing is free; else a run,
        # which waits (looking every wait_s) while other processes hold the rest.
        self.wait_s = wait_s

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

    async def more_later(self, batch_id: str, model: str) -> bool:
        """Whether to look again once nothing is free: only a run waits, and only while another
        process holds pending requests of the model (they end or their lease runs out)."""
        if self.wait_s is None:
            return False
        await anyio.sleep(self.wait_s)
        _, pending = await anyio.to_thread.run_sync(pending_counts, self.store, batch_id, [model])
        return pending > 0


def claim(
    store: Store, batch_id: str, model: str, *, owner: str, limit: int, lease_s: float
) -> list[WorkItem]:
    """Claim up to ``limit`` free pending requests of one model; the claimed work items."""
    now = time.time()
    ids = store.claims.claim(
        batch_id, model, owner=owner, limit=limit, lease_until=now + lease_s, now=now
    )
    if not ids:
        return []
    return store.pending(batch_id, model, 0, len(ids), only=ids)


def renew(store: Store, owner: str, lease_s: float) -> None:
    """Extend the worker's leases and record its heartbeat."""
    now = time.time()
    store.claims.renew(owner, lease_until=now + lease_s, now=now)


def release(store: Store, owner: str) -> int:
    """Give back the worker's claims on requests still pending; return how many."""
    return store.claims.release(owner)


def register(store: Store, owner: str) -> None:
    """Add the worker's heartbeat row."""
    store.claims.register(owner, host=socket.gethostname()[:200], pid=os.getpid(), now=time.time())


def unregister(store: Store, owner: str) -> None:
    """On a clean exit: release the claims, free the budget holds, remove the heartbeat row."""
    release(store, owner)
    store.claims.forget(owner)


def reap_local(store: Store) -> list[str]:
    """On SQLite (a file on this machine, so every sender is here): forget the senders whose
    process is gone (killed, or ended on a full disk) and free their claims now, not when their
    lease runs out; their ids. PostgreSQL's senders may be on other machines: their leases do it.
    """
    if store.database.is_postgresql:
        return []
    host = socket.gethostname()[:200]
    dead = [
        str(row["id"])
        for row in store.claims.worker_rows(time.time())
        if row["host"] == host and not _alive(int(row["pid"]))
    ]
    for owner in dead:
        release(store, owner)
        store.claims.forget(owner)
    return dead


def _alive(pid: int) -> bool:
    """Whether a process with this id runs here (one that reused the id counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap(store: Store, dead_after: float) -> list[str]:
    """Forget workers whose heartbeat stopped ``dead_after`` seconds ago; their ids."""
    dead = store.claims.silent_since(time.time() - dead_after)
    for owner in dead:
        store.claims.forget(owner)
    return dead


def open_batches(store: Store) -> list[str]:
    """Ids of the submitted batches workers take work from, oldest first.

    A batch made by ``batchrun run`` is left to that process: only ``submit`` marks a batch
    for workers (``settings.workers``).
    """
    return store.batches.open_for_workers()


def pending_counts(store: Store, batch_id: str, models: Sequence[str]) -> tuple[int, int]:
    """Pending requests of these models: (free to claim now, all of them)."""
    return store.claims.pending_counts(batch_id, models, time.time())


def worker_rows(store: Store) -> list[dict[str, object]]:
    """Every registered worker with its last heartbeat and the requests it holds now."""
    return store.claims.worker_rows(time.time())

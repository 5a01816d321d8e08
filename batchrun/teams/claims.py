"""Claims and leases on requests, and the workers' heartbeat rows.

A claim sets ``requests.claimed_by`` and ``lease_until``. Pending requests that nobody holds, or
whose lease has run out, can be claimed; the claiming ``UPDATE`` picks its rows with ``FOR UPDATE
SKIP LOCKED`` so concurrent workers never wait on each other nor take the same rows (SQLite has
one writer at a time, which gives the same guarantee). The SQL is in store/claims.py; this
module keeps the workers' side: their ids, clocks and leases.

A worker claims as it goes (``ClaimSource`` with its limiters): it holds the requests in flight
and at most a prefetch of requests not sent yet, MIN_PREFETCH plus AHEAD_S seconds of sending
at the larger of its measured start rate and its share of the model's rate (the model's RPM,
slowed by the back-off, over the live workers). The share lets a worker start at full pace and
a late joiner get its part; the measured rate lets a worker take more while others are idle.
So a worker joining mid-batch finds free requests at its first look, and a killed worker strands
its calls in flight plus that prefetch, not a page per model.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Mapping, Sequence

import anyio

from batchrun.run.limits import ModelLimiter
from batchrun.run.offload import offload
from batchrun.status import OPEN_BATCHES
from batchrun.store import Store, WorkItem

MIN_PREFETCH = 2  # requests held unsent at least, so the next send never waits for a claim
AHEAD_S = 2.0  # seconds of sending claimed ahead: more than a claim's round trip, far below a lease
RATE_WINDOW = 10.0  # seconds over which a worker's start rate is measured
LOOK_S = 0.05  # between looks while a worker holds its prefetch (no database call)
STALLED_S = 10.0  # holding the prefetch that long, nothing starts (a pause, a stopped model)
TEAM_LOOK_S = 5.0  # between counts of the live workers

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


class _Starts:
    """One model's requests handed to the runner, and its recent starts (time, count)."""

    def __init__(self) -> None:
        self.handed = 0
        self.samples: deque[tuple[float, int]] = deque()

    def rate(self, started: int) -> float:
        """Requests started per second over the last RATE_WINDOW seconds."""
        now = time.monotonic()
        if not self.samples or now - self.samples[-1][0] >= 0.5:
            self.samples.append((now, started))
        while now - self.samples[0][0] > RATE_WINDOW:
            self.samples.popleft()
        since, then = self.samples[0]
        return (started - then) / (now - since) if now - since >= 1.0 else 0.0


class ClaimSource:
    """A runner's work source that claims requests for one worker (see runner.WorkSource).

    With ``limiters`` (a worker's), it claims as it goes (see the module's docstring); without,
    up to ``page`` at a time.
    """

    def __init__(
        self,
        store: Store,
        owner: str,
        *,
        lease_s: float,
        page: int,
        wait_s: float | None = None,
        limiters: Mapping[str, ModelLimiter] | None = None,
    ) -> None:
        self.store = store
        self._owner = owner
        self.lease_s = lease_s
        self.page = page
        # None: a worker, which moves on to other batches when nothing is free; else a run,
        # which waits (looking every wait_s) while other processes hold the rest.
        self.wait_s = wait_s
        self.limiters = limiters or {}
        self._starts: dict[str, _Starts] = {}
        self.team = 1  # live workers, as last counted
        self._team_at = float("-inf")

    @property
    def owner(self) -> str:
        """The worker id the claims are made under."""
        return self._owner

    async def take(self, batch_id: str, model: str, after: int, limit: int) -> list[WorkItem]:
        """Claim up to ``page`` requests, or as many as the prefetch has room for (never by id
        order alone: expired leases come back)."""
        del after  # a lease that ran out may free a request below the feeder's position
        limiter = self.limiters.get(model)
        if limiter is not None:
            limit = min(limit, await self._room(model, limiter))
            if limit == 0:
                return []  # nothing starts: the feeder ends, the worker looks again later
        items = await offload(self.store, self._claim, batch_id, model, limit)
        if limiter is not None:
            self._starts_of(model).handed += len(items)
        return items

    def prefetch(self, model: str, limiter: ModelLimiter) -> int:
        """How many requests of ``model`` this worker may hold unsent now."""
        starts = self._starts_of(model)
        rate = max(starts.rate(limiter.started), self._share(limiter))
        return MIN_PREFETCH + math.ceil(rate * AHEAD_S)

    def unsent(self, model: str, limiter: ModelLimiter) -> int:
        """Requests of ``model`` handed to the runner and not sent yet (nor finished)."""
        return self._starts_of(model).handed - limiter.started

    async def _room(self, model: str, limiter: ModelLimiter) -> int:
        """Wait while the prefetch is full; how many more may be claimed (0: stalled)."""
        waited = time.monotonic()
        while time.monotonic() - waited < STALLED_S:
            await self._count_team()
            room = self.prefetch(model, limiter) - self.unsent(model, limiter)
            if room > 0:
                return room
            await anyio.sleep(LOOK_S)
        return 0

    def _share(self, limiter: ModelLimiter) -> float:
        """This worker's share of the model's rate, per second (0 without an RPM)."""
        settings = limiter.settings
        if not settings.rpm:
            return 0.0
        return settings.rpm * settings.headroom / 60.0 * limiter.factor / self.team

    async def _count_team(self) -> None:
        if time.monotonic() - self._team_at < TEAM_LOOK_S:
            return
        self._team_at = time.monotonic()
        since = time.time() - 2 * self.lease_s
        self.team = max(1, await offload(self.store, self.store.claims.live_count, since))

    def _claim(self, batch_id: str, model: str, limit: int) -> list[WorkItem]:
        return claim(
            self.store,
            batch_id,
            model,
            owner=self._owner,
            limit=min(limit, self.page),
            lease_s=self.lease_s,
        )

    def _starts_of(self, model: str) -> _Starts:
        return self._starts.setdefault(model, _Starts())

    async def more_later(self, batch_id: str, model: str) -> bool:
        """Whether to look again once nothing is free: only a run waits, and only while another
        process holds pending requests of the model (they end or their lease runs out)."""
        if self.wait_s is None:
            return False
        await anyio.sleep(self.wait_s)
        _, pending = await offload(self.store, pending_counts, self.store, batch_id, [model])
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
        store.claims.forget(owner, died=True)
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
        store.claims.forget(owner, died=True)
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

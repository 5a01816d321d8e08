"""One sender per request, whatever runs: ``batchrun run``, ``resume`` and the Python API send a
batch the way a team's worker does.

The process registers a worker id with a heartbeat row, claims its requests in pages under a
lease (teams/claims.py) and, for a capped batch, reserves from the shared budget
(teams/shared.py), and so for a model that a period budget of its own caps (``ModelLedger``).
So two processes on one batch (the same file run twice at once, a ``resume`` while a ``run``
goes on, a worker beside them) split its requests between them, never send one twice, and
commit no more than the cap (and each model's budget) together. One process alone works as
before: every claim is its own. Each process keeps its own RPM / TPM pacers, as a run always
did: two at once may together pass a model's rate and be answered 429, which they retry with
back-off (the shared pacers of ``batchrun worker`` cost two database writes per request: a lone
run of 3,000 requests took 29 s with them against 15 s without, so a team that wants one pace
uses workers).

When a run is done with what it could claim while another process still holds requests, it waits
for them (they end, or their lease runs out and it takes them over): a run ends when its batch
has nothing pending left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio

from batchrun.api.endpoint import Endpoint
from batchrun.catalog import Catalog
from batchrun.exceptions import StoreError
from batchrun.run.budget import BudgetRoom, period_rooms
from batchrun.run.execute import run_batch
from batchrun.run.offload import offload
from batchrun.run.progress import RunProgress
from batchrun.run.report import RunReport
from batchrun.run.settings import SendSettings
from batchrun.run.space import SpaceGuard
from batchrun.store import BatchInfo, Store
from batchrun.teams import claims
from batchrun.teams.shared import ModelLedger, SharedBudget

log = logging.getLogger(__name__)

LEASE_S = 30.0  # as `batchrun worker --lease`'s default: a killed run's requests free after it
WAIT_S = 0.5  # between looks while another process holds the rest of a model's requests


async def send_claimed(
    *,
    store: Store,
    catalog: Catalog,
    batch: BatchInfo,
    endpoint: Endpoint,
    settings: SendSettings,
    display: Callable[[RunProgress], object] | None = None,
    handle_signals: bool = True,
    lease_s: float = LEASE_S,
    space: SpaceGuard | None = None,
    owner: str | None = None,
) -> tuple[RunReport, RunProgress]:
    """Run a batch's pending requests as one of its senders (see the module's docstring);
    ``space``: as for run_batch; ``owner``: the sender id to claim under (new_sender_id)."""
    run_settings = settings.run_settings(catalog, store.batch_models(batch.id))
    limits = run_settings.limits
    owner = owner or new_sender_id()
    claims.register(store, owner)
    claims.reap_local(store)  # a killed run's claims on this machine: free at once
    claims.reap(store, dead_after=lease_s * 2)  # a silent sender's budget holds elsewhere
    ledger = ModelLedger(store, batch.id, owner, simulated=endpoint.simulated)
    budget = None
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(keep_alive, store, owner, lease_s, log.info)
            page = max(s.concurrency for s in limits.values()) if limits else 1
            if settings.max_cost_nanos is not None:
                budget = await offload(
                    store, SharedBudget, store, batch.id, owner, settings.max_cost_nanos
                )
            rooms = await offload(store, open_rooms, store, batch, ledger)
            ran = await run_batch(
                store=store,
                catalog=catalog,
                batch=batch,
                endpoint=endpoint,
                settings=run_settings,
                deadlines=settings.deadlines,
                display=display,
                source=claims.ClaimSource(store, owner, lease_s=lease_s, page=page, wait_s=WAIT_S),
                budget=budget,
                rooms=rooms,
                # Each process paces itself (see the module's docstring): shared pacers cost
                # two database writes per request, which halved a single run's throughput.
                limiters=None,
                handle_signals=handle_signals,
                space=space,
            )
            group.cancel_scope.cancel()
    finally:
        try:  # synchronous: a cancellation cannot cut it short
            settle_all(budget, ledger)  # before the holds are freed: else the spend is lost
            claims.unregister(store, owner)
        except StoreError as exc:  # a full disk: the leases run out, its row is reaped later
            log.warning("could not release this run's claims: %s", exc)
    return ran


def open_rooms(store: Store, batch: BatchInfo, ledger: ModelLedger) -> tuple[BudgetRoom, ...]:
    """The period budgets that apply to the batch now, each model's own held through the
    ledger (its row opened): store work, for a thread."""
    return ledger.share(period_rooms(store, batch, simulated=ledger.simulated))


def settle_all(budget: SharedBudget | None, ledger: ModelLedger) -> None:
    """Write what the batch's budget and the model budgets have settled and not written yet."""
    if budget is not None:
        budget.flush()
    ledger.flush()


def new_sender_id() -> str:
    """An id to send under, unique across machines (as a worker's)."""
    return claims.new_worker_id()


def held_elsewhere(store: Store, batch_id: str, owner: str | None = None) -> int:
    """Pending requests of the batch that a live sender other than ``owner`` holds now."""
    return store.claims.held_by_others(batch_id, owner, time.time())


async def keep_alive(
    store: Store, owner: str, lease_s: float, say: Callable[[str], object]
) -> None:
    """Renew the owner's leases and heartbeat every third of a lease, and forget the senders
    whose heartbeat stopped two leases ago (their budget holds are freed)."""
    every = lease_s / 3
    while True:
        await anyio.sleep(every)
        try:
            await offload(store, claims.renew, store, owner, lease_s)
            for dead in await offload(store, claims.reap, store, lease_s * 2):
                say(f"worker {dead} stopped heartbeating: its budget holds are freed")
        except StoreError as exc:  # a blip: the next beat tries again before leases run out
            log.warning("heartbeat failed: %s", exc)

"""``batchrun worker``'s loop: find open batches, claim their requests, run them, repeat.

Each batch is run by the ordinary BatchRunner (through execute.run_batch) with a claim-based work
source that claims as it goes, the shared pacers and back-off (and, with
``share_concurrency``, the team's concurrency) and, for a capped batch, the shared budget. A
heartbeat task renews the worker's leases and forgets workers that stopped heartbeating. On a
clean exit (the queue drained with ``--once``, Ctrl-C, SIGTERM) the worker releases what it
still holds. Its database calls go through a thread (run/offload.py) while streams are open.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio

from batchrun.api.endpoint import Endpoint
from batchrun.catalog import Catalog
from batchrun.exceptions import BatchMoveError
from batchrun.run.budget import BudgetRoom, worker_cap
from batchrun.run.execute import run_batch
from batchrun.run.launch import with_batch_account
from batchrun.run.limits import ModelLimiter
from batchrun.run.offload import offload
from batchrun.run.progress import RunProgress
from batchrun.run.report import RunReport, finish_batch
from batchrun.run.settings import RunSettings, SendSettings
from batchrun.status import BatchStatus
from batchrun.store import BatchInfo, Store
from batchrun.teams import claims
from batchrun.teams.sender import keep_alive, open_rooms, settle_all
from batchrun.teams.shared import ModelLedger, SharedBudget, close_limiters, shared_limiters

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    """How a worker behaves: how it sends (``send``, as a run's senders do; its
    ``max_cost_nanos`` is not used, each batch holds its own cap) and what it serves."""

    send: SendSettings
    once: bool = False  # drain what is there, then exit
    models: Sequence[str] = ()  # serve only these models; empty: every model
    lease_s: float = 30.0
    poll_s: float = 5.0
    share_concurrency: bool = False  # each model's concurrency is the team's, not each worker's


@dataclass
class WorkerReport:
    """What one worker did."""

    worker_id: str
    batches_run: int = 0
    interrupted: bool = False
    store_error: str | None = None
    refused: dict[str, str] = field(default_factory=dict)  # models this worker stopped sending
    reports: list[RunReport] = field(default_factory=list)


class Worker:
    """One worker process's loop over the store's open batches."""

    def __init__(
        self,
        *,
        store: Store,
        catalog: Catalog,
        endpoint: Endpoint,
        options: WorkerOptions,
        say: Callable[[str], object] = log.info,
        worker_id: str | None = None,
        display: Callable[[RunProgress], object] | None = None,
    ) -> None:
        self.store = store
        self.display = display  # shown each batch run's live progress
        self.catalog = catalog
        self.endpoint = endpoint
        self.options = options
        self.say = say
        self.report = WorkerReport(worker_id=worker_id or claims.new_worker_id())

    @property
    def id(self) -> str:
        """This worker's id (claims and heartbeat are made under it)."""
        return self.report.worker_id

    async def serve(self) -> WorkerReport:
        """Run until the queue is drained (``once``) or a signal comes."""
        claims.register(self.store, self.id)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._heartbeat)
                await self._loop()
                group.cancel_scope.cancel()
        finally:
            claims.unregister(self.store, self.id)
        return self.report

    async def _loop(self) -> None:
        while not self.report.interrupted and self.report.store_error is None:
            worked, waiting = await self._pass()
            if worked:
                continue
            if not waiting and self.options.once:
                return
            # Nothing free: others hold the rest (their leases may run out) or nothing is there.
            pause = min(self.options.poll_s, self.options.lease_s / 2)
            if await _idle(pause):
                self.report.interrupted = True

    async def _pass(self) -> tuple[bool, bool]:
        """One look at every open batch: (whether any work was done, whether any is pending)."""
        worked = waiting = False
        for batch_id in await offload(self.store, claims.open_batches, self.store):
            models = await offload(self.store, self._models, batch_id)
            free, pending = await offload(
                self.store, claims.pending_counts, self.store, batch_id, models
            )
            waiting = waiting or pending > 0
            if free:
                await self._run(batch_id, models)
                worked = True
                if self.report.interrupted or self.report.store_error is not None:
                    break
        return worked, waiting

    def _models(self, batch_id: str) -> list[str]:
        models = self.store.batch_models(batch_id)
        if self.options.models:
            models = [m for m in models if m in self.options.models]
        return [m for m in models if m not in self.report.refused]

    async def _run(self, batch_id: str, models: list[str]) -> None:
        batch = await offload(self.store, self._start_batch, batch_id)
        if batch is None:
            return
        self.say(f"worker {self.id}: running batch {batch.name} ({batch.id})")
        settings = self._settings(models, batch)
        page = max(s.concurrency for s in settings.limits.values())
        ledger = ModelLedger(self.store, batch.id, self.id, simulated=self.endpoint.simulated)
        budget, rooms = await offload(self.store, self._budgets, batch, ledger)
        shared_slots = self.id if self.options.share_concurrency else None
        limiters = shared_limiters(self.store, settings.limits, owner=shared_slots)
        try:
            report, progress = await run_batch(
                store=self.store,
                catalog=self.catalog,
                batch=batch,
                endpoint=self.endpoint,
                settings=settings,
                deadlines=self.options.send.deadlines,
                display=self.display,
                source=claims.ClaimSource(
                    self.store, self.id, lease_s=self.options.lease_s, page=page, limiters=limiters
                ),
                budget=budget,
                rooms=rooms,
                limiters=limiters,
            )
        finally:
            with anyio.CancelScope(shield=True):
                await self._let_go(limiters, budget, ledger)
        self.report.batches_run += 1
        self._say_done(batch.name, progress)
        self.report.reports.append(report)
        self.report.interrupted = report.interrupted
        self.report.store_error = report.store_error
        if report.disk_low is not None:  # stop, as for a store that cannot be written
            self.say(f"worker {self.id}: stopped sending: {report.disk_low}")
            self.report.store_error = report.store_error or report.disk_low
        # A model whose key or balance was refused is not this worker's to send any more.
        # (One stopped at its own budget is not refused: it goes on once the period renews.)
        self.report.refused.update(
            (m, why) for m, why in report.stopped_models.items() if m not in report.budget_models
        )
        await offload(self.store, self._finish, batch.id, report)

    def _budgets(
        self, batch: BatchInfo, ledger: ModelLedger
    ) -> tuple[SharedBudget | None, tuple[BudgetRoom, ...]]:
        """The batch's shared cap (None: nothing caps it) and its period budgets, each model's
        own held through the ledger: store work, for a thread."""
        budget = None
        if (cap := worker_cap(self.store, batch, simulated=self.endpoint.simulated)) is not None:
            budget = SharedBudget(self.store, batch.id, self.id, cap)
        return budget, open_rooms(self.store, batch, ledger)

    def _start_batch(self, batch_id: str) -> BatchInfo | None:
        """The batch, marked running; None when it was canceled since it was listed."""
        batch = self.store.find_batch(batch_id)
        if batch.status == BatchStatus.QUEUED:
            try:
                self.store.set_batch(batch.id, status=BatchStatus.RUNNING)
            except BatchMoveError as exc:  # canceled since it was listed: nothing to do there
                self.say(f"worker {self.id}: skipping batch {batch.name}: {exc}")
                return None
        return batch

    async def _let_go(
        self, limiters: dict[str, ModelLimiter], budget: SharedBudget | None, ledger: ModelLedger
    ) -> None:
        """After a batch's run: give back unused slots, write settlements, release claims."""
        await close_limiters(limiters)
        await offload(self.store, settle_all, budget, ledger)
        await offload(self.store, claims.release, self.store, self.id)

    def _settings(self, models: list[str], batch: BatchInfo) -> RunSettings:
        # The account's pool: this worker's options, else the one the batch was submitted with.
        send = self.options.send
        limits = with_batch_account(send.limits, batch.settings)
        return dataclasses.replace(send, limits=limits).run_settings(self.catalog, models)

    def _say_done(self, name: str, progress: RunProgress) -> None:
        by_model = progress.models.values()
        self.say(
            f"worker {self.id}: batch {name}: {sum(m.succeeded for m in by_model):,} "
            f"succeeded, {sum(m.errored + m.invalid for m in by_model):,} failed in "
            f"{progress.elapsed():.1f}s"
        )

    def _finish(self, batch_id: str, report: RunReport) -> None:
        # The batch stays open for the other workers, unless its budget is spent for every
        # worker (nothing reserved anywhere): submit again with a higher --max-cost to queue it.
        # The same when models stopped at their own budget: their requests wait for a resume.
        capped = report.budget_reached or bool(report.budget_models)
        finished = finish_batch(self.store, batch_id, report, pause=capped)
        if finished.status is BatchStatus.PAUSED and capped:
            self.say(f"batch {batch_id}: budget reached; paused")

    async def _heartbeat(self) -> None:
        await keep_alive(self.store, self.id, self.options.lease_s, self.say)


async def _idle(seconds: float) -> bool:
    """Wait ``seconds``; True when SIGINT or SIGTERM came meanwhile."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        with anyio.move_on_after(seconds):
            async for _ in signals:
                return True
    return False

"""The worker pool: pending requests of each model flow from the store through the pre-check,
the model's limits and the API, and their outcomes flow back to one writer task.

    per model:  feeder ─► [counters] ─► memory stream ─► N workers ─┐
                                                                    ├─► outcomes ─► writer ─► store
    per model:  feeder ─► [counters] ─► memory stream ─► N workers ─┘

With the pre-check on, counting tasks between the feeder and the workers count each request's
input tokens ahead of sending, so that no request waits for its own count.

A request's result exists only once the writer has committed it; a request in flight when the
process dies is simply pending on the next run. Stopping (Ctrl-C, SIGTERM, a model whose key or
balance is refused, a store that cannot be written) ends dispatch first and then gives calls in
flight a grace period before cancelling them, and the writer commits everything that finished.

One request's attempts are in ``attempts``, the writer in ``writer``, the shared stop state in
``control``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Protocol

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from batchrun.api.client import ApiClient
from batchrun.catalog import Catalog
from batchrun.exceptions import StoreError
from batchrun.plan.precheck import TokenCounter
from batchrun.run.attempts import RequestAttempts
from batchrun.run.budget import Budget, BudgetRoom, SpendWatch, model_budgets
from batchrun.run.control import RunControl
from batchrun.run.limits import ModelLimiter, ModelLimitSettings, make_limiters
from batchrun.run.offload import offload
from batchrun.run.progress import RunProgress
from batchrun.run.report import RunReport
from batchrun.run.settings import OUTCOME_QUEUE, PAGE, RunSettings
from batchrun.run.writer import OutcomeWriter
from batchrun.status import BatchStatus
from batchrun.store import BatchInfo, Outcome, Store, WorkItem


class WorkSource(Protocol):
    """Where the feeders take pending requests from; the writer records under ``owner``."""

    @property
    def owner(self) -> str | None:
        """The worker id whose claims the results must match; None without claims."""

    async def take(self, batch_id: str, model: str, after: int, limit: int) -> list[WorkItem]:
        """The next pending requests of one model after ``after``; [] when there are none."""

    async def more_later(self, batch_id: str, model: str) -> bool:
        """Once ``take`` gave nothing: whether to try again (other processes hold the rest)."""


class StorePending:
    """The default source: the batch's pending requests in id order, for a single process."""

    owner: str | None = None

    def __init__(self, store: Store) -> None:
        self.store = store

    async def take(self, batch_id: str, model: str, after: int, limit: int) -> list[WorkItem]:
        """A page of ``Store.pending``."""
        page = self.store.pending(batch_id, model, after, limit)
        await anyio.lowlevel.checkpoint()
        return page

    async def more_later(self, batch_id: str, model: str) -> bool:
        """Nothing later: this process alone sends the batch."""
        del batch_id, model
        return False


class BatchRunner:
    """Runs the pending requests of one batch until done, stopped or interrupted."""

    def __init__(
        self,
        *,
        store: Store,
        client: ApiClient,
        catalog: Catalog,
        batch: BatchInfo,
        models: list[str],
        settings: RunSettings,
        progress: RunProgress,
        budget: Budget | None = None,
        rooms: Sequence[BudgetRoom] = (),
        source: WorkSource | None = None,
        limiters: Mapping[str, ModelLimiter] | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.batch = batch
        self.models = models
        self.settings = settings
        self.source = source or StorePending(store)
        self.control = RunControl(models, progress)
        self._dispatch: anyio.CancelScope | None = None
        send, receive = anyio.create_memory_object_stream[Outcome](OUTCOME_QUEUE)
        self._outcomes: MemoryObjectSendStream[Outcome] = send
        self._outcomes_in: MemoryObjectReceiveStream[Outcome] = receive
        self.requests = RequestAttempts(
            control=self.control,
            client=client,
            catalog=catalog,
            settings=settings,
            limiters=_limiters(models, settings, limiters),
            counter=TokenCounter(client, settings.precheck, settings.precheck_concurrency),
            outcomes=send,
            budget=budget,
            model_budgets=model_budgets(rooms),
            watch=SpendWatch(rooms) if rooms else None,
        )

    @property
    def report(self) -> RunReport:
        """How the run went so far."""
        return self.control.report

    async def run(self) -> RunReport:
        """Run until every pending request is done, or dispatch stops."""
        writer = OutcomeWriter(
            self.store,
            self.control,
            commit_batch=self.settings.commit_batch,
            commit_interval=self.settings.commit_interval,
            owner=self.source.owner,
        )
        async with anyio.create_task_group() as outer:
            outer.start_soon(writer.run, self._outcomes_in)
            async with self._outcomes:
                with anyio.CancelScope() as dispatch:
                    self._dispatch = dispatch
                    await self._dispatch_all()
        return self.report

    def stop(self, *, interrupted: bool) -> None:
        """Stop dispatching; calls in flight get the grace period, then are cancelled."""
        self.control.stop(interrupted=interrupted)

    async def _dispatch_all(self) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(self._cancel_after_grace)
            group.start_soon(self._watch_for_cancel)
            async with anyio.create_task_group() as pipelines:
                for model in self.models:
                    pipelines.start_soon(self._model_pipeline, model)
            group.cancel_scope.cancel()  # all done: no grace period to watch

    async def _cancel_after_grace(self) -> None:
        """After a stop, wait the grace period and cancel whatever is still in flight."""
        await self.control.stopping.wait()
        await anyio.sleep(self.settings.grace_seconds)
        if self._dispatch is not None:
            self._dispatch.cancel()

    async def _watch_for_cancel(self) -> None:
        """Stop at once when the batch is canceled: its pending requests take no results."""
        while not self.control.stopping.is_set():
            with anyio.move_on_after(self.settings.cancel_poll_seconds):
                await self.control.stopping.wait()
            try:
                status = (await offload(self.store, self.store.find_batch, self.batch.id)).status
            except StoreError:
                continue  # the writer reports a store that fails; this is only a poll
            if status == BatchStatus.CANCELED:
                self.report.canceled = True
                self.stop(interrupted=False)
                if self._dispatch is not None:
                    self._dispatch.cancel()  # no grace: whatever finishes now is not kept
                return

    # --- per model -----------------------------------------------------------------------------

    async def _model_pipeline(self, model: str) -> None:
        workers = worker_count(self.requests.limiters[model].settings, self.control.progress, model)
        send, receive = anyio.create_memory_object_stream[WorkItem](workers * 2)
        async with anyio.create_task_group() as group:
            group.start_soon(self._feed, model, send)
            if self.settings.precheck:
                receive = self._count_stage(group, model, receive, workers * 2)
            async with receive:
                for _ in range(workers):
                    group.start_soon(self._work, model, receive.clone())

    def _count_stage(
        self,
        group: anyio.abc.TaskGroup,
        model: str,
        items: MemoryObjectReceiveStream[WorkItem],
        ahead: int,
    ) -> MemoryObjectReceiveStream[WorkItem]:
        """Counting tasks between the feeder and the workers; the stream of counted items.

        The pre-check runs ahead of sending, in its own tasks: a worker takes a request whose
        input tokens are already known, instead of waiting for its count before it can send
        (which cost 14-32 % of throughput at time scale 0).
        """
        send, receive = anyio.create_memory_object_stream[WorkItem](ahead)
        with items, send:  # the clones below keep each end open while they run
            for _ in range(max(1, self.settings.precheck_concurrency)):
                group.start_soon(self._count_ahead, model, items.clone(), send.clone())
        return receive

    async def _count_ahead(
        self,
        model: str,
        items: MemoryObjectReceiveStream[WorkItem],
        counted: MemoryObjectSendStream[WorkItem],
    ) -> None:
        async with items, counted:
            async for item in items:
                if self.control.halted(model):
                    return
                known = (item.input_tokens, item.input_estimated)
                tokens, estimated = await self.requests.counter.input_tokens(
                    model, item.params, item.content_hash, known=known
                )
                ready = replace(item, input_tokens=tokens, input_estimated=estimated)
                try:
                    await counted.send(ready)
                except anyio.BrokenResourceError:
                    return  # every worker has stopped (the model halted)

    async def _feed(self, model: str, send: MemoryObjectSendStream[WorkItem]) -> None:
        after = 0
        async with send:
            while not self.control.halted(model):
                try:
                    page = await self.source.take(self.batch.id, model, after, PAGE)
                except StoreError as exc:  # claiming writes: a full disk stops here, as the
                    self._store_failed(exc)  # writer does, and what is in flight is kept
                    return
                if not page:
                    if await self.source.more_later(self.batch.id, model):
                        continue
                    return
                for item in page:
                    if self.control.halted(model):
                        return
                    await send.send(item)
                after = page[-1].request_id

    def _store_failed(self, exc: StoreError) -> None:
        if self.report.store_error is None:
            self.report.store_error = str(exc)
        self.stop(interrupted=False)

    async def _work(self, model: str, receive: MemoryObjectReceiveStream[WorkItem]) -> None:
        info = self.catalog.get(model)
        async with receive:
            async for item in receive:
                if self.control.halted(model):
                    return
                outcome = await self.requests.process(self.batch.id, info, item)
                with anyio.CancelScope(shield=True):  # a finished, paid call is never dropped
                    await self._outcomes.send(outcome)


def _limiters(
    models: list[str], settings: RunSettings, given: Mapping[str, ModelLimiter] | None
) -> dict[str, ModelLimiter]:
    """The given limiters (a team's shared ones), and local ones for the other models (those of
    one pool sharing its limiter)."""
    limiters = dict(given or {})
    missing = {m: settings.limits[m] for m in models if m not in limiters}
    limiters.update(make_limiters(missing))
    return limiters


def worker_count(settings: ModelLimitSettings, progress: RunProgress, model: str) -> int:
    """Workers for ``model``: its concurrency, but at most its requests pending at the start (a
    request stays with one worker through all its attempts, so more would only sit idle, and a
    --concurrency far above the work must not cost memory)."""
    return max(1, min(settings.concurrency, progress.of(model).total))

"""The worker pool: pending requests of each model flow from the store through the pre-check,
the model's limits and the API, and their outcomes flow back to one writer task.

    per model:  feeder ─► memory stream ─► N workers ─┐
                                                      ├─► outcomes stream ─► writer ─► store
    per model:  feeder ─► memory stream ─► N workers ─┘

A request's result exists only once the writer has committed it; a request in flight when the
process dies is simply pending on the next run. Stopping (Ctrl-C, SIGTERM, a model whose key or
balance is refused, a store that cannot be written) ends dispatch first and then gives calls in
flight a grace period before cancelling them, and the writer commits everything that finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from batchrun.api.client import ApiClient, CallResult
from batchrun.api.failures import CallFailure, FailureKind
from batchrun.api.stream import block_texts
from batchrun.catalog import Catalog, ModelInfo
from batchrun.exceptions import StoreError
from batchrun.plan.precheck import TokenCounter
from batchrun.pricing import Usage, day_of, request_cost
from batchrun.run.budget import Budget
from batchrun.run.limits import ModelLimiter, ModelLimitSettings
from batchrun.run.progress import RunProgress
from batchrun.run.retry import (
    BACKS_OFF_MODEL,
    STOPS_EVERY_MODEL,
    Action,
    RetryPolicy,
    decide,
)
from batchrun.store import AttemptRecord, BatchInfo, Outcome, Store, WorkItem

log = logging.getLogger(__name__)
PAGE = 500
OUTCOME_QUEUE = 64


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """How one run behaves; the CLI builds it from options, the catalog and the environment."""

    limits: Mapping[str, ModelLimitSettings]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    precheck: bool = True
    precheck_concurrency: int = 16
    grace_seconds: float = 5.0
    commit_batch: int = 256
    cancel_poll_seconds: float = 1.0  # how often the batch's status is read for a cancel


class WorkSource(Protocol):
    """Where the feeders take pending requests from; the writer records under ``owner``."""

    @property
    def owner(self) -> str | None:
        """The worker id whose claims the results must match; None without claims."""

    async def take(self, batch_id: str, model: str, after: int, limit: int) -> list[WorkItem]:
        """The next pending requests of one model after ``after``; [] when there are none."""


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


@dataclass
class RunReport:
    """How a run ended."""

    interrupted: bool = False
    stopped_models: dict[str, str] = field(default_factory=dict)
    budget_reached: bool = False
    store_error: str | None = None
    unsaved: list[Outcome] = field(default_factory=list)
    canceled: bool = False  # `batchrun cancel` ran meanwhile


@dataclass(frozen=True, kw_only=True, slots=True)
class _Try:
    """One attempt at a request: what is sent, and when it started (wall clock and perf clock)."""

    info: ModelInfo
    item: WorkItem
    outcome: Outcome
    number: int  # 1-based within this run
    started: float
    clock: float

    def record(self, outcome: str, **fields: Any) -> None:
        """Add this attempt to the request's outcome."""
        self.outcome.attempts.append(
            AttemptRecord(
                number=self.item.attempts + self.number,
                started_at=self.started,
                duration_s=time.perf_counter() - self.clock,
                outcome=outcome,
                **fields,
            )
        )


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
        source: WorkSource | None = None,
        limiters: Mapping[str, ModelLimiter] | None = None,
    ) -> None:
        self.budget = budget
        self.source = source or StorePending(store)
        self.store = store
        self.client = client
        self.catalog = catalog
        self.batch = batch
        self.models = models
        self.settings = settings
        self.progress = progress
        self.report = RunReport()
        self.limiters = dict(limiters or {})
        for m in models:
            self.limiters.setdefault(m, ModelLimiter(settings.limits[m]))
        self._counter = TokenCounter(client, settings.precheck, settings.precheck_concurrency)
        self._stopping = anyio.Event()
        self._dispatch: anyio.CancelScope | None = None
        # A short queue to the writer: finished work waits little for its commit, so a crash
        # loses (and a resume pays again for) as few finished calls as possible.
        send, receive = anyio.create_memory_object_stream[Outcome](OUTCOME_QUEUE)
        self._outcomes: MemoryObjectSendStream[Outcome] = send
        self._outcomes_in: MemoryObjectReceiveStream[Outcome] = receive

    async def run(self) -> RunReport:
        """Run until every pending request is done, or dispatch stops."""
        async with anyio.create_task_group() as outer:
            outer.start_soon(self._writer)
            async with self._outcomes:
                with anyio.CancelScope() as dispatch:
                    self._dispatch = dispatch
                    async with anyio.create_task_group() as group:
                        group.start_soon(self._cancel_after_grace)
                        group.start_soon(self._watch_for_cancel)
                        async with anyio.create_task_group() as pipelines:
                            for model in self.models:
                                pipelines.start_soon(self._model_pipeline, model)
                        group.cancel_scope.cancel()  # all done: no grace period to watch
        return self.report

    def stop(self, *, interrupted: bool) -> None:
        """Stop dispatching; calls in flight get the grace period, then are cancelled."""
        if self._stopping.is_set():
            return
        self.report.interrupted = self.report.interrupted or interrupted
        self._stopping.set()

    async def _cancel_after_grace(self) -> None:
        """After a stop, wait the grace period and cancel whatever is still in flight."""
        await self._stopping.wait()
        await anyio.sleep(self.settings.grace_seconds)
        if self._dispatch is not None:
            self._dispatch.cancel()

    async def _watch_for_cancel(self) -> None:
        """Stop at once when the batch is canceled: its pending requests take no results."""
        while not self._stopping.is_set():
            with anyio.move_on_after(self.settings.cancel_poll_seconds):
                await self._stopping.wait()
            try:
                status = self.store.find_batch(self.batch.id).status
            except StoreError:
                continue  # the writer reports a store that fails; this is only a poll
            if status == "canceled":
                self.report.canceled = True
                self.stop(interrupted=False)
                if self._dispatch is not None:
                    self._dispatch.cancel()  # no grace: whatever finishes now is not kept
                return

    # --- per model -----------------------------------------------------------------------------

    async def _model_pipeline(self, model: str) -> None:
        limiter = self.limiters[model]
        workers = limiter.settings.concurrency
        send, receive = anyio.create_memory_object_stream[WorkItem](workers * 2)
        async with anyio.create_task_group() as group:
            group.start_soon(self._feed, model, send)
            async with receive:
                for _ in range(workers):
                    group.start_soon(self._work, model, receive.clone())

    async def _feed(self, model: str, send: MemoryObjectSendStream[WorkItem]) -> None:
        after = 0
        async with send:
            while not self._halted(model):
                page = await self.source.take(self.batch.id, model, after, PAGE)
                if not page:
                    return
                for item in page:
                    if self._halted(model):
                        return
                    await send.send(item)
                after = page[-1].request_id

    async def _work(self, model: str, receive: MemoryObjectReceiveStream[WorkItem]) -> None:
        info = self.catalog.get(model)
        async with receive:
            async for item in receive:
                if self._halted(model):
                    return
                outcome = await self._process(info, item)
                with anyio.CancelScope(shield=True):  # a finished, paid call is never dropped
                    await self._outcomes.send(outcome)

    def _halted(self, model: str) -> bool:
        return self._stopping.is_set() or model in self.report.stopped_models

    # --- one request ---------------------------------------------------------------------------

    async def _process(self, info: ModelInfo, item: WorkItem) -> Outcome:
        outcome = Outcome(
            request_id=item.request_id,
            batch_id=self.batch.id,
            model=item.model,
            custom_id=item.custom_id,
            status="pending",
        )
        tokens, estimated = await self._counter.input_tokens(
            info.name,
            item.params,
            item.content_hash,
            known=(item.input_tokens, item.input_estimated),
        )
        outcome.input_tokens, outcome.input_estimated = tokens, estimated
        max_tokens = int(item.params["max_tokens"])
        if not estimated and tokens + max_tokens > info.context_window:
            return self._invalid(outcome, _overflow_message(info, tokens, max_tokens))
        await self._attempts(info, item, outcome, tokens + max_tokens)
        return outcome

    async def _attempts(
        self, info: ModelInfo, item: WorkItem, outcome: Outcome, reserve: int
    ) -> None:
        for number in range(1, self.settings.retry.max_attempts + 1):
            if self._halted(info.name):
                return
            worst = await self._reserve_budget(info, item, outcome)
            if worst is None:
                return
            try:
                delay = await self._attempt(info, item, outcome, reserve, number)
            finally:
                if self.budget is not None:
                    cost = (outcome.result or {}).get("cost_nanos") or 0
                    self.budget.settle(worst, cost if outcome.status == "succeeded" else 0)
            if delay is None:
                return
            self.progress.of(info.name).retries += 1
            await self._sleep_unless_stopping(delay)

    async def _attempt(
        self, info: ModelInfo, item: WorkItem, outcome: Outcome, reserve: int, number: int
    ) -> float | None:
        """One call under the model's limits; the delay before a retry, or None when done."""
        limiter = self.limiters[info.name]
        async with limiter.slots:
            await limiter.acquire(reserve)
            if self._halted(info.name):
                limiter.settle(reserve, 0)
                return None
            attempt = _Try(
                info=info,
                item=item,
                outcome=outcome,
                number=number,
                started=time.time(),
                clock=time.perf_counter(),
            )
            try:
                call = await self._call(attempt)
            except CallFailure as failure:
                limiter.settle(reserve, 0)
                return self._after_failure(attempt, failure)
            used = int(call.message.get("usage", {}).get("output_tokens", 0))
            limiter.settle(reserve, (outcome.input_tokens or 0) + used)
            self._succeeded(attempt, call)
            return None

    async def _reserve_budget(
        self, info: ModelInfo, item: WorkItem, outcome: Outcome
    ) -> int | None:
        """Reserve the attempt's worst-case cost; None when it must not be sent."""
        if self.budget is None:
            return 0
        usage = Usage(
            input_tokens=outcome.input_tokens or 0, output_tokens=item.params["max_tokens"]
        )
        worst = request_cost(
            info, usage, day_of(time.time()), item.params, self.catalog.priority_multiplier
        )
        if worst is None:
            self._stop_model_reason(
                info.name,
                "it has no price today, so it cannot be held to --max-cost; add a price in "
                "your catalog file (--catalog) or run it without --max-cost",
            )
            return None
        if await self.budget.reserve(worst.nanos):
            return worst.nanos
        self.report.budget_reached = True
        self.stop(interrupted=False)
        return None

    async def _call(self, attempt: _Try) -> CallResult:
        try:
            return await self.client.stream_message(attempt.info.name, attempt.item.params)
        except anyio.get_cancelled_exc_class():
            attempt.record("interrupted", message="cancelled when the grace period ran out")
            with anyio.CancelScope(shield=True):
                await self._outcomes.send(attempt.outcome)
            raise

    def _after_failure(self, attempt: _Try, failure: CallFailure) -> float | None:
        """Record a failed attempt; return the delay before retrying, or None to stop trying."""
        model = attempt.info.name
        decision = decide(self.settings.retry, failure.kind, attempt.number, failure.retry_after)
        if failure.kind in BACKS_OFF_MODEL:
            rate_limited = failure.kind is FailureKind.RATE_LIMITED
            self.limiters[model].on_throttled(rate_limited, failure.retry_after)
            self.progress.of(model).throttled += 1
        labels = {Action.RETRY: "retry", Action.GIVE_UP: "failed", Action.STOP_MODEL: "stopped"}
        attempt.record(
            labels[decision.action],
            status=failure.status,
            error_type=failure.error_type,
            error_code=failure.code,
            message=failure.message,
            request_uid=failure.request_id,
            retry_after_s=decision.delay if decision.action is Action.RETRY else None,
        )
        outcome = attempt.outcome
        outcome.error_type, outcome.error_message = failure.error_type, failure.message
        outcome.error_status, outcome.error_code = failure.status, failure.code
        if decision.action is Action.STOP_MODEL:
            self._stop_model(model, failure)
        elif decision.action is Action.GIVE_UP:
            outcome.status = "errored"
            progress = self.progress.of(model)
            progress.errored += 1
            progress.finished()
        return decision.delay if decision.action is Action.RETRY else None

    def _stop_model(self, model: str, failure: CallFailure) -> None:
        what = {
            FailureKind.AUTH: "the API key was refused",
            FailureKind.BALANCE: "the account's balance is exhausted; top it up, then resume",
            FailureKind.QUOTA: "the plan's usage quota is used up; resume once it renews",
        }[failure.kind]
        reason = f"{what}: {failure.status} {failure.error_type}: {failure.message}"
        stopped = self.models if failure.kind in STOPS_EVERY_MODEL else [model]
        for name in stopped:
            self._stop_model_reason(name, reason)

    def _stop_model_reason(self, model: str, reason: str) -> None:
        if model in self.report.stopped_models:
            return
        self.report.stopped_models[model] = reason
        self.progress.of(model).stopped = reason
        log.warning("stopped sending to %s: %s", model, reason)

    def _succeeded(self, attempt: _Try, call: CallResult) -> None:
        attempt.record("ok", status=200)
        outcome = attempt.outcome
        outcome.status = "succeeded"
        outcome.error_type = outcome.error_message = None
        outcome.error_status = outcome.error_code = None
        result = outcome.result = self._result_row(attempt.info, call, attempt.item.params)
        progress = self.progress.of(attempt.info.name)
        progress.succeeded += 1
        progress.input_tokens += result["input_tokens"]
        progress.output_tokens += result["output_tokens"]
        if result["cost_nanos"] is None:
            progress.unpriced += 1
        else:
            progress.spent_nanos += result["cost_nanos"]
        progress.finished()

    def _result_row(
        self, info: ModelInfo, call: CallResult, params: dict[str, Any]
    ) -> dict[str, Any]:
        message = call.message
        raw = message.get("usage") or {}
        usage = Usage(
            input_tokens=int(raw.get("input_tokens") or 0),
            output_tokens=int(raw.get("output_tokens") or 0),
            cache_read_tokens=int(raw.get("cache_read_input_tokens") or 0),
            cache_creation_tokens=int(raw.get("cache_creation_input_tokens") or 0),
        )
        cost = request_cost(
            info, usage, day_of(call.sent_at), params, self.catalog.priority_multiplier
        )
        text, thinking = block_texts(message)
        timings = call.timings
        return {
            "sent_at": call.sent_at,
            "first_event_s": timings.first_event,
            "first_token_s": timings.first_token,
            "first_thinking_s": timings.first_thinking,
            "first_text_s": timings.first_text,
            "last_token_s": timings.last_token,
            "done_s": timings.done if timings.done is not None else 0.0,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_creation_tokens": usage.cache_creation_tokens,
            "stop_reason": message.get("stop_reason"),
            "text": text,
            "thinking": thinking,
            "message": message,
            "cost_nanos": cost.nanos if cost else None,
            "price_date": cost.price_date.isoformat() if cost else None,
            "simulated": self.client.endpoint.simulated,
        }

    def _invalid(self, outcome: Outcome, message: str) -> Outcome:
        outcome.status = "invalid"
        outcome.error_type = "invalid_request"
        outcome.error_message = message
        progress = self.progress.of(outcome.model)
        progress.invalid += 1
        progress.finished()
        return outcome

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with anyio.move_on_after(seconds):
            await self._stopping.wait()

    # --- the writer ----------------------------------------------------------------------------

    async def _writer(self) -> None:
        async with self._outcomes_in:
            while True:
                try:
                    first = await self._outcomes_in.receive()
                except anyio.EndOfStream:
                    return
                batch = [first]
                while len(batch) < self.settings.commit_batch:
                    try:
                        batch.append(self._outcomes_in.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                with anyio.CancelScope(shield=True):
                    await self._commit(batch)

    async def _commit(self, batch: list[Outcome]) -> None:
        if self.report.store_error is not None:
            self._unsaved(batch)
            return
        started = time.perf_counter()
        try:
            # In the event loop's own thread, on purpose: a worker thread here waits for the GIL
            # behind the busy loop at every SQLite call (a 256-row commit took ~1 s instead of
            # 14 ms), and completed results piled up uncommitted. A short block is the cheaper.
            self.store.record(batch, claimed_by=self.source.owner)
        except StoreError as exc:
            self.report.store_error = str(exc)
            self._unsaved(batch)
            self.stop(interrupted=False)
            return
        log.debug("committed %d outcomes in %.3f s", len(batch), time.perf_counter() - started)

    def _unsaved(self, batch: list[Outcome]) -> None:
        """Keep what could not be committed for the CLI to write out; a request that was never
        sent (stopped before its first attempt) has nothing to lose and stays pending."""
        self.report.unsaved.extend(o for o in batch if o.attempts or o.status != "pending")


def _overflow_message(info: ModelInfo, tokens: int, max_tokens: int) -> str:
    return (
        f"input ({tokens:,} tokens) plus max_tokens ({max_tokens:,}) exceeds {info.name}'s "
        f"context window of {info.context_window:,} tokens"
    )

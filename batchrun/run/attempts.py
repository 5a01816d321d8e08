"""One request's way through a run: the pre-check, then attempts under the model's limits and
the budget, retried as ``retry.decide`` says, each attempt recorded on the request's outcome.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from batchrun.api.client import ApiClient, CallResult
from batchrun.api.failures import CallFailure, FailureKind
from batchrun.catalog import Catalog, ModelInfo
from batchrun.plan.precheck import TokenCounter
from batchrun.pricing import Usage, day_of, request_cost
from batchrun.run.budget import Budget
from batchrun.run.control import RunControl
from batchrun.run.limits import ModelLimiter
from batchrun.run.results import count_success, result_row
from batchrun.run.retry import BACKS_OFF_MODEL, STOPS_EVERY_MODEL, Action, Decision, decide
from batchrun.run.settings import RunSettings
from batchrun.status import RequestStatus
from batchrun.store import AttemptRecord, Outcome, WorkItem

_LABELS = {Action.RETRY: "retry", Action.GIVE_UP: "failed", Action.STOP_MODEL: "stopped"}
_REFUSED = {
    FailureKind.AUTH: "the API key was refused",
    FailureKind.BALANCE: "the account's balance is exhausted; top it up, then resume",
    FailureKind.QUOTA: "the plan's usage quota is used up; resume once it renews",
}
_UNPRICED = (
    "it has no price today, so it cannot be held to --max-cost; add a price in "
    "your catalog file (--catalog) or run it without --max-cost"
)


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


@dataclass(frozen=True, kw_only=True)
class RequestAttempts:
    """Runs one request at a time to its outcome; shared by every worker task of a run."""

    control: RunControl
    client: ApiClient
    catalog: Catalog
    settings: RunSettings
    limiters: Mapping[str, ModelLimiter]
    counter: TokenCounter
    outcomes: MemoryObjectSendStream[Outcome]  # where an interrupted attempt is saved at once
    budget: Budget | None = None

    async def process(self, batch_id: str, info: ModelInfo, item: WorkItem) -> Outcome:
        """The request's outcome: invalid, or its attempts until it succeeds, fails or stops."""
        outcome = Outcome(
            request_id=item.request_id,
            batch_id=batch_id,
            model=item.model,
            custom_id=item.custom_id,
            status=RequestStatus.PENDING,
        )
        known = (item.input_tokens, item.input_estimated)
        tokens, estimated = await self.counter.input_tokens(
            info.name, item.params, item.content_hash, known=known
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
            if self.control.halted(info.name):
                return
            worst = await self._reserve_budget(info, item, outcome)
            if worst is None:
                return
            try:
                delay = await self._attempt(info, item, outcome, reserve, number)
            finally:
                self._settle_budget(worst, outcome)
            if delay is None:
                return
            self.control.progress.of(info.name).retries += 1
            await self.control.sleep_unless_stopping(delay)

    async def _attempt(
        self, info: ModelInfo, item: WorkItem, outcome: Outcome, reserve: int, number: int
    ) -> float | None:
        """One call under the model's limits; the delay before a retry, or None when done."""
        limiter = self.limiters[info.name]
        async with limiter.slots:
            await limiter.acquire(reserve)
            if self.control.halted(info.name):
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
            self.control.stop_model(info.name, _UNPRICED)
            return None
        if await self.budget.reserve(worst.nanos):
            return worst.nanos
        self.control.report.budget_reached = True
        self.control.stop(interrupted=False)
        return None

    def _settle_budget(self, worst: int, outcome: Outcome) -> None:
        if self.budget is None:
            return
        cost = (outcome.result or {}).get("cost_nanos") or 0
        self.budget.settle(worst, cost if outcome.status == RequestStatus.SUCCEEDED else 0)

    async def _call(self, attempt: _Try) -> CallResult:
        try:
            return await self.client.stream_message(attempt.info.name, attempt.item.params)
        except anyio.get_cancelled_exc_class():
            attempt.record("interrupted", message="cancelled when the grace period ran out")
            with anyio.CancelScope(shield=True):
                await self.outcomes.send(attempt.outcome)
            raise

    def _after_failure(self, attempt: _Try, failure: CallFailure) -> float | None:
        """Record a failed attempt; return the delay before retrying, or None to stop trying."""
        model = attempt.info.name
        decision = decide(self.settings.retry, failure.kind, attempt.number, failure.retry_after)
        if failure.kind in BACKS_OFF_MODEL:
            rate_limited = failure.kind is FailureKind.RATE_LIMITED
            self.limiters[model].on_throttled(rate_limited, failure.retry_after, failure.message)
            self.control.progress.of(model).throttled += 1
        _record_failure(attempt, failure, decision)
        if decision.action is Action.STOP_MODEL:
            self._stop_model(model, failure)
        elif decision.action is Action.GIVE_UP:
            attempt.outcome.status = RequestStatus.ERRORED
            progress = self.control.progress.of(model)
            progress.errored += 1
            progress.finished()
        return decision.delay if decision.action is Action.RETRY else None

    def _stop_model(self, model: str, failure: CallFailure) -> None:
        reason = (
            f"{_REFUSED[failure.kind]}: {failure.status} {failure.error_type}: {failure.message}"
        )
        stopped = self.control.models if failure.kind in STOPS_EVERY_MODEL else [model]
        for name in stopped:
            self.control.stop_model(name, reason)

    def _succeeded(self, attempt: _Try, call: CallResult) -> None:
        attempt.record("ok", status=200)
        outcome = attempt.outcome
        outcome.status = RequestStatus.SUCCEEDED
        outcome.error_type = outcome.error_message = None
        outcome.error_status = outcome.error_code = None
        outcome.result = result_row(
            attempt.info,
            call,
            attempt.item.params,
            priority_multiplier=self.catalog.priority_multiplier,
            simulated=self.client.endpoint.simulated,
        )
        count_success(self.control.progress.of(attempt.info.name), outcome.result)

    def _invalid(self, outcome: Outcome, message: str) -> Outcome:
        outcome.status = RequestStatus.INVALID
        outcome.error_type = "invalid_request"
        outcome.error_message = message
        progress = self.control.progress.of(outcome.model)
        progress.invalid += 1
        progress.finished()
        return outcome


def _record_failure(attempt: _Try, failure: CallFailure, decision: Decision) -> None:
    """The failed attempt on the request's record, and its error on the outcome."""
    retrying = decision.action is Action.RETRY
    attempt.record(
        _LABELS[decision.action],
        status=failure.status,
        error_type=failure.error_type,
        error_code=failure.code,
        message=failure.message,
        request_uid=failure.request_id,
        retry_after_s=decision.delay if retrying else None,
    )
    outcome = attempt.outcome
    outcome.error_type, outcome.error_message = failure.error_type, failure.message
    outcome.error_status, outcome.error_code = failure.status, failure.code


def _overflow_message(info: ModelInfo, tokens: int, max_tokens: int) -> str:
    return (
        f"input ({tokens:,} tokens) plus max_tokens ({max_tokens:,}) exceeds {info.name}'s "
        f"context window of {info.context_window:,} tokens"
    )

"""One request's way through a run: the pre-check, then attempts under the model's limits and
the budget, retried as ``retry.decide`` says, each attempt recorded on the request's outcome.
A plan's quota (2056) that renews soon pauses the model (``RunControl.pause_for_quota``) without
using up the request's attempts.

When a request is first sent, the run's ``CacheView`` (one per run, shared by its workers, on the
wall clock) says how many of its prompt tokens MiniMax should read from its prompt cache; the
result keeps that figure as ``expected_cache_tokens`` beside the cache read MiniMax reported.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from batchrun.api.client import ApiClient, CallResult
from batchrun.api.failures import CallFailure, FailureKind
from batchrun.catalog import Catalog, ModelInfo
from batchrun.plan.cache import CacheView
from batchrun.plan.precheck import TokenCounter
from batchrun.pricing import Usage, day_of, request_cost
from batchrun.run.budget import Budget, ModelBudget, SpendWatch
from batchrun.run.control import RunControl
from batchrun.run.limits import ModelLimiter
from batchrun.run.progress import eta_text, utc_minute
from batchrun.run.results import count_success, result_row
from batchrun.run.retry import BACKS_OFF_MODEL, STOPS_EVERY_MODEL, Action, Decision, decide
from batchrun.run.settings import RunSettings
from batchrun.status import RequestStatus
from batchrun.store import AttemptRecord, Outcome, WorkItem

_LABELS = {
    Action.RETRY: "retry",
    Action.WAIT_QUOTA: "retry",  # tried again once the quota renews
    Action.GIVE_UP: "failed",
    Action.STOP_MODEL: "stopped",
}
_TRIES_AGAIN = frozenset({Action.RETRY, Action.WAIT_QUOTA})
_REFUSED = {
    FailureKind.AUTH: "the API key was refused",
    FailureKind.BALANCE: "the account's balance is exhausted; top it up, then resume",
    FailureKind.QUOTA: "the plan's usage quota is used up; resume once it renews",
    FailureKind.NO_ROUTE: (
        "the server has no such path, so the base URL is wrong: MiniMax's is "
        "https://api.minimax.io/anthropic (mainland: https://api.minimaxi.com/anthropic); "
        "fix --base-url or ANTHROPIC_BASE_URL, then resume"
    ),
}
_UNPRICED = (
    "it has no price today, so it cannot be held to --max-cost; add a price in "
    "your catalog file (--catalog) or run it without --max-cost"
)


@dataclass(kw_only=True, slots=True)
class _Request:
    """One request on its way through its attempts in this run."""

    info: ModelInfo
    item: WorkItem
    outcome: Outcome
    reserve: int  # tokens reserved under the model's TPM for each attempt
    expected_cache_tokens: int | None = None  # fixed when the request is first sent
    sent: bool = False  # counted in the limiter's ``started`` (a team sizes its claims by it)


@dataclass(frozen=True, kw_only=True, slots=True)
class _Try:
    """One attempt at a request: what is sent, and when it started (wall clock and perf clock)."""

    info: ModelInfo
    item: WorkItem
    outcome: Outcome
    number: int  # 1-based within this run
    started: float
    clock: float
    expected_cache_tokens: int | None = None

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
    model_budgets: Mapping[str, ModelBudget] = field(default_factory=dict)  # caps of one model
    watch: SpendWatch | None = None  # says when the spend crosses a budget's soft threshold
    cache: CacheView = field(default_factory=CacheView)  # what MiniMax should have cached

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
        refused = info.refuses_request(max_tokens, tokens, estimated)
        if refused is not None:
            self.limiters[info.name].started += 1  # done without being sent
            return self._invalid(outcome, refused)
        request = _Request(info=info, item=item, outcome=outcome, reserve=tokens + max_tokens)
        await self._attempts(request)
        return outcome

    async def _attempts(self, request: _Request) -> None:
        info, item, outcome = request.info, request.item, request.outcome
        calls = spent = 0  # calls made; attempts used up (a quota wait uses none)
        while spent < self.settings.retry.max_attempts:
            await self.control.wait_for_quota(info.name)
            if self.control.halted(info.name):
                return
            worst = await self._reserve_budget(info, item, outcome)
            if worst is None:
                return
            calls += 1
            try:
                decision = await self._attempt(request, (calls, spent + 1))
            finally:
                self._settle_budget(worst, outcome)
            if decision is None or decision.action not in _TRIES_AGAIN:
                return
            spent += decision.action is Action.RETRY
            self.control.progress.of(info.name).retries += 1
            await self.control.sleep_unless_stopping(decision.delay)

    async def _attempt(self, request: _Request, numbers: tuple[int, int]) -> Decision | None:
        """One call under the model's limits: what to do after it failed, None when it did not.

        ``numbers``: this call's number in the run, and the attempt it uses up (1-based).
        """
        info, outcome, reserve = request.info, request.outcome, request.reserve
        limiter = self.limiters[info.name]
        async with limiter.slots:
            await limiter.acquire(reserve)
            if self.control.halted(info.name):
                limiter.settle(reserve, 0)
                return None
            if not request.sent:
                request.sent = True
                limiter.started += 1
            if request.expected_cache_tokens is None:  # first sent: what the cache should hold now
                request.expected_cache_tokens = self.cache.expect(
                    info, request.item.params, outcome.input_tokens or 0
                )
            attempt = _Try(
                info=info,
                item=request.item,
                outcome=outcome,
                number=numbers[0],
                started=time.time(),
                clock=time.perf_counter(),
                expected_cache_tokens=request.expected_cache_tokens,
            )
            try:
                call = await self._call(attempt)
            except CallFailure as failure:
                limiter.settle(reserve, 0)
                return self._after_failure(attempt, failure, numbers[1])
            used = int(call.message.get("usage", {}).get("output_tokens", 0))
            limiter.settle(reserve, (outcome.input_tokens or 0) + used)
            self._succeeded(attempt, call)
            return None

    async def _reserve_budget(
        self, info: ModelInfo, item: WorkItem, outcome: Outcome
    ) -> int | None:
        """Reserve the attempt's worst-case cost, from the model's cap and the batch's; None
        when it must not be sent."""
        own = self.model_budgets.get(info.name)
        if self.budget is None and own is None:
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
        if own is not None and not await own.reserve(worst.nanos):
            self.control.report.budget_models[info.name] = own.room.name()
            self.control.stop_model(info.name, own.why())
            return None
        if self.budget is None or await self.budget.reserve(worst.nanos):
            return worst.nanos
        if own is not None:
            own.settle(worst.nanos, 0)
        self.control.report.budget_reached = True
        self.control.stop(interrupted=False)
        return None

    def _settle_budget(self, worst: int, outcome: Outcome) -> None:
        """Replace the attempt's reservations by its cost, and watch the budgets' thresholds."""
        cost = (outcome.result or {}).get("cost_nanos") or 0
        actual = cost if outcome.status == RequestStatus.SUCCEEDED else 0
        if self.budget is not None:
            self.budget.settle(worst, actual)
        if (own := self.model_budgets.get(outcome.model)) is not None:
            own.settle(worst, actual)
        if self.watch is not None and actual:
            self.control.progress.budget_warnings += self.watch.add(outcome.model, actual)

    async def _call(self, attempt: _Try) -> CallResult:
        try:
            return await self.client.stream_message(attempt.info.name, attempt.item.params)
        except anyio.get_cancelled_exc_class():
            attempt.record("interrupted", message="cancelled when the grace period ran out")
            with anyio.CancelScope(shield=True):
                await self.outcomes.send(attempt.outcome)
            raise

    def _after_failure(self, attempt: _Try, failure: CallFailure, spent: int) -> Decision:
        """Record a failed attempt (the ``spent``-th to count) and say what comes next."""
        model = attempt.info.name
        reset_in = failure.reset_at - time.time() if failure.reset_at is not None else None
        decision = decide(
            self.settings.retry, failure.kind, spent, failure.retry_after, quota_reset_in=reset_in
        )
        if failure.kind in BACKS_OFF_MODEL:
            rate_limited = failure.kind is FailureKind.RATE_LIMITED
            self.limiters[model].on_throttled(rate_limited, failure.retry_after, failure.message)
            self.control.progress.of(model).throttled += 1
        _record_failure(attempt, failure, decision)
        if decision.action is Action.WAIT_QUOTA:
            self.control.pause_for_quota(model, time.time() + decision.delay)
        elif decision.action is Action.STOP_MODEL:
            self._stop_model(model, failure)
        elif decision.action is Action.GIVE_UP:
            self._give_up(attempt, failure)
        return decision

    def _give_up(self, attempt: _Try, failure: CallFailure) -> None:
        """The request is finished without an answer: invalid when too long for the model."""
        outcome = attempt.outcome
        if failure.kind is FailureKind.CONTEXT_OVERFLOW:
            outcome.error_message = _refused_overflow(attempt, failure.message)
            self._invalid(outcome, outcome.error_message, error_type=failure.error_type)
            return
        outcome.status = RequestStatus.ERRORED
        progress = self.control.progress.of(outcome.model)
        progress.errored += 1
        progress.finished()

    def _stop_model(self, model: str, failure: CallFailure) -> None:
        why = _REFUSED[failure.kind]
        if failure.kind is FailureKind.QUOTA:
            why = _quota_stop(failure.reset_at, self.settings.retry.quota_wait)
            if model not in self.control.report.stopped_models:  # for the command to resume
                self.control.progress.of(model).quota_reset = failure.reset_at
        reason = f"{why}: {failure.status} {failure.error_type}: {failure.message}"
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
            expected_cache_tokens=attempt.expected_cache_tokens,
        )
        count_success(self.control.progress.of(attempt.info.name), outcome.result)

    def _invalid(
        self, outcome: Outcome, message: str, error_type: str = "invalid_request"
    ) -> Outcome:
        outcome.status = RequestStatus.INVALID
        outcome.error_type = error_type
        outcome.error_message = message
        progress = self.control.progress.of(outcome.model)
        progress.invalid += 1
        progress.finished()
        return outcome


def _record_failure(attempt: _Try, failure: CallFailure, decision: Decision) -> None:
    """The failed attempt on the request's record, and its error on the outcome."""
    retrying = decision.action in _TRIES_AGAIN
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


def _refused_overflow(attempt: _Try, said: str) -> str:
    """MiniMax's overflow refusal (which gives no numbers), with the numbers batchrun knows."""
    info, outcome = attempt.info, attempt.outcome
    how = "estimated locally" if outcome.input_estimated else "counted by count_tokens"
    cap = f", output cap {info.max_output_tokens:,}" if info.max_output_tokens else ""
    return (
        f"too long for {info.name}: input {outcome.input_tokens or 0:,} tokens ({how}) plus "
        f"max_tokens {int(attempt.item.params['max_tokens']):,}, against its context window of "
        f"{info.context_window:,} tokens{cap} (the catalog's); MiniMax said: {said}"
    )


def _quota_stop(reset_at: float | None, quota_wait: float) -> str:
    """Why a model stopped on its plan's quota, and when to resume."""
    if reset_at is None:
        return "the plan's usage quota is used up and MiniMax gave no renewal time; resume later"
    limit = f"more than --quota-wait ({eta_text(quota_wait)})" if quota_wait else "--quota-wait 0"
    return (
        f"the plan's usage quota is used up until {utc_minute(reset_at)}, {limit} from now; "
        f"resume after {utc_minute(reset_at)}"
    )

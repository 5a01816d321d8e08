"""Fault storms and failure classification: the runner against the simulator over real HTTP.

The storm: 20% 529, 5% 500, 5% dropped and 2% stalled streams, and a server rate limit below
the one the runner is told. Every request ends with exactly one result, every attempt the server
saw is in the attempts table, and the wall time stays within a stated factor of the ideal.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchrun.api.client import ApiClient, _classify
from batchrun.api.endpoint import Deadlines, Endpoint
from batchrun.api.failures import FailureKind
from batchrun.plan.precheck import REJECTIONS_BEFORE_REFUSED, TokenCounter
from batchrun.run.launch import LimitOptions
from batchrun.run.retry import Action, RetryPolicy, decide
from batchrun.sim import FaultRates, RunningSimulator
from batchrun.sim.stats import OUTCOMES
from tests.helpers import API_KEY
from tests.runharness import endpoint_for, prompts, run_jobs

SimFactory = Callable[..., RunningSimulator]
M27, M3, M2 = "MiniMax-M2.7", "MiniMax-M3", "MiniMax-M2"
STORM = FaultRates(overloaded=0.2, server_error=0.05, drop=0.05, stall=0.02)
SERVER_RPM = 1800  # 30 per second over 1-second windows
RUNNER_RPM = 6000  # what the runner is told: more than the server allows
JOBS = 90
# The ideal is every request admitted at the server's rate with no fault at all. A storm where
# about one attempt in three fails (each failed attempt also counts against the server's rate)
# needs ~1.5x that at best; stalls cost an idle deadline each; backoff adds some more.
WALL_FACTOR = 4.0


def _wait_idle(sim: RunningSimulator, timeout: float = 10.0) -> dict[str, object]:
    """The simulator's stats once no response is in flight (stalled ones end after the stall)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = sim.fetch_stats()
        if stats["in_flight"] == 0 or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def test_storm_completes_with_every_attempt_recorded(
    tmp_path: Path, sim_factory: SimFactory
) -> None:
    sim = sim_factory(
        time_scale=0.002,
        faults=STORM,
        model_faults={M2: FaultRates(auth=1.0)},  # a key refused for one model
        stall_seconds=1.0,
        rpm={"*": SERVER_RPM},
        limit_window=1.0,
    )
    started = time.monotonic()
    run = run_jobs(
        tmp_path,
        sim,
        prompts(JOBS),
        [M27, M3, M2],
        limits=LimitOptions(rpm={"*": RUNNER_RPM}, tpm={}, concurrency={"*": 16}),
        deadlines=Deadlines(idle=0.3, total=20),
        retry=RetryPolicy(max_attempts=30, base_delay=0.02, max_delay=0.5),
    )
    elapsed = time.monotonic() - started

    # The refused model is stopped with a clear message; its requests stay pending (resumable).
    assert set(run.report.stopped_models) == {M2}
    assert "API key was refused" in run.report.stopped_models[M2]
    assert "401" in run.report.stopped_models[M2]
    status = Counter((row["model"], row["status"]) for row in run.requests())
    assert status == {(M27, "succeeded"): JOBS, (M3, "succeeded"): JOBS, (M2, "pending"): JOBS}

    # No request lost or doubled: one result per (custom_id, model) of the healthy models.
    results = Counter((row["custom_id"], row["model"]) for row in run.results())
    assert len(results) == 2 * JOBS
    assert set(results.values()) == {1}

    # Every attempt the server saw is recorded, and each request's count matches its rows.
    stats = _wait_idle(sim)
    attempts = run.attempts()
    per_model = Counter(row["model"] for row in attempts)
    seen = stats["models"]
    assert isinstance(seen, dict)
    for model in (M27, M3, M2):
        assert per_model[model] == sum(seen[model][outcome] for outcome in OUTCOMES), model
    per_request = Counter(row["request_id"] for row in attempts)
    for request in run.requests():
        assert request["attempts"] == per_request[request["id"]]
    outcomes = Counter((row["model"], row["outcome"]) for row in attempts)
    assert outcomes[(M27, "ok")] == outcomes[(M3, "ok")] == JOBS
    errors = Counter(row["error_type"] for row in attempts if row["outcome"] == "retry")
    assert errors["overloaded_error"] > 0
    assert errors["api_error"] > 0
    assert errors["rate_limit_error"] > 0  # the server's limit is below the runner's
    assert errors["connection"] + errors["stalled"] > 0
    assert run.progress.of(M27).retries + run.progress.of(M3).retries == sum(errors.values())

    ideal = JOBS / (SERVER_RPM / 60)  # both models run side by side, each at the server's rate
    print(f"storm: {elapsed:.2f} s, ideal {ideal:.2f} s, factor {elapsed / ideal:.2f}")
    assert elapsed < WALL_FACTOR * ideal + 2.0, f"{elapsed:.1f} s against an ideal of {ideal:.1f}"


def test_a_2013_that_says_too_long_is_a_context_overflow() -> None:
    overflow = "invalid params, context window exceeds limit (2013)"
    cap = "invalid params, does not support max tokens > 524288 (2013)"
    other = 'invalid params, invalid thinking.type: "enabled" (allowed: adaptive, disabled) (2013)'
    assert _classify(400, 2013, overflow) is FailureKind.CONTEXT_OVERFLOW
    assert _classify(400, 2013, cap) is FailureKind.CONTEXT_OVERFLOW
    assert _classify(400, 2013, other) is FailureKind.BAD_REQUEST
    assert decide(RetryPolicy(), FailureKind.CONTEXT_OVERFLOW, 1).action is Action.GIVE_UP


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (500, 1008, FailureKind.BALANCE),  # insufficient balance comes as a 500
        (401, 1004, FailureKind.AUTH),
        (401, None, FailureKind.AUTH),
        (403, None, FailureKind.AUTH),
        (400, 2049, FailureKind.AUTH),  # the code decides, whatever the status
        (429, 1002, FailureKind.RATE_LIMITED),
        (500, 1041, FailureKind.RATE_LIMITED),  # connection limit
        (400, 2045, FailureKind.RATE_LIMITED),  # rate growth limit
        (429, 1039, FailureKind.RATE_LIMITED),  # token limit as a rate limit
        (400, 1039, FailureKind.CONTEXT_OVERFLOW),  # token limit as a context overflow
        (429, 2056, FailureKind.QUOTA),  # the plan's 5-hour quota
        (500, 1026, FailureKind.MODERATION),
        (400, 1027, FailureKind.MODERATION),
        (500, 1000, FailureKind.SERVER),
        (500, 1033, FailureKind.SERVER),
        (500, 1001, FailureKind.TIMEOUT),
        (408, None, FailureKind.TIMEOUT),  # whatever the body says
        (408, 2013, FailureKind.TIMEOUT),
        (402, None, FailureKind.BALANCE),  # a pay-as-you-go account's insufficient balance
        (402, 1008, FailureKind.BALANCE),
        (529, None, FailureKind.OVERLOADED),
        (429, None, FailureKind.RATE_LIMITED),
        (502, None, FailureKind.SERVER),
        (400, 2013, FailureKind.BAD_REQUEST),
        (422, None, FailureKind.BAD_REQUEST),
    ],
)
def test_minimax_code_decides_before_the_status(
    status: int, code: int | None, kind: FailureKind
) -> None:
    assert _classify(status, code) is kind


@pytest.mark.parametrize(
    ("kind", "action"),
    [
        (FailureKind.BALANCE, Action.STOP_MODEL),
        (FailureKind.AUTH, Action.STOP_MODEL),
        (FailureKind.QUOTA, Action.STOP_MODEL),
        (FailureKind.RATE_LIMITED, Action.RETRY),
        (FailureKind.OVERLOADED, Action.RETRY),
        (FailureKind.TIMEOUT, Action.RETRY),
        (FailureKind.MODERATION, Action.GIVE_UP),
        (FailureKind.BAD_REQUEST, Action.GIVE_UP),
    ],
)
def test_what_each_kind_of_failure_does(kind: FailureKind, action: Action) -> None:
    assert decide(RetryPolicy(), kind, 1).action is action


def test_throttling_backs_off_exponentially_and_honours_retry_after() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    ceilings = [policy.base_delay * 2 ** (n - 1) for n in range(1, 6)]
    for attempt, ceiling in enumerate(ceilings, start=1):
        delays = [decide(policy, FailureKind.RATE_LIMITED, attempt).delay for _ in range(200)]
        assert max(delays) <= min(ceiling, policy.max_delay)
    assert decide(policy, FailureKind.RATE_LIMITED, 1, retry_after=30.0).delay >= 30.0
    assert decide(policy, FailureKind.RATE_LIMITED, policy.max_attempts).action is Action.GIVE_UP


GOOD: dict[str, Any] = {
    "messages": [{"role": "user", "content": "How many tokens is this?"}],
    "max_tokens": 64,
}
BAD: dict[str, Any] = {
    "messages": [{"role": "robot", "content": "A line the server rejects"}],
    "max_tokens": 64,
}


async def _count(
    sim: RunningSimulator, calls: list[dict[str, Any]], path: str = ""
) -> list[tuple[int, bool]]:
    """(tokens, estimated) for each params in turn, through one TokenCounter over real HTTP."""
    endpoint = endpoint_for(sim)
    endpoint = Endpoint(base_url=endpoint.base_url + path, api_key=API_KEY, simulated=True)
    client = ApiClient(endpoint, Deadlines(idle=5, total=10), max_connections=4)
    counter = TokenCounter(client)
    try:
        return [await counter.input_tokens(M3, dict(p), f"h{i}") for i, p in enumerate(calls)]
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_a_400_from_count_tokens_does_not_mark_the_model_refused(
    sim: RunningSimulator,
) -> None:
    # One malformed request is estimated; the next good one is still counted by the API.
    (bad, good) = await _count(sim, [BAD, GOOD])
    assert bad[1] is True
    assert good[1] is False
    assert sim.fetch_stats()["count_tokens_total"] == 2


@pytest.mark.anyio
async def test_a_model_whose_counts_keep_failing_is_estimated_from_then_on(
    sim: RunningSimulator,
) -> None:
    counted = await _count(sim, [BAD] * REJECTIONS_BEFORE_REFUSED + [GOOD, GOOD])
    assert all(estimated for _, estimated in counted)
    assert sim.fetch_stats()["count_tokens_total"] == REJECTIONS_BEFORE_REFUSED


@pytest.mark.anyio
async def test_a_404_from_count_tokens_marks_the_model_refused(sim: RunningSimulator) -> None:
    counted = await _count(sim, [GOOD, GOOD], path="/no-such-prefix")
    assert [estimated for _, estimated in counted] == [True, True]
    assert sim.fetch_stats()["count_tokens_total"] == 0  # the 404 came from an unknown route

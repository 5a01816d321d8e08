"""The client and runner against MiniMax as the field has seen it (the evidence page's rows):
auth, 2013 refusals, M3's output cap, 408, 1033, balance, `event: error` mid-stream, the 2056
quota and count_tokens refusals. Every test talks real HTTP to a tiny server on 127.0.0.1
(tests/fieldserver.py) that answers with the shared contracts' bodies.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchrun.api.client import ApiClient
from batchrun.api.endpoint import Deadlines, Endpoint
from batchrun.api.failures import CallFailure, FailureKind, quota_reset
from batchrun.catalog import load_catalog
from batchrun.config import parse_duration
from batchrun.exceptions import ConfigError
from batchrun.plan.estimate import Planned, estimate
from batchrun.plan.precheck import TokenCounter
from batchrun.run.launch import LimitOptions
from batchrun.run.retry import QUOTA_MARGIN, Action, RetryPolicy, decide
from batchrun.sim import RunningSimulator
from tests import fieldserver as fs
from tests.fieldserver import FieldServer, Reply, field_server
from tests.helpers import API_KEY, batchrun, db_rows
from tests.runharness import Run, prompts, run_jobs, write_jobs

M27, M3 = "MiniMax-M2.7", "MiniMax-M3"
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)


@pytest.fixture
def server() -> Iterator[FieldServer]:
    """A server whose every call succeeds until a test gives it a script."""
    with field_server(FieldServer(api_key=API_KEY)) as running:
        yield running


def _run(
    tmp_path: Path,
    server: FieldServer,
    jobs: list[dict[str, Any]],
    models: list[str],
    **kwargs: Any,
) -> Run:
    """A library-level run against ``server`` (the harness needs only its ``base_url``)."""
    kwargs.setdefault("retry", FAST)
    return run_jobs(tmp_path, server, jobs, models, **kwargs)  # type: ignore[arg-type]


async def _stream_failure(server: FieldServer, params: dict[str, Any] | None = None) -> CallFailure:
    """The CallFailure of one streamed call to ``server``."""
    endpoint = Endpoint(base_url=f"{server.base_url}/anthropic", api_key=API_KEY, simulated=True)
    client = ApiClient(endpoint, Deadlines(idle=5, total=10), max_connections=2)
    body = params or {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
    try:
        with pytest.raises(CallFailure) as raised:
            await client.stream_message(M3, body)
    finally:
        await client.aclose()
    return raised.value


# --- auth (row 1) ------------------------------------------------------------------------------


def test_the_key_goes_as_bearer_and_never_as_x_api_key(tmp_path: Path, server: FieldServer) -> None:
    run = _run(tmp_path, server, prompts(3), [M27])
    assert {row["status"] for row in run.requests()} == {"succeeded"}
    assert server.counts == 3
    assert sum(server.calls.values()) == 3
    for headers in server.headers:
        assert "x-api-key" not in headers, headers
        assert headers["authorization"] == f"Bearer {API_KEY}"


# --- classification over real HTTP (rows 2, 3, 4, 9, 10; C2, C5, C6, C7) -----------------------


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (Reply(status=400, error_type="invalid_request_error", message=fs.OVERFLOW),
         FailureKind.CONTEXT_OVERFLOW),
        (Reply(status=400, error_type="invalid_request_error", message=fs.M3_CAP),
         FailureKind.CONTEXT_OVERFLOW),
        (Reply(status=408, message=fs.TIMEOUT), FailureKind.TIMEOUT),
        (Reply(status=408, raw=b"<html>408 Request Time-out</html>"), FailureKind.TIMEOUT),
        (Reply(status=500, message=fs.SYSTEM_ERROR), FailureKind.SERVER),
        (Reply(status=500, message=fs.BALANCE), FailureKind.BALANCE),
        (Reply(status=402, error_type="insufficient_balance_error", message=fs.BALANCE),
         FailureKind.BALANCE),
        (Reply(status=402, raw=b"payment required"), FailureKind.BALANCE),
        (Reply(status=400, error_type="invalid_request_error", message=fs.THINKING),
         FailureKind.BAD_REQUEST),
        (Reply(break_after="half an ans"), FailureKind.SERVER),  # C8: event: error (1000)
    ],
)  # fmt: skip
@pytest.mark.anyio
async def test_each_field_answer_is_classified(
    server: FieldServer, reply: Reply, kind: FailureKind
) -> None:
    server.script = lambda number, body: reply
    assert (await _stream_failure(server)).kind is kind


@pytest.mark.anyio
async def test_the_thinking_refusal_says_to_use_adaptive(server: FieldServer) -> None:
    server.script = lambda n, b: Reply(status=400, error_type="invalid_request_error",
                                       message=fs.THINKING)  # fmt: skip
    failure = await _stream_failure(server)
    assert failure.code == 2013
    assert 'invalid thinking.type: "enabled"' in failure.message  # MiniMax's own words
    assert '{"type": "adaptive"}' in failure.message
    assert decide(RetryPolicy(), failure.kind, 1).action is Action.GIVE_UP


@pytest.mark.anyio
async def test_a_quota_refusal_carries_its_reset_time(server: FieldServer) -> None:
    server.script = lambda n, b: fs.quota(3600)
    failure = await _stream_failure(server)
    assert failure.kind is FailureKind.QUOTA
    assert failure.reset_at is not None
    assert 3599 <= failure.reset_at - time.time() <= 3601


def test_the_reset_time_is_read_from_the_message() -> None:
    z = "resets at 2026-05-15T15:00:00Z (2056)"
    offset = "resets at 2026-05-15T15:00:00+00:00 (2056)"
    assert quota_reset(z) == quota_reset(offset) == 1778857200.0
    assert quota_reset("usage limit exceeded (2056)") is None
    assert quota_reset("resets at 2026-13-45T99:00:00Z (2056)") is None


# --- the runner with those answers -----------------------------------------------------------


def test_a_context_overflow_is_invalid_for_that_model_never_retried_with_the_numbers(
    tmp_path: Path, server: FieldServer
) -> None:
    server.script = lambda n, body: (
        Reply(status=400, error_type="invalid_request_error", message=fs.OVERFLOW)
        if body["model"] == M27
        else Reply()
    )
    run = _run(tmp_path, server, prompts(2, max_tokens=500), [M27, M3])
    status = Counter((row["model"], row["status"]) for row in run.requests())
    assert status == {(M27, "invalid"): 2, (M3, "succeeded"): 2}
    assert server.calls[M27] == 2  # one call each: never retried
    for row in run.requests():
        if row["model"] == M27:
            message = row["error_message"]
            assert "input 12 tokens (counted by count_tokens)" in message
            assert "max_tokens 500" in message
            assert "context window of 204,800 tokens" in message
            assert fs.OVERFLOW in message  # MiniMax's own message
            assert (row["error_status"], row["error_code"]) == (400, 2013)
    assert run.progress.of(M27).invalid == 2


def test_a_broken_stream_is_retried_and_its_partial_text_is_never_stored(
    tmp_path: Path, server: FieldServer
) -> None:
    server.script = lambda n, body: Reply(break_after="PARTIAL") if n <= 2 else Reply()
    run = _run(tmp_path, server, prompts(2), [M27])
    assert {row["status"] for row in run.requests()} == {"succeeded"}
    assert [row["text"] for row in run.results()] == ["the complete answer"] * 2
    outcomes = Counter((row["outcome"], row["error_code"]) for row in run.attempts())
    assert outcomes == {("retry", 1000): 2, ("ok", None): 2}


@pytest.mark.parametrize(
    "reply",
    [Reply(status=408, message=fs.TIMEOUT), Reply(status=500, message=fs.SYSTEM_ERROR)],
)
def test_408_and_1033_are_retried(tmp_path: Path, server: FieldServer, reply: Reply) -> None:
    server.script = lambda n, body: reply if n == 1 else Reply()
    run = _run(tmp_path, server, prompts(1), [M27])
    assert [row["status"] for row in run.requests()] == ["succeeded"]
    assert [row["outcome"] for row in run.attempts()] == ["retry", "ok"]


def test_a_402_balance_stops_every_model(tmp_path: Path, server: FieldServer) -> None:
    server.script = lambda n, b: Reply(status=402, error_type="insufficient_balance_error",
                                       message=fs.BALANCE)  # fmt: skip
    run = _run(tmp_path, server, prompts(2), [M27, M3], limits=_one_at_a_time())
    assert set(run.report.stopped_models) == {M27, M3}
    assert "balance is exhausted" in run.report.stopped_models[M27]
    assert {row["status"] for row in run.requests()} == {"pending"}


def test_a_wrong_base_url_stops_every_model_and_says_so(
    tmp_path: Path, sim: RunningSimulator
) -> None:
    # MiniMax's host (and the simulator) answers an unknown path with a plain-text 404: every
    # request would get it, so the run stops at once instead of failing each request.
    wrong = RunningSimulator(base_url=f"{sim.base_url}/v2")
    run = run_jobs(tmp_path, wrong, prompts(3), [M27, M3], limits=_one_at_a_time())
    assert set(run.report.stopped_models) == {M27, M3}
    assert "the base URL is wrong" in run.report.stopped_models[M27]
    assert "404 page not found" in run.report.stopped_models[M27]
    assert {row["status"] for row in run.requests()} == {"pending"}
    assert len(run.attempts()) <= 2  # one per model at the most


def _one_at_a_time() -> LimitOptions:
    return LimitOptions(rpm={"*": 100_000}, tpm={"*": 10**12}, concurrency={"*": 1})


# --- M3's output cap (row 3) -------------------------------------------------------------------


def test_m3s_output_cap_makes_a_line_invalid_for_m3_before_anything_is_sent(
    tmp_path: Path, server: FieldServer
) -> None:
    run = _run(tmp_path, server, prompts(1, max_tokens=600_000), [M3])
    (request,) = run.requests()
    assert request["status"] == "invalid"
    assert "more than MiniMax-M3's output cap of 524288 tokens" in request["error_message"]
    assert server.calls == {}


def test_the_runner_and_the_estimate_refuse_the_same_requests() -> None:
    m3 = load_catalog().get(M3)
    assert m3.max_output_tokens == 524_288
    assert m3.refuses_request(524_288, 1000, estimated=False) is None
    assert m3.refuses_request(524_289, 10, estimated=True) is not None
    assert m3.refuses_request(500_000, 600_000, estimated=False) is not None  # the window
    assert m3.refuses_request(500_000, 600_000, estimated=True) is None  # an estimate: sent
    assert load_catalog().get(M27).refuses_request(300_000, 10, estimated=True) is not None


@pytest.mark.anyio
async def test_the_estimate_counts_a_request_over_the_output_cap_as_invalid() -> None:
    endpoint = Endpoint(base_url="http://127.0.0.1:9/anthropic", api_key=API_KEY, simulated=True)
    client = ApiClient(endpoint, Deadlines(), max_connections=1)
    params = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 600_000}
    planned = [Planned(model=M3, params=params, content_hash="h")]
    try:
        found = await estimate(planned, load_catalog(), TokenCounter(client, enabled=False), {})
    finally:
        await client.aclose()
    assert (found.models[M3].requests, found.models[M3].invalid) == (1, 1)


# --- count_tokens refusal (C3) -----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_count_tokens_refusal_for_the_model_is_taken_at_once(
    server: FieldServer,
) -> None:
    message = f"invalid params, count_tokens is not supported for model {M27} (2013)"
    server.counting = lambda body: Reply(status=400, error_type="invalid_request_error",
                                         message=message)  # fmt: skip
    endpoint = Endpoint(base_url=f"{server.base_url}/anthropic", api_key=API_KEY, simulated=True)
    client = ApiClient(endpoint, Deadlines(idle=5, total=10), max_connections=2)
    counter = TokenCounter(client)
    params = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
    try:
        counted = [await counter.input_tokens(M27, params, f"h{i}") for i in range(3)]
    finally:
        await client.aclose()
    assert [estimated for _, estimated in counted] == [True, True, True]
    assert server.counts == 1  # refused once: not asked again, no three-in-a-row wait


# --- the 2056 quota (row 8) --------------------------------------------------------------------


def test_decide_waits_for_a_quota_within_quota_wait_and_stops_beyond() -> None:
    policy = RetryPolicy(quota_wait=900)
    waits = decide(policy, FailureKind.QUOTA, 1, quota_reset_in=250.0)
    assert (waits.action, waits.delay) == (Action.WAIT_QUOTA, 250.0 + QUOTA_MARGIN)
    assert decide(policy, FailureKind.QUOTA, 1, quota_reset_in=901).action is Action.STOP_MODEL
    assert decide(policy, FailureKind.QUOTA, 1).action is Action.STOP_MODEL  # no reset given
    never = RetryPolicy(quota_wait=0)
    assert decide(never, FailureKind.QUOTA, 1, quota_reset_in=1).action is Action.STOP_MODEL
    # A reset already past that MiniMax still refuses: a plain retry, so it cannot loop.
    assert decide(policy, FailureKind.QUOTA, 1, quota_reset_in=-5).action is Action.RETRY
    last = decide(policy, FailureKind.QUOTA, policy.max_attempts, quota_reset_in=-5)
    assert last.action is Action.STOP_MODEL


@pytest.mark.parametrize(
    ("text", "seconds"), [("900s", 900), ("15m", 900), ("1h", 3600), ("90", 90), ("0", 0)]
)
def test_quota_wait_takes_seconds_minutes_hours(text: str, seconds: float) -> None:
    assert parse_duration(text, "--quota-wait") == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1", "5d", "nan"])
def test_a_bad_quota_wait_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--quota-wait"):
        parse_duration(text, "--quota-wait")


def _quota_first(calls: int, reset_in: float | None, model: str = M3) -> fs.Script:
    """2056 for ``model``'s first ``calls`` calls, then answers."""
    return lambda n, body: fs.quota(reset_in) if body["model"] == model and n <= calls else Reply()


def test_a_quota_that_renews_soon_pauses_the_model_without_using_attempts(
    tmp_path: Path, server: FieldServer
) -> None:
    server.script = _quota_first(2, reset_in=1.0)
    once = RetryPolicy(max_attempts=1, base_delay=0.01, max_delay=0.05)  # no retry at all
    run = _run(tmp_path, server, prompts(2), [M3, M27], retry=once)
    assert {row["status"] for row in run.requests()} == {"succeeded"}
    assert not run.report.stopped_models
    waited = run.progress.of(M3).quota_waited()
    assert waited >= 1.0  # the reset was 1-2 s ahead
    assert run.progress.of(M27).quota_waited() == 0
    m3 = Counter((row["outcome"], row["error_code"]) for row in run.attempts()
                 if row["model"] == M3)  # fmt: skip
    assert m3 == {("retry", 2056): 2, ("ok", None): 2}


def test_a_quota_beyond_quota_wait_stops_that_model_and_the_other_finishes(
    tmp_path: Path, server: FieldServer
) -> None:
    server.script = _quota_first(100, reset_in=3 * 3600)
    run = _run(tmp_path, server, prompts(3), [M3, M27], limits=_one_at_a_time())
    assert set(run.report.stopped_models) == {M3}
    reason = run.report.stopped_models[M3]
    assert "quota is used up until" in reason
    assert "resume after" in reason
    assert "more than --quota-wait (15m00s)" in reason
    status = Counter((row["model"], row["status"]) for row in run.requests())
    assert status == {(M3, "pending"): 3, (M27, "succeeded"): 3}
    assert run.progress.of(M3).quota_reset is not None


@pytest.mark.parametrize(
    ("reset_in", "quota_wait", "said"),
    [(None, 900.0, "gave no renewal time"), (2.0, 0.0, "--quota-wait 0")],
)
def test_a_quota_without_a_reset_or_with_quota_wait_0_stops_the_model(
    tmp_path: Path, server: FieldServer, reset_in: float | None, quota_wait: float, said: str
) -> None:
    server.script = _quota_first(100, reset_in=reset_in)
    retry = RetryPolicy(base_delay=0.01, max_delay=0.05, quota_wait=quota_wait)
    run = _run(tmp_path, server, prompts(2), [M3], retry=retry, limits=_one_at_a_time())
    assert said in run.report.stopped_models[M3]
    assert {row["status"] for row in run.requests()} == {"pending"}
    assert server.calls[M3] == 1


# --- the CLI: progress and summary ------------------------------------------------------------


def _cli_run(tmp_path: Path, server: FieldServer, *extra: str) -> tuple[int, str]:
    write_jobs(tmp_path / "jobs.jsonl", prompts(2))
    done = batchrun(
        tmp_path, "run", "jobs.jsonl", "--models", f"{M3},{M27}", "--name", "field",
        "--base-url", f"{server.base_url}/anthropic", "--yes", *extra, key=API_KEY,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout


def test_the_run_summary_says_how_long_a_model_waited_for_its_quota(
    tmp_path: Path, server: FieldServer
) -> None:
    server.script = _quota_first(1, reset_in=1.0)
    code, out = _cli_run(tmp_path, server)
    assert code == 0, out
    assert f"{M3} waited 0m0" in out
    assert "for the plan's quota (MiniMax 2056) to renew, then carried on" in out
    assert f"{M27} waited" not in out
    assert db_rows(tmp_path / "batchrun.db", "select distinct status from requests") == [
        ("succeeded",)
    ]


def test_a_model_stopped_on_its_quota_says_when_to_resume(
    tmp_path: Path, server: FieldServer
) -> None:
    server.script = _quota_first(100, reset_in=3 * 3600)
    code, out = _cli_run(tmp_path, server, "--quota-wait", "1h")
    assert code == 1, out  # as for any stopped model: requests left
    assert f"Stopped sending to {M3}" in out
    assert "more than --quota-wait (1h00m)" in out
    assert f"{M3}: resume after 20" in out
    assert "UTC: batchrun resume field" in out
    query = "select model, group_concat(distinct status) from requests group by 1"
    statuses = dict(db_rows(tmp_path / "batchrun.db", query))
    assert statuses == {M3: "pending", M27: "succeeded"}


# --- the pre-check runs ahead of sending (issue 19) --------------------------------------------


def test_the_pre_check_counts_ahead_so_a_request_never_waits_for_its_own_count(
    tmp_path: Path, server: FieldServer
) -> None:
    # One worker: were each request counted just before it is sent, the server would see
    # exactly N counts by the Nth Messages call. Counted ahead, later counts come in earlier.
    seen: list[int] = []

    def record(number: int, body: dict[str, Any]) -> Reply:
        seen.append(server.counts)
        return Reply()

    server.script = record
    run = _run(tmp_path, server, prompts(6), [M27], limits=_one_at_a_time())
    assert server.counts == 6
    assert len(seen) == 6
    assert any(counts > number for number, counts in enumerate(seen, start=1)), seen
    counted = {(row["input_tokens"], bool(row["input_estimated"])) for row in run.requests()}
    assert counted == {(12, False)}  # every stored count is the server's, as before

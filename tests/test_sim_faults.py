"""Injected faults: rates within binomial bounds, what the SDK sees, and the stats that match.

Every fault test sends N requests (half streamed, half not) concurrently through the real async
SDK, classifies what the client saw, checks the rate against a binomial bound of 4 standard
deviations, and checks the simulator's /_sim/stats counted the same outcomes.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import anyio
import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchrun.exceptions import SimulatorError
from batchrun.sim import FaultRates, RunningSimulator
from batchrun.sim.settings import FAULT_KINDS, format_faults, parse_faults
from tests.helpers import make_async_client, make_client, user

M27 = "MiniMax-M2.7"
M2 = "MiniMax-M2"
N = 400
CONCURRENCY = 32
STALL = 0.3

SimFactory = Callable[..., RunningSimulator]


@dataclass(frozen=True, kw_only=True)
class Seen:
    """What the client saw for one request."""

    stream: bool
    outcome: str  # "ok", "status" (an HTTP error), "connection" (no response), "broken" (stream)
    error: BaseException | None = None
    elapsed: float = 0.0

    @property
    def status(self) -> int | None:
        return self.error.status_code if isinstance(self.error, anthropic.APIStatusError) else None


async def _one(client: anthropic.AsyncAnthropic, i: int, *, stream: bool, model: str) -> Seen:
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": 30,
        "messages": user(f"Request number {i}"),
    }
    started = time.monotonic()
    try:
        if stream:
            async with client.messages.stream(**params) as events:
                try:
                    kinds = [event.type async for event in events]
                except anthropic.APIStatusError:
                    raise
                except Exception as exc:  # whatever the transport raises on a cut stream
                    return Seen(stream=True, outcome="broken", error=exc)
                final = await events.get_final_message()
            assert kinds[0] == "message_start"
            assert kinds[-1] == "message_stop"
            assert final.stop_reason is not None
        else:
            message = await client.messages.create(**params)
            assert message.stop_reason is not None
    except anthropic.APIStatusError as exc:
        return Seen(stream=stream, outcome="status", error=exc)
    except anthropic.APIConnectionError as exc:
        return Seen(stream=stream, outcome="connection", error=exc)
    return Seen(stream=stream, outcome="ok", elapsed=time.monotonic() - started)


async def _run(
    sim: RunningSimulator, n: int = N, model: str = M27, concurrency: int = CONCURRENCY
) -> list[Seen]:
    """Send ``n`` requests, every other one streamed, at most ``concurrency`` at a time."""
    seen: list[Seen] = []
    limiter = anyio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with limiter:
            seen.append(await _one(client, i, stream=i % 2 == 0, model=model))

    async with make_async_client(sim) as client, anyio.create_task_group() as group:
        for i in range(n):
            group.start_soon(one, i)
    assert len(seen) == n
    return seen


def _assert_binomial(count: int, n: int, p: float) -> None:
    mean = n * p
    bound = 4 * math.sqrt(n * p * (1 - p))
    assert abs(count - mean) <= bound, f"{count} of {n} is not within {mean:.1f} +- {bound:.1f}"


def _stats(sim: RunningSimulator, model: str = M27) -> dict[str, int]:
    stats = sim.fetch_stats()
    assert stats["in_flight"] == 0
    counts: dict[str, int] = stats["models"][model]
    return counts


def _no_limits(sim_factory: SimFactory, **settings: object) -> RunningSimulator:
    return sim_factory(limits=False, stall_seconds=STALL, **settings)


# --- refusals: 529, 500, balance, 401 ----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """An injected refusal and how it must look to the SDK and in the stats."""

    field: str  # the FaultRates field
    status: int
    error_class: type[anthropic.APIStatusError]
    error_type: str
    code: str | None  # MiniMax's code at the end of the message
    stats_key: str


REFUSALS = [
    Refusal(
        field="overloaded",
        status=529,
        error_class=anthropic.InternalServerError,
        error_type="overloaded_error",
        code=None,
        stats_key="5xx",
    ),
    Refusal(
        field="server_error",
        status=500,
        error_class=anthropic.InternalServerError,
        error_type="api_error",
        code="(1000)",
        stats_key="5xx",
    ),
    Refusal(
        field="balance",
        status=500,
        error_class=anthropic.InternalServerError,
        error_type="api_error",
        code="(1008)",
        stats_key="5xx",
    ),
    Refusal(
        field="auth",
        status=401,
        error_class=anthropic.AuthenticationError,
        error_type="authentication_error",
        code="(1004)",
        stats_key="4xx",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize("refusal", REFUSALS, ids=[r.field for r in REFUSALS])
async def test_refusal_fault_rate_and_shape(sim_factory: SimFactory, refusal: Refusal) -> None:
    rate = 0.2
    sim = _no_limits(sim_factory, faults=FaultRates(**{refusal.field: rate}))
    seen = await _run(sim)
    refused = [s for s in seen if s.outcome == "status"]
    assert Counter(s.outcome for s in seen) == {"ok": N - len(refused), "status": len(refused)}
    _assert_binomial(len(refused), N, rate)
    # Streamed and non-streamed requests are both refused, before any stream starts.
    _assert_binomial(sum(s.stream for s in refused), len(refused), 0.5)
    for s in refused:
        error = s.error
        assert isinstance(error, refusal.error_class)
        assert error.status_code == refusal.status
        assert isinstance(error.body, dict)
        assert error.body["error"]["type"] == refusal.error_type
        message = error.body["error"]["message"]
        if refusal.code is None:  # MiniMax sends 529s without a code
            assert not message.endswith(")")
        else:
            assert message.endswith(refusal.code)
        assert "retry-after" not in error.response.headers
    stats = _stats(sim)
    assert stats["ok"] == N - len(refused)
    assert stats[refusal.stats_key] == len(refused)
    others = {"4xx", "5xx", "429", "dropped", "client_gone"} - {refusal.stats_key}
    assert {key: stats[key] for key in others} == dict.fromkeys(others, 0)


@pytest.mark.anyio
async def test_balance_is_a_500_not_a_402(sim_factory: SimFactory) -> None:
    sim = _no_limits(sim_factory, faults=FaultRates(balance=1.0))
    seen = await _run(sim, n=4)
    assert {s.status for s in seen} == {500}
    assert all(type(s.error) is anthropic.InternalServerError for s in seen)
    assert all("insufficient balance (1008)" in str(s.error) for s in seen)


@pytest.mark.anyio
async def test_overloaded_is_the_sdks_overloaded_error(sim_factory: SimFactory) -> None:
    sim = _no_limits(sim_factory, faults=FaultRates(overloaded=1.0))
    seen = await _run(sim, n=4)
    assert all(isinstance(s.error, anthropic.OverloadedError) for s in seen)
    assert {s.status for s in seen} == {529}


# --- drops and stalls ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_drop_rate_and_what_the_client_sees(sim_factory: SimFactory) -> None:
    rate = 0.2
    sim = _no_limits(sim_factory, faults=FaultRates(drop=rate))
    seen = await _run(sim)
    outcomes = Counter((s.stream, s.outcome) for s in seen)
    dropped_streams = outcomes[True, "broken"] + outcomes[True, "connection"]
    dropped_plain = outcomes[False, "connection"]
    # A dropped stream breaks mid-way (or before its first event); a non-streamed request gets
    # no response at all. Neither is ever reported as an HTTP status.
    assert outcomes[True, "status"] == outcomes[False, "status"] == 0
    assert outcomes[False, "broken"] == 0
    assert outcomes[True, "ok"] + dropped_streams == N // 2
    assert outcomes[False, "ok"] + dropped_plain == N // 2
    _assert_binomial(dropped_streams, N // 2, rate)
    _assert_binomial(dropped_plain, N // 2, rate)
    assert all(
        type(s.error) is anthropic.APIConnectionError
        for s in seen
        if not s.stream and s.outcome != "ok"
    )
    # The SDK does not wrap a cut stream: the transport's own error reaches the caller.
    assert all(
        isinstance(s.error, httpx2.TransportError | anthropic.APIConnectionError)
        for s in seen
        if s.stream and s.outcome != "ok"
    )
    stats = _stats(sim)
    assert stats["dropped"] == dropped_streams + dropped_plain
    assert stats["ok"] == outcomes[True, "ok"] + outcomes[False, "ok"]
    assert stats["client_gone"] == stats["5xx"] == stats["4xx"] == 0


@pytest.mark.anyio
async def test_stall_rate_and_duration(sim_factory: SimFactory) -> None:
    rate, stall = 0.1, 1.0  # a stall long enough to tell apart on a busy machine
    sim = sim_factory(limits=False, stall_seconds=stall, faults=FaultRates(stall=rate))
    started = time.monotonic()
    # Fewer at a time than elsewhere, so an unstalled request stays far below the stall (at 32
    # at a time the client's own parsing makes some take 0.15 s; on a loaded 2-core machine an
    # unstalled one was seen at 0.49 s).
    seen = await _run(sim, concurrency=8)
    elapsed = time.monotonic() - started
    assert {s.outcome for s in seen} == {"ok"}  # a stalled response still finishes
    stats = _stats(sim)
    assert stats["ok"] == N
    _assert_binomial(stats["stalled"], N, rate)
    # What the client saw: every stalled request took the stall at least (a stall cannot make one
    # faster), so at least that many were slow. An unstalled request can also pass the stall on a
    # loaded machine (CI saw 8 of 351 do so), so the count is a floor, not an equality.
    slow = [s for s in seen if s.elapsed >= stall]
    assert len(slow) >= stats["stalled"]
    _assert_binomial(sum(s.stream for s in slow), len(slow), 0.5)
    assert max(s.elapsed for s in slow) < 2 * stall + 2.0  # stalled once, not forever
    assert elapsed < 20  # about 40 stalls of 1 s, 8 at a time, and the rest


@pytest.mark.anyio
async def test_mixed_faults_from_a_spec_and_stats_agree(sim_factory: SimFactory) -> None:
    base, per_model = parse_faults("529=0.2,500=0.05,balance=0.01,401=0.05,drop=0.05")
    assert per_model == {}
    sim = _no_limits(sim_factory, faults=base)
    seen = await _run(sim)
    statuses = Counter(s.status for s in seen if s.outcome == "status")
    _assert_binomial(statuses[529], N, 0.2)
    _assert_binomial(statuses[500], N, 0.06)
    _assert_binomial(statuses[401], N, 0.05)
    assert set(statuses) <= {529, 500, 401}
    cut = [s for s in seen if s.outcome in {"broken", "connection"}]
    # Drops are drawn only for requests that were not refused.
    _assert_binomial(len(cut), N - statuses.total(), 0.05)
    stats = _stats(sim)
    assert stats["5xx"] == statuses[529] + statuses[500]
    assert stats["4xx"] == statuses[401]
    assert stats["dropped"] == len(cut)
    assert stats["ok"] == sum(s.outcome == "ok" for s in seen)
    assert stats["ok"] + stats["5xx"] + stats["4xx"] + stats["dropped"] == N


# --- per-model faults ----------------------------------------------------------------------------


def test_model_faults_replace_the_global_rates_for_that_model(sim_factory: SimFactory) -> None:
    sim = sim_factory(model_faults={M2: FaultRates(auth=1.0)})
    with make_client(sim) as client:
        for i in range(5):
            with pytest.raises(anthropic.AuthenticationError) as caught:
                client.messages.create(model=M2, max_tokens=30, messages=user(f"Hi {i}"))
            assert caught.value.status_code == 401
            body = caught.value.body
            assert isinstance(body, dict)
            assert body["error"] == {
                "type": "authentication_error",
                "message": "invalid api key (1004)",
            }
            message = client.messages.create(model=M27, max_tokens=30, messages=user(f"Hi {i}"))
            assert message.model == M27
    stats = sim.fetch_stats()["models"]
    assert (stats[M2]["4xx"], stats[M2]["ok"]) == (5, 0)
    assert (stats[M27]["4xx"], stats[M27]["ok"]) == (0, 5)


def test_model_faults_from_a_spec_merge_the_global_rates(sim_factory: SimFactory) -> None:
    base, per_model = parse_faults("529=1,MiniMax-M2:529=0")
    sim = sim_factory(faults=base, model_faults=per_model)
    with make_client(sim) as client:
        assert client.messages.create(model=M2, max_tokens=30, messages=user("Hi")).content
        with pytest.raises(anthropic.InternalServerError) as caught:
            client.messages.create(model=M27, max_tokens=30, messages=user("Hi"))
    assert caught.value.status_code == 529


# --- parse_faults and format_faults --------------------------------------------------------------


def test_parse_faults_reads_every_kind() -> None:
    base, per_model = parse_faults("529=0.2,500=0.05,balance=0.01,drop=0.05,stall=0.02")
    assert base == FaultRates(
        overloaded=0.2, server_error=0.05, balance=0.01, drop=0.05, stall=0.02
    )
    assert per_model == {}
    assert parse_faults("401=0.5")[0] == FaultRates(auth=0.5)


def test_parse_faults_per_model() -> None:
    assert parse_faults("MiniMax-M2:401=1") == (FaultRates(), {M2: FaultRates(auth=1.0)})
    base, per_model = parse_faults("529=0.1, MiniMax-M2:401=0.9 ,MiniMax-M2.7:drop=0.5,")
    assert base == FaultRates(overloaded=0.1)
    assert per_model == {  # a model named in the spec gets only its own rates
        M2: FaultRates(auth=0.9),
        M27: FaultRates(drop=0.5),
    }


def test_parse_faults_accepts_its_docstring_example() -> None:
    base, per_model = parse_faults("529=0.2,500=0.05,MiniMax-M2:401=1")
    assert base == FaultRates(overloaded=0.2, server_error=0.05)
    assert per_model[M2].auth == 1.0


def test_parse_faults_empty_is_no_faults() -> None:
    assert parse_faults("") == (FaultRates(), {})
    assert parse_faults(" , ") == (FaultRates(), {})


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (
            "teapot=0.1",
            "KIND one of 529, 500, balance, 401, 2056, 1033, 408, drop, stall, endless, "
            "stream_error",
        ),
        ("529", "use KIND=RATE"),
        ("MiniMax-M2:418=1", "bad fault 'MiniMax-M2:418=1'"),
        ("overloaded=0.1", "bad fault 'overloaded=0.1'"),
        ("529=abc", "must be a number"),
        ("529=", "must be a number"),
        ("529=1.5", "must be in [0, 1]"),
        ("drop=-0.1", "must be in [0, 1]"),
        ("529=0.6,500=0.5", "add up to more than 1"),
        ("MiniMax-M2:529=0.6,MiniMax-M2:500=0.5", "add up to more than 1"),
        ("drop=0.8,stall=0.8", "mid-response rates (drop, stall, endless, stream_error) add up"),
        ("endless=0.5,stream_error=0.6", "mid-response rates"),
        ("1033=0.5,408=0.6", "refusal rates (529, 500, balance, 401, 2056, 1033, 408) add up"),
    ],
)
def test_parse_faults_refuses_bad_specs(spec: str, words: str) -> None:
    with pytest.raises(SimulatorError) as caught:
        parse_faults(spec)
    assert words in str(caught.value)


def test_fault_kinds_are_the_parse_keys() -> None:
    assert FAULT_KINDS == (
        "529",
        "500",
        "balance",
        "401",
        "2056",
        "1033",
        "408",
        "drop",
        "stall",
        "endless",
        "stream_error",
    )
    for kind in FAULT_KINDS:
        base, _ = parse_faults(f"{kind}=0.25")
        assert sorted(vars(base).values()) == [0.0] * 10 + [0.25]


@pytest.mark.parametrize(
    "spec",
    [
        "529=0.2,500=0.05,balance=0.01,drop=0.05,stall=0.02",
        "2056=0.1,1033=0.2,408=0.3,endless=0.1,stream_error=0.4",
        "MiniMax-M2:401=1",
        "529=0.1,MiniMax-M2:401=1,MiniMax-M2:529=0,MiniMax-M2.7:stall=0.3",
        "",
    ],
)
def test_format_faults_round_trips_a_spec(spec: str) -> None:
    base, per_model = parse_faults(spec)
    text = format_faults(base, per_model)
    assert parse_faults(text) == (base, per_model)
    assert format_faults(*parse_faults(text)) == text


def test_format_faults_writes_each_models_own_rates() -> None:
    text = format_faults(FaultRates(overloaded=0.2), {M2: FaultRates(auth=1.0), M27: FaultRates()})
    assert text == "529=0.2,MiniMax-M2:401=1.0,MiniMax-M2.7:529=0"


_FIELDS = tuple(vars(FaultRates()))
_RATE = st.integers(min_value=0, max_value=1400).map(lambda n: n / 10_000)  # 7 x 0.14 < 1


@given(
    st.lists(_RATE, min_size=len(_FIELDS), max_size=len(_FIELDS)),
    st.lists(_RATE, min_size=len(_FIELDS), max_size=len(_FIELDS)),
)
def test_format_faults_round_trips_any_rates(
    base_rates: list[float], m2_rates: list[float]
) -> None:
    fields = _FIELDS
    base = FaultRates(**dict(zip(fields, base_rates, strict=True)))
    per_model = {M2: FaultRates(**dict(zip(fields, m2_rates, strict=True)))}
    again_base, again_models = parse_faults(format_faults(base, per_model))
    assert again_base == base
    assert again_models.get(M2, again_base) == per_model[M2]


def test_format_faults_keeps_full_precision() -> None:
    base = FaultRates(overloaded=0.1234567)
    assert parse_faults(format_faults(base, {})) == (base, {})


def test_parse_faults_refuses_drop_and_stall_above_one() -> None:
    with pytest.raises(SimulatorError):
        parse_faults("drop=0.8,stall=0.8")

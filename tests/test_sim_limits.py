"""The simulator's rate limits: RPM and TPM per model over a sliding window, 429s, retry-after.

The HTTP tests go through the real anthropic SDK (retries off) against a simulator in a thread;
the SlidingWindow tests drive the window with a fake clock and need no server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import anthropic
import pytest

from batchrun.exceptions import SimulatorError
from batchrun.sim import FaultRates, RunningSimulator
from batchrun.sim.limits import ModelLimits, SlidingWindow, model_limits
from tests.helpers import make_client, user

M27 = "MiniMax-M2.7"
M25 = "MiniMax-M2.5"

SimFactory = Callable[..., RunningSimulator]
T = TypeVar("T")


def _ask(
    client: anthropic.Anthropic, model: str = M27, text: str = "Hi"
) -> anthropic.types.Message:
    return client.messages.create(model=model, max_tokens=50, messages=user(text))


def _try(
    client: anthropic.Anthropic, model: str = M27
) -> anthropic.types.Message | anthropic.RateLimitError:
    """The reply, or the 429 that refused the request."""
    try:
        return _ask(client, model)
    except anthropic.RateLimitError as refused:
        return refused


def _passes_before_429(client: anthropic.Anthropic, model: str, most: int) -> int:
    """Send requests until the first 429 and return how many passed before it."""
    for passed in range(most):
        try:
            _ask(client, model)
        except anthropic.RateLimitError:
            return passed
    raise AssertionError(f"no 429 after {most} requests to {model}")


def _in_one_window(window: float, attempt: Callable[[], T], tries: int = 3) -> T:
    """``attempt()`` (which starts its own simulator) until one run takes less than ``window``
    seconds: only then do its requests all fall in one window for their counts to mean much. A
    busy machine can stretch one run; it does not stretch three in a row."""
    for _ in range(tries):
        started = time.monotonic()
        outcome = attempt()
        if time.monotonic() - started < window:
            return outcome
    raise AssertionError(f"{tries} runs in a row took longer than the {window} s window")


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- RPM over HTTP ------------------------------------------------------------------------------


def test_rpm_allows_exactly_the_scaled_count_then_429_with_code_1002(
    sim_factory: SimFactory,
) -> None:
    # 300 requests/minute over a 2 s window = 10 requests per window.
    def attempt() -> list[anthropic.types.Message | anthropic.RateLimitError]:
        sim = sim_factory(rpm={M27: 300}, limit_window=2.0)
        with make_client(sim) as client:
            return [_try(client) for _ in range(11)]

    *passed, error = _in_one_window(2.0, attempt)
    assert all(isinstance(reply, anthropic.types.Message) for reply in passed), passed
    assert isinstance(error, anthropic.RateLimitError)
    assert error.status_code == 429
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == "rate_limit_error"
    message = error.body["error"]["message"]
    assert message.endswith("(1002)")
    assert "requests per minute" in message
    assert M27 in message
    assert "retry-after" not in error.response.headers  # MiniMax documents no such header


def test_rpm_600_over_one_second_window_passes_ten(sim_factory: SimFactory) -> None:
    def attempt() -> int:
        sim = sim_factory(rpm={M27: 600}, limit_window=1.0)
        with make_client(sim) as client:
            return _passes_before_429(client, M27, 20)

    assert _in_one_window(1.0, attempt) == 10


def test_rpm_is_per_model(sim_factory: SimFactory) -> None:
    def attempt() -> tuple[int, int, object, RunningSimulator]:
        sim = sim_factory(rpm={M27: 300, M25: 120}, limit_window=2.0)  # 10 and 4 per window
        with make_client(sim) as client:
            passed = _passes_before_429(client, M27, 20)
            # M2.7 is exhausted; M2.5 has its own window and its own limit.
            other = _passes_before_429(client, M25, 20)
            return passed, other, _try(client, M27), sim

    passed, other, again, sim = _in_one_window(2.0, attempt)
    assert (passed, other) == (10, 4)
    assert isinstance(again, anthropic.RateLimitError)
    stats = sim.fetch_stats()["models"]
    assert (stats[M27]["ok"], stats[M27]["429"]) == (10, 2)
    assert (stats[M25]["ok"], stats[M25]["429"]) == (4, 1)


def test_star_rpm_sets_every_model_not_listed(sim_factory: SimFactory) -> None:
    # M2.7 has its own figure; "*" sets every other model (60/min over 2 s = 2).
    def attempt() -> tuple[int, int]:
        sim = sim_factory(rpm={M27: 300, "*": 60}, limit_window=2.0)
        with make_client(sim) as client:
            return _passes_before_429(client, M25, 10), _passes_before_429(client, M27, 20)

    assert _in_one_window(2.0, attempt) == (2, 10)


def test_a_model_without_a_setting_uses_the_catalog_rpm(sim_factory: SimFactory) -> None:
    # The catalog's 500/min for M2.5 over a 0.6 s window = 5; M2.7's setting is 300 = 3.
    def attempt() -> tuple[int, int]:
        sim = sim_factory(rpm={M27: 300}, limit_window=0.6)
        with make_client(sim) as client:
            return _passes_before_429(client, M25, 10), _passes_before_429(client, M27, 10)

    assert _in_one_window(0.6, attempt) == (5, 3)


def test_rpm_window_slides(sim_factory: SimFactory) -> None:
    window = 1.0
    sim = sim_factory(rpm={M27: 60}, limit_window=window)  # 1 request per window
    with make_client(sim) as client:
        first = time.monotonic()
        _ask(client)
        with pytest.raises(anthropic.RateLimitError):
            _ask(client)  # refused requests do not count against the window
        time.sleep(max(0.0, first + window + 0.05 - time.monotonic()))
        _ask(client)
        with pytest.raises(anthropic.RateLimitError):
            _ask(client)
    stats = sim.fetch_stats()["models"][M27]
    assert (stats["ok"], stats["429"]) == (2, 2)


def test_429_counts_in_stats_per_model(sim_factory: SimFactory) -> None:
    sim = sim_factory(rpm={M27: 120}, limit_window=1.0)  # 2 per window
    with make_client(sim) as client:
        results = []
        for _ in range(7):
            try:
                _ask(client)
                results.append("ok")
            except anthropic.RateLimitError:
                results.append("429")
        _ask(client, M25)
    assert results == ["ok", "ok", "429", "429", "429", "429", "429"]
    stats = sim.fetch_stats()
    assert stats["messages_total"] == 8
    assert stats["models"][M27]["ok"] == 2
    assert stats["models"][M27]["429"] == 5
    assert stats["models"][M27]["4xx"] == 0
    assert stats["models"][M25]["ok"] == 1
    assert stats["models"][M25]["429"] == 0


# --- TPM over HTTP ------------------------------------------------------------------------------


def test_tpm_refuses_by_input_and_output_tokens(sim_factory: SimFactory) -> None:
    limit = 200  # the 60 s default window keeps the per-window limit exactly 200 tokens
    sim = sim_factory(tpm={M27: limit})
    with make_client(sim) as client:
        prompt_tokens = client.messages.count_tokens(model=M27, messages=user("Hi")).input_tokens
        assert prompt_tokens == 5
        used = 0
        admitted = 0
        while used + prompt_tokens <= limit:
            message = _ask(client)
            assert message.usage.input_tokens == prompt_tokens
            used += message.usage.input_tokens + message.usage.output_tokens
            admitted += 1
        with pytest.raises(anthropic.RateLimitError) as caught:
            _ask(client)
    # Each request is 5 input + 50 output tokens (max_tokens): after 3 the window holds 165,
    # 165 + 5 <= 200 lets a 4th in, and after it 220 + 5 > 200 refuses the 5th.
    assert admitted == 4
    assert used == 220
    message = caught.value.body["error"]["message"]  # type: ignore[index]
    assert "tokens per minute" in message
    assert message.endswith("(1002)")
    stats = sim.fetch_stats()["models"][M27]
    assert (stats["ok"], stats["429"]) == (4, 1)
    assert (stats["input_tokens"], stats["output_tokens"]) == (20, 200)


def test_tpm_refuses_a_prompt_larger_than_the_whole_window(sim_factory: SimFactory) -> None:
    sim = sim_factory(tpm={M27: 10})
    with make_client(sim) as client:
        with pytest.raises(anthropic.RateLimitError) as caught:
            _ask(client, text="one two three four five six seven eight nine ten")
        assert "tokens per minute" in str(caught.value)
        assert _ask(client).usage.input_tokens == 5  # a 5-token prompt still fits


# --- retry-after and switching limits off ---------------------------------------------------------


def test_retry_after_header_on_429_when_configured(sim_factory: SimFactory) -> None:
    sim = sim_factory(rpm={M27: 60}, limit_window=1.0, retry_after=2.5)
    with make_client(sim) as client:
        ok = client.messages.with_raw_response.create(model=M27, max_tokens=50, messages=user("Hi"))
        assert ok.status_code == 200
        assert "retry-after" not in ok.headers
        with pytest.raises(anthropic.RateLimitError) as caught:
            _ask(client)
    assert caught.value.response.headers["retry-after"] == "2.5"


def test_no_retry_after_header_by_default(sim_factory: SimFactory) -> None:
    sim = sim_factory(rpm={M27: 60}, limit_window=1.0)
    with make_client(sim) as client:
        _ask(client)
        with pytest.raises(anthropic.RateLimitError) as caught:
            _ask(client)
    headers = caught.value.response.headers
    assert "retry-after" not in headers
    assert not [name for name in headers if name.lower().startswith("x-ratelimit")]


def test_retry_after_is_only_sent_with_429s(sim_factory: SimFactory) -> None:
    sim = sim_factory(retry_after=2.5, faults=FaultRates(overloaded=1.0))
    with make_client(sim) as client, pytest.raises(anthropic.APIStatusError) as caught:
        _ask(client)
    assert caught.value.status_code == 529
    assert "retry-after" not in caught.value.response.headers


def test_sdk_honours_retry_after_and_then_succeeds(sim_factory: SimFactory) -> None:
    # One request per 0.5 s window, retry-after 0.6 s: the SDK's one retry waits it out.
    sim = sim_factory(rpm={M27: 120}, limit_window=0.5, retry_after=0.6)
    with make_client(sim) as sdk:
        client = sdk.with_options(max_retries=1)
        _ask(client)
        started = time.monotonic()
        assert _ask(client).type == "message"
        assert time.monotonic() - started >= 0.6
    stats = sim.fetch_stats()["models"][M27]
    assert (stats["ok"], stats["429"]) == (2, 1)


def test_limits_false_turns_every_limit_off(sim_factory: SimFactory) -> None:
    sim = sim_factory(limits=False, rpm={M27: 60}, tpm={M27: 60}, limit_window=1.0)
    with make_client(sim) as client:
        for _ in range(5):
            assert _ask(client).stop_reason in {"end_turn", "max_tokens"}
    stats = sim.fetch_stats()["models"][M27]
    assert (stats["ok"], stats["429"]) == (5, 0)


def test_rpm_scaled_limit_is_not_lost_to_rounding(sim_factory: SimFactory) -> None:
    sim = sim_factory(rpm={M27: 600}, limit_window=0.7)
    with make_client(sim) as client:
        assert _passes_before_429(client, M27, 20) == 7


def test_a_limit_below_one_request_per_window_is_refused_at_start(
    sim_factory: SimFactory,
) -> None:
    # 20 per minute over a 1 s window is a third of a request: it would refuse everything.
    with pytest.raises(SimulatorError, match="--limit-window 3 or longer"):
        sim_factory(rpm={M27: 20}, limit_window=1.0)


# --- SlidingWindow and ModelLimits with a fake clock ----------------------------------------------


def test_sliding_window_admits_up_to_the_limit_inclusive() -> None:
    clock = FakeClock()
    window = SlidingWindow(limit=3, window=10.0, clock=clock)
    for _ in range(3):
        assert not window.would_exceed(1)
        window.add(1)
    assert window.used() == 3
    assert window.would_exceed(1)
    assert not window.would_exceed(0)


def test_sliding_window_forgets_events_exactly_one_window_later() -> None:
    clock = FakeClock(100.0)
    window = SlidingWindow(limit=3, window=10.0, clock=clock)
    window.add(1)  # t = 100
    clock.now = 104.0
    window.add(1)
    window.add(1)  # t = 104
    clock.now = 109.999
    assert window.used() == 3
    assert window.would_exceed(1)
    clock.now = 110.0  # the event at 100 is now a full window old
    assert window.used() == 2
    assert not window.would_exceed(1)
    clock.now = 113.9
    assert window.used() == 2
    clock.now = 114.0
    assert window.used() == 0


def test_sliding_window_weighs_amounts() -> None:
    clock = FakeClock()
    tokens = SlidingWindow(limit=100, window=60.0, clock=clock)
    tokens.add(60)
    assert not tokens.would_exceed(40)
    assert tokens.would_exceed(41)
    clock.now += 30
    tokens.add(40)
    assert tokens.used() == 100
    clock.now += 30  # the 60 expire, the 40 stay
    assert tokens.used() == 40
    assert not tokens.would_exceed(60)
    assert tokens.would_exceed(61)


def test_sliding_window_is_not_a_fixed_window() -> None:
    clock = FakeClock(0.0)
    window = SlidingWindow(limit=2, window=10.0, clock=clock)
    clock.now = 9.0
    window.add(1)
    window.add(1)
    clock.now = 11.0  # a fixed window would have reset at 10
    assert window.would_exceed(1)
    clock.now = 19.0
    assert window.used() == 0


def test_model_limits_refuses_requests_before_tokens() -> None:
    clock = FakeClock()
    limits = ModelLimits(
        requests=SlidingWindow(limit=1, window=60.0, clock=clock),
        tokens=SlidingWindow(limit=100, window=60.0, clock=clock),
    )
    assert limits.refusal(100) is None
    assert limits.refusal(101) == "tokens per minute"
    limits.admit(30)
    assert limits.refusal(1) == "requests per minute"
    assert limits.tokens is not None
    assert limits.tokens.used() == 30
    limits.add_output(70)
    assert limits.tokens.used() == 100
    clock.now += 60
    assert limits.refusal(100) is None


def test_model_limits_output_tokens_count_against_the_next_request() -> None:
    clock = FakeClock()
    limits = ModelLimits(requests=None, tokens=SlidingWindow(limit=50, window=1.0, clock=clock))
    limits.admit(10)
    assert limits.refusal(40) is None
    limits.add_output(30)
    assert limits.refusal(10) is None
    assert limits.refusal(11) == "tokens per minute"


def test_model_limits_without_windows_never_refuse() -> None:
    limits = model_limits(None, None, 60.0)
    assert limits.requests is None
    assert limits.tokens is None
    limits.admit(10**9)
    limits.add_output(10**9)
    assert limits.refusal(10**9) is None


@pytest.mark.parametrize(
    ("rpm", "tpm", "window", "requests", "tokens"),
    [
        (500, 20_000_000, 60.0, 500, 20_000_000),
        (600, 6_000, 1.0, 10, 100),
        (300, 600, 2.0, 10, 20),
        (60, 120, 30.0, 30, 60),
    ],
)
def test_model_limits_scale_per_minute_figures_to_the_window(
    rpm: int, tpm: int, window: float, requests: float, tokens: float
) -> None:
    limits = model_limits(rpm, tpm, window)
    assert limits.requests is not None
    assert limits.tokens is not None
    assert limits.requests.limit == pytest.approx(requests)
    assert limits.tokens.limit == pytest.approx(tokens)
    assert limits.requests.window == window
    assert limits.tokens.window == window

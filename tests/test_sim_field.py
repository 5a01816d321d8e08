"""The simulator's field behaviour (issue 15): refusals, faults, limits and profiles, over HTTP.

Each test talks to a real simulator over real HTTP, with the anthropic SDK where the SDK can send
the request (it sends its key as ``Authorization: Bearer``) and httpx2 where it cannot.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anthropic
import httpx2
import pytest

from batchrun.exceptions import SimulatorError
from batchrun.sim import RunningSimulator, SimSettings, simulator_process
from batchrun.sim.cli import settings_from_args
from batchrun.sim.host import settings_to_args
from batchrun.sim.settings import FIELD_PROFILE, PROFILES, FaultRates
from tests.helpers import API_KEY, make_client, user

SimFactory = Callable[..., RunningSimulator]
M2, M27, M3 = "MiniMax-M2", "MiniMax-M2.7", "MiniMax-M3"
BEARER = {"authorization": f"Bearer {API_KEY}"}
X_API_KEY = {"x-api-key": API_KEY}
MISSING_BEARER = (
    "login fail: Please carry the API secret key in the 'Authorization' field of the "
    "request header (1004)"
)
QUOTA = re.compile(
    r"^usage limit exceeded, 5-hour usage limit reached for Token Plan Starter "
    r"\((\d+)/(\d+) used\), resets at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) \(2056\)$"
)


def post(sim: RunningSimulator, body: dict[str, Any], **kwargs: Any) -> httpx2.Response:
    """POST /anthropic/v1/messages with a Bearer key unless other headers are given."""
    headers = kwargs.pop("headers", BEARER)
    return httpx2.post(
        f"{sim.base_url}/anthropic/v1/messages", json=body, headers=headers, **kwargs
    )


def ask(model: str = M2, **extra: Any) -> dict[str, Any]:
    """A small message request body."""
    return {"model": model, "max_tokens": 50, "messages": user("Hi"), **extra}


def error_of(response: httpx2.Response) -> dict[str, str]:
    """The ``error`` object of an error response, after checking the shape and request id."""
    body = response.json()
    assert body["type"] == "error"
    assert body["request_id"] == response.headers["request-id"]  # C12
    error: dict[str, str] = body["error"]
    return error


def sdk_error(caught: pytest.ExceptionInfo[anthropic.APIStatusError]) -> dict[str, Any]:
    """The ``error`` object the SDK's exception carries."""
    body = caught.value.body
    assert isinstance(body, dict)
    error: dict[str, Any] = body["error"]
    return error


def sse_events(response: httpx2.Response, stop: Callable[[list[str]], bool]) -> list[str]:
    """The event names of a streamed response, read until ``stop`` says enough or it ends."""
    names: list[str] = []
    for line in response.iter_lines():
        if line.startswith("event: "):
            names.append(line[len("event: ") :])
        if line.startswith("data: ") and names and names[-1] == "error":
            names.append(line)  # the error's data, to check it whole
        if stop(names):
            break
    return names


def wait_idle(sim: RunningSimulator) -> dict[str, Any]:
    """The stats once no request is in flight (the server ends a stream its client left)."""
    deadline = time.monotonic() + 10
    while (stats := sim.fetch_stats())["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    return stats


# --- authentication (row 1, C1) ------------------------------------------------------------------


def test_the_sdk_key_is_sent_as_bearer_and_accepted(sim: RunningSimulator) -> None:
    with make_client(sim) as sdk:
        assert sdk.messages.create(model=M2, max_tokens=20, messages=user("x")).content


def test_x_api_key_alone_is_refused_by_default(sim: RunningSimulator) -> None:
    response = post(sim, ask(), headers=X_API_KEY)
    assert response.status_code == 401
    assert error_of(response) == {"type": "authentication_error", "message": MISSING_BEARER}


def test_x_api_key_is_accepted_by_a_setting(sim_factory: SimFactory) -> None:
    sim = sim_factory(accept_x_api_key=True, api_key=API_KEY)
    assert post(sim, ask(), headers=X_API_KEY).status_code == 200
    assert post(sim, ask(), headers={"x-api-key": "other"}).status_code == 401


def test_x_api_key_alone_can_be_answered_the_mainland_way(sim_factory: SimFactory) -> None:
    sim = sim_factory(x_api_key_status=500)
    response = post(sim, ask(), headers=X_API_KEY)
    assert response.status_code == 500
    assert error_of(response) == {"type": "api_error", "message": "system error (1033)"}
    assert post(sim, ask(), headers={}).status_code == 401  # no key at all is still a 401


# --- context window, max_tokens and thinking (rows 2-4, C2) --------------------------------------


def test_the_served_window_is_a_setting(sim_factory: SimFactory) -> None:
    sim = sim_factory(context_windows={M2: 1000})
    with make_client(sim) as sdk:
        sdk.messages.create(model=M2, max_tokens=900, messages=user("Hi"))
        with pytest.raises(anthropic.BadRequestError) as caught:
            sdk.messages.create(model=M2, max_tokens=1000, messages=user("Hi"))
        sdk.messages.create(model=M27, max_tokens=1000, messages=user("Hi"))  # catalog window
    assert sdk_error(caught) == {
        "type": "invalid_request_error",
        "message": "invalid params, context window exceeds limit (2013)",
    }


def test_m3_refuses_max_tokens_over_524288(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=M3, max_tokens=524_289, messages=user("Hi"), timeout=30)
    assert sdk_error(caught) == {
        "type": "invalid_request_error",
        "message": "invalid params, does not support max tokens > 524288 (2013)",
    }
    ok = client.messages.create(model=M3, max_tokens=524_288, messages=user("Hi"), timeout=30)
    assert ok.content


def test_the_max_tokens_cap_is_a_setting(sim_factory: SimFactory) -> None:
    sim = sim_factory(max_output_tokens={M2: 100, M3: 600_000})  # over the catalog's M3 cap
    assert post(sim, ask(M3, max_tokens=600_000)).status_code == 200
    assert post(sim, ask(M3, max_tokens=600_001)).status_code == 400
    response = post(sim, ask(M2, max_tokens=101))
    assert error_of(response)["message"] == (
        "invalid params, does not support max tokens > 100 (2013)"
    )


def test_m3_refuses_enabled_thinking_by_default(sim_factory: SimFactory) -> None:
    enabled = {"type": "enabled", "budget_tokens": 1024}
    with make_client(sim_factory()) as sdk:
        with pytest.raises(anthropic.BadRequestError) as caught:
            sdk.messages.create(model=M3, max_tokens=2000, messages=user("Hi"), thinking=enabled)
        assert sdk.messages.create(
            model=M27, max_tokens=2000, messages=user("Hi"), thinking=enabled
        )
    assert sdk_error(caught) == {
        "type": "invalid_request_error",
        "message": 'invalid params, invalid thinking.type: "enabled" '
        "(allowed: adaptive, disabled) (2013)",
    }
    with make_client(sim_factory(accept_enabled_thinking=True)) as sdk:
        message = sdk.messages.create(
            model=M3, max_tokens=2000, messages=user("Hi"), thinking=enabled
        )
    assert message.content[0].type == "thinking"


# --- faults (rows 8-10; C4-C9) -------------------------------------------------------------------


def test_quota_fault_names_its_reset(sim_factory: SimFactory) -> None:
    sim = sim_factory(faults=FaultRates(quota=1.0), quota_reset_seconds=3600)
    before = time.time()
    response = post(sim, ask())
    assert response.status_code == 429
    error = error_of(response)
    assert error["type"] == "rate_limit_error"
    match = QUOTA.match(error["message"])
    assert match, error["message"]
    reset = datetime.strptime(match[3], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    assert before + 3600 - 1 <= reset <= time.time() + 3600 + 1


def test_a_real_quota_refuses_until_its_window_ends(sim_factory: SimFactory) -> None:
    sim = sim_factory(quota_requests=3, quota_window=3.0)
    started = time.time()
    statuses = [post(sim, ask(model)).status_code for model in (M2, M27, M3)]
    assert statuses == [200, 200, 200]
    refused = post(sim, ask(M2))
    assert refused.status_code == 429
    match = QUOTA.match(error_of(refused)["message"])
    assert match
    assert (match[1], match[2]) == ("3", "3")
    reset = datetime.strptime(match[3], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    assert started <= reset <= started + 3.0 + 1  # rounded up to the second
    while time.time() < reset:  # the window has ended: the quota is back
        time.sleep(0.1)
    assert post(sim, ask(M2)).status_code == 200


def test_requests_refused_by_a_limit_do_not_use_the_quota(sim_factory: SimFactory) -> None:
    sim = sim_factory(quota_requests=2, rpm={M2: 1}, limit_window=60)
    statuses = [post(sim, ask(model)).status_code for model in (M2, M2, M27, M27)]
    assert statuses == [200, 429, 200, 429]
    assert QUOTA.match(error_of(post(sim, ask(M3)))["message"])


def test_system_error_fault_is_a_500_1033(sim_factory: SimFactory) -> None:
    sim = sim_factory(faults=FaultRates(system_error=1.0))
    with make_client(sim) as sdk, pytest.raises(anthropic.InternalServerError) as caught:
        sdk.messages.create(model=M2, max_tokens=20, messages=user("x"))
    assert caught.value.status_code == 500
    assert sdk_error(caught) == {"type": "api_error", "message": "system error (1033)"}


def test_timeout_fault_is_a_408_after_the_scaled_timeout(sim_factory: SimFactory) -> None:
    sim = sim_factory(faults=FaultRates(timeout=1.0), timeout_seconds=100, time_scale=0.003)
    started = time.monotonic()
    response = post(sim, ask(), timeout=30)
    assert time.monotonic() - started >= 0.3  # 100 simulated seconds at time scale 0.003
    assert response.status_code == 408
    assert error_of(response) == {"type": "api_error", "message": "request timeout (1001)"}


@pytest.mark.parametrize(
    ("status", "error_type"), [(500, "api_error"), (402, "insufficient_balance_error")]
)
def test_balance_status_is_a_setting(sim_factory: SimFactory, status: int, error_type: str) -> None:
    sim = sim_factory(faults=FaultRates(balance=1.0), balance_status=status)
    response = post(sim, ask())
    assert response.status_code == status
    assert error_of(response) == {"type": error_type, "message": "insufficient balance (1008)"}


def test_endless_stream_only_pings_until_the_client_leaves(sim_factory: SimFactory) -> None:
    sim = sim_factory(faults=FaultRates(endless=1.0), ping_interval=0.05)
    with httpx2.stream(
        "POST",
        f"{sim.base_url}/v1/messages",
        json=ask(stream=True, max_tokens=200),
        headers=BEARER,
        timeout=10,
    ) as response:
        assert response.status_code == 200
        assert response.headers["request-id"]
        names = sse_events(response, lambda seen: seen[-4:] == ["ping"] * 4)
    assert names[0] == "message_start"
    assert "message_stop" not in names
    assert "message_delta" not in names
    stats = wait_idle(sim)
    assert stats["in_flight"] == 0
    assert stats["models"][M2]["client_gone"] == 1


def test_stream_error_event_ends_a_stream_after_part_of_it(sim_factory: SimFactory) -> None:
    sim = sim_factory(faults=FaultRates(stream_error=1.0))
    for seed_request in range(5):
        with httpx2.stream(
            "POST",
            f"{sim.base_url}/v1/messages",
            json=ask(stream=True, max_tokens=300, messages=user(f"Tell {seed_request}")),
            headers=BEARER,
            timeout=10,
        ) as response:
            names = sse_events(response, lambda seen: False)
        assert names[0] == "message_start"
        assert names[-2:] == [
            "error",
            'data: {"type":"error","error":{"type":"api_error","message":"unknown error (1000)"}}',
        ]
        assert "message_stop" not in names


def test_stream_error_through_the_sdk_keeps_no_whole_answer(sim_factory: SimFactory) -> None:
    sim = sim_factory(faults=FaultRates(stream_error=1.0))

    def read_whole_stream(sdk: anthropic.Anthropic) -> None:
        with sdk.messages.stream(model=M2, max_tokens=300, messages=user("Hi")) as stream:
            for _ in stream:
                pass

    with make_client(sim) as sdk, pytest.raises(anthropic.APIStatusError) as caught:
        read_whole_stream(sdk)
    assert "unknown error (1000)" in str(caught.value)


# --- the account pool (row 11, C13) --------------------------------------------------------------


def test_account_rpm_holds_two_models_together(sim_factory: SimFactory) -> None:
    sim = sim_factory(account_rpm=3, limit_window=60)
    assert [post(sim, ask(m)).status_code for m in (M2, M27, M2)] == [200, 200, 200]
    for model in (M27, M2):
        refused = post(sim, ask(model))
        assert refused.status_code == 429
        assert error_of(refused) == {
            "type": "rate_limit_error",
            "message": "rate limit exceeded (account requests per minute) (1002)",
        }
    assert post(sim, ask(M3)).status_code == 429  # a third model shares the pool too


def test_account_tpm_counts_every_models_tokens(sim_factory: SimFactory) -> None:
    sim = sim_factory(account_tpm=2000, limit_window=60)
    with make_client(sim) as sdk:
        first = sdk.messages.create(model=M2, max_tokens=1500, messages=user("Hi"))
    used = first.usage.input_tokens + first.usage.output_tokens
    assert used < 2000
    big = {"model": M27, "max_tokens": 10, "messages": user("word " * (2000 - used))}
    refused = post(sim, big)
    assert refused.status_code == 429, refused.text
    assert error_of(refused)["message"] == (
        "rate limit exceeded (account tokens per minute) (1002)"
    )


def test_the_account_pool_is_off_by_default(sim: RunningSimulator) -> None:
    assert all(post(sim, ask(m)).status_code == 200 for m in (M2, M27, M3) * 4)


# --- request-id (C12) ----------------------------------------------------------------------------


def test_every_response_carries_a_request_id(sim: RunningSimulator) -> None:
    ok = post(sim, ask())
    counted = httpx2.post(
        f"{sim.base_url}/v1/messages/count_tokens",
        json={"model": M2, "messages": user("a b")},
        headers=BEARER,
    )
    with httpx2.stream(
        "POST", f"{sim.base_url}/v1/messages", json=ask(stream=True), headers=BEARER
    ) as streamed:
        streamed.read()
    refused = post(sim, ask(max_tokens=0))
    ids = [r.headers["request-id"] for r in (ok, counted, streamed, refused)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == 4
    assert refused.json()["request_id"] == refused.headers["request-id"]


# --- sizes and formats (MiniMax's documents) -----------------------------------------------------


def media(kind: str, media_type: str, size: int) -> dict[str, Any]:
    """An M3 request with one base64 image or video of ``size`` decoded bytes."""
    data = base64.b64encode(b"\0" * size).decode()
    block = {"type": kind, "source": {"type": "base64", "media_type": media_type, "data": data}}
    return ask(M3, messages=[{"role": "user", "content": [block, {"type": "text", "text": "?"}]}])


def test_a_body_over_the_limit_is_refused(sim_factory: SimFactory) -> None:
    sim = sim_factory(max_body_bytes=4096)
    assert post(sim, ask(messages=user("word " * 500))).status_code == 200
    response = post(sim, ask(messages=user("word " * 1000)))
    assert response.status_code == 400
    assert error_of(response) == {
        "type": "invalid_request_error",
        "message": "invalid params, the request body is over the 0.00390625 MB limit (2013)",
    }


def test_the_default_body_limit_is_64_mb(sim: RunningSimulator) -> None:
    response = post(sim, ask(messages=user("x" * (64 * 1024 * 1024))), timeout=60)
    assert response.status_code == 400
    assert "over the 64 MB limit" in error_of(response)["message"]


@pytest.mark.parametrize(
    ("kind", "media_type", "limit"),
    [("image", "image/png", "max_image_bytes"), ("video", "video/mp4", "max_video_bytes")],
)
def test_media_over_its_limit_is_refused(
    sim_factory: SimFactory, kind: str, media_type: str, limit: str
) -> None:
    sim = sim_factory(**{limit: 3000})
    assert post(sim, media(kind, media_type, 3000)).status_code == 200
    response = post(sim, media(kind, media_type, 3001))
    assert response.status_code == 400
    message = error_of(response)["message"]
    assert message.startswith("invalid params, messages[0].content[0]: the ")
    assert f"MB limit for a base64 {kind} (2013)" in message


def test_the_documented_media_limits_are_the_defaults() -> None:
    settings = SimSettings()
    assert settings.max_image_bytes == 10 * 1024 * 1024
    assert settings.max_video_bytes == 50 * 1024 * 1024
    assert settings.max_body_bytes == 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("kind", "media_type", "accepted"),
    [
        ("image", "image/jpeg", True),
        ("image", "image/webp", True),
        ("image", "image/gif", True),
        ("image", "image/bmp", False),
        ("image", "image/svg+xml", False),
        ("video", "video/quicktime", True),
        ("video", "video/x-matroska", True),
        ("video", "video/webm", False),
    ],
)
def test_only_the_listed_media_formats_are_accepted(
    sim: RunningSimulator, kind: str, media_type: str, accepted: bool
) -> None:
    response = post(sim, media(kind, media_type, 100))
    if accepted:
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 400
    message = error_of(response)["message"]
    assert f"{media_type!r} is not a supported {kind} format" in message
    assert message.endswith("(2013)")


# --- profiles ------------------------------------------------------------------------------------


def tally(sim: RunningSimulator, count: int, model: str = M2) -> Counter[str]:
    """Send ``count`` non-streamed requests; count them by status or by how they broke."""
    seen: Counter[str] = Counter()
    with httpx2.Client(headers=BEARER, timeout=0.5) as http:
        for i in range(count):
            try:
                response = http.post(
                    f"{sim.base_url}/v1/messages", json=ask(model, messages=user(f"Hi {i}"))
                )
            except httpx2.TimeoutException:
                seen["no answer"] += 1  # an endless answer
                continue
            except httpx2.TransportError:
                seen["cut"] += 1  # a dropped connection
                continue
            if response.status_code == 200:
                seen["200"] += 1
            else:
                seen[f"{response.status_code} {error_of(response)['message']}"] += 1
    return seen


def test_the_field_profile_injects_faults_at_about_its_rates(sim_factory: SimFactory) -> None:
    sim = sim_factory(**{**PROFILES["field"], "seed": 3, "stall_seconds": 0.0})
    seen = tally(sim, 300)
    assert sum(seen.values()) == 300
    overloaded = sum(n for key, n in seen.items() if key.startswith("529"))
    system = seen["500 system error (1033)"]
    unknown = seen["500 unknown error (1000)"]  # the 500s, and stream_error without a stream
    assert 1 <= overloaded <= 15  # 2% of 300 is 6
    assert 1 <= unknown <= 12  # 1% + 0.5% of 300 is 4.5
    assert system <= 6  # 0.5% of 300 is 1.5
    assert 250 <= seen["200"] < 300


def test_without_a_profile_no_fault_is_injected(sim: RunningSimulator) -> None:
    assert tally(sim, 300) == Counter({"200": 300})


def test_the_docs_profile_accepts_what_the_documents_promise(sim_factory: SimFactory) -> None:
    sim = sim_factory(**PROFILES["docs"])
    assert post(sim, ask(), headers=X_API_KEY).status_code == 200
    enabled = ask(M3, max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1000})
    assert post(sim, enabled).status_code == 200


def test_explicit_settings_win_over_the_profile() -> None:
    settings = SimSettings.from_profile("docs", accept_x_api_key=False)
    assert (settings.accept_x_api_key, settings.accept_enabled_thinking) == (False, True)
    assert settings.profile == "docs"
    from_cli = settings_from_args(["--profile", "field", "--faults=", "--stall-seconds", "9"])
    assert from_cli.faults == FaultRates()
    assert from_cli.stall_seconds == 9
    assert from_cli.ping_interval == FIELD_PROFILE["ping_interval"]
    assert settings_from_args(["--profile", "field"]).faults == FIELD_PROFILE["faults"]


@pytest.mark.parametrize(
    "settings",
    [
        SimSettings(),
        SimSettings.from_profile("field"),
        SimSettings.from_profile("docs", accept_x_api_key=False),
        SimSettings.from_profile(
            "field",
            faults=FaultRates(),
            account_rpm=7,
            account_tpm=9000,
            quota_requests=5,
            quota_window=30.0,
            context_windows={M3: 500_000},
            max_output_tokens={},
            balance_status=402,
            x_api_key_status=500,
            max_image_bytes=1234,
        ),
    ],
)
def test_settings_to_args_reproduces_field_settings(settings: SimSettings) -> None:
    assert settings_from_args(settings_to_args(settings)) == settings


def test_a_child_process_serves_its_profile() -> None:
    settings = SimSettings.from_profile("docs", time_scale=0.0, faults=FaultRates(quota=1.0))
    with simulator_process(settings) as sim:
        response = post(sim, ask(), headers=X_API_KEY)
    assert response.status_code == 429
    assert QUOTA.match(error_of(response)["message"])


def test_an_unknown_profile_is_refused_with_the_known_ones() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "batchrun.sim", "--port", "0", "--profile", "live"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown profile 'live'; known: docs, field" in done.stderr


def test_sim_help_documents_every_field_option() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "batchrun.cli", "sim", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, "COLUMNS": "250"},
    )
    for option in (
        "--profile",
        "--accept-x-api-key",
        "--x-api-key-status",
        "--context-window",
        "--max-output-tokens",
        "--accept-enabled-thinking",
        "--balance-status",
        "--quota-requests",
        "--quota-window",
        "--quota-reset-seconds",
        "--timeout-seconds",
        "--ping-interval",
        "--account-rpm",
        "--account-tpm",
        "--max-body-mb",
        "--max-image-mb",
        "--max-video-mb",
        "stream_error",
        "endless",
        "2056",
        "1033",
        "408",
    ):
        assert option in done.stdout, option


@pytest.mark.parametrize(
    "bad",
    [
        {"think_leak_rate": 1.5},
        {"empty_reply_rate": -0.1},
        {"tool_call_rate": 2.0},
        {"cache_min_tokens": 0},
        {"cache_max_entries": 0},
        {"balance_status": 403},
        {"account_rpm": 0},
        {"ping_interval": 0.0},
    ],
)
def test_settings_out_of_range_are_refused_when_made(bad: dict[str, Any]) -> None:
    # In Python as on the command line: a bad figure fails before a simulator starts.
    with pytest.raises(SimulatorError, match=next(iter(bad))):
        SimSettings(**bad)

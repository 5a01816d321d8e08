"""The simulator through the real anthropic SDK: routes, responses, streams, validation, auth."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from batchrun.sim import RunningSimulator
from tests.helpers import API_KEY, make_async_client, make_client, user

BEARER = {"authorization": f"Bearer {API_KEY}"}
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather forecast for a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 2},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "hourly": {"type": "boolean"},
        },
        "required": ["city", "days", "unit"],
    },
}


def test_non_streamed_create_has_thinking_text_and_usage(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="MiniMax-M2.7", max_tokens=4000, system="Be brief.", messages=user("Hi there")
    )
    assert [block.type for block in message.content] == ["thinking", "text"]
    thinking, text = message.content
    assert thinking.type == "thinking"
    assert thinking.signature
    assert thinking.thinking
    assert text.type == "text"
    assert text.text
    assert message.stop_reason == "end_turn"
    assert message.model == "MiniMax-M2.7"
    assert message.id.startswith("msg_")
    assert message.usage.input_tokens > 0
    # output tokens count thinking and text, one token per word or punctuation mark
    from batchrun.sim.tokens import count_text

    assert message.usage.output_tokens == count_text(thinking.thinking) + count_text(text.text)


def test_base_url_with_and_without_anthropic_prefix(sim: RunningSimulator) -> None:
    for base in (sim.base_url, f"{sim.base_url}/anthropic"):
        with anthropic.Anthropic(base_url=base, api_key=API_KEY, max_retries=0) as sdk:
            message = sdk.messages.create(model="MiniMax-M2", max_tokens=50, messages=user("x"))
            assert message.usage.output_tokens <= 50


def test_raw_stream_follows_the_event_contract(client: anthropic.Anthropic) -> None:
    events = list(
        client.messages.create(
            model="MiniMax-M2.5", max_tokens=4000, messages=user("Hello"), stream=True
        )
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    starts = [e for e in events if e.type == "content_block_start"]
    stops = [e for e in events if e.type == "content_block_stop"]
    assert [s.content_block.type for s in starts] == ["thinking", "text"]
    assert [s.index for s in starts] == [0, 1] == [s.index for s in stops]
    deltas = [e.delta.type for e in events if e.type == "content_block_delta"]
    first_text = deltas.index("text_delta")
    assert set(deltas[: first_text - 1]) == {"thinking_delta"}
    assert deltas[first_text - 1] == "signature_delta"
    assert set(deltas[first_text:]) == {"text_delta"}
    start, delta = events[0], events[-2]
    assert start.type == "message_start"
    assert start.message.usage.input_tokens > 0
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == len(deltas) - 1  # every delta but the signature


def test_stream_helper_final_message_equals_non_streamed(client: anthropic.Anthropic) -> None:
    kwargs: dict[str, Any] = {"model": "MiniMax-M2.1", "max_tokens": 3000, "messages": user("Q")}
    plain = client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert plain_blocks(final.content) == plain_blocks(plain.content)
    assert final.usage == plain.usage
    assert final.stop_reason == plain.stop_reason
    assert text == plain.content[-1].text  # type: ignore[union-attr]


def test_count_tokens_equals_usage_of_the_same_request(client: anthropic.Anthropic) -> None:
    conversation: list[Any] = [
        {"role": "user", "content": [{"type": "text", "text": "What is 2 + 2?"}]},
        {"role": "assistant", "content": "It is 4."},
        {"role": "user", "content": "And 3 + 3, in one word?"},
    ]
    common: dict[str, Any] = {
        "model": "MiniMax-M3",
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": conversation,
        "tools": [WEATHER_TOOL],
    }
    counted = client.messages.count_tokens(**common)
    message = client.messages.create(max_tokens=200, **common)
    assert counted.input_tokens == message.usage.input_tokens > 20


def test_same_request_same_seed_same_reply(sim_factory: Callable[..., RunningSimulator]) -> None:
    def ask(seed: int) -> str:
        with make_client(sim_factory(seed=seed)) as sdk:
            message = sdk.messages.create(model="MiniMax-M2", max_tokens=500, messages=user("x"))
            return message.model_dump_json()

    assert ask(3) == ask(3)
    assert ask(3) != ask(4)


def test_max_tokens_stops_the_reply(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="MiniMax-M2.7", max_tokens=5, messages=user("Hi"))
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 5
    assert [block.type for block in message.content] == ["thinking"]


def test_m3_thinks_only_when_asked(client: anthropic.Anthropic) -> None:
    plain = client.messages.create(model="MiniMax-M3", max_tokens=2000, messages=user("a"))
    assert [block.type for block in plain.content] == ["text"]
    disabled = client.messages.create(
        model="MiniMax-M3", max_tokens=2000, messages=user("a"), thinking={"type": "disabled"}
    )
    assert [block.type for block in disabled.content] == ["text"]
    adaptive = client.messages.create(
        model="MiniMax-M3",
        max_tokens=2000,
        messages=user("a"),
        extra_body={"thinking": {"type": "adaptive"}},
    )
    assert [block.type for block in adaptive.content] == ["thinking", "text"]


def test_m2_cannot_turn_thinking_off(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="MiniMax-M2.5-highspeed",
        max_tokens=2000,
        messages=user("a"),
        thinking={"type": "disabled"},
    )
    assert message.content[0].type == "thinking"


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}])
def test_required_tool_gives_tool_use_matching_schema(
    client: anthropic.Anthropic, choice: dict[str, str]
) -> None:
    kwargs: dict[str, Any] = {
        "model": "MiniMax-M2.7",
        "max_tokens": 2000,
        "messages": user("Weather in Paris?"),
        "tools": [WEATHER_TOOL],
        "tool_choice": choice,
    }
    message = client.messages.create(**kwargs)
    assert message.stop_reason == "tool_use"
    tool = message.content[-1]
    assert tool.type == "tool_use"
    assert tool.name == "get_weather"
    assert tool.id.startswith("toolu_")
    _assert_weather_input(tool.input)
    with client.messages.stream(**kwargs) as stream:
        streamed = stream.get_final_message()
    assert plain_blocks(streamed.content) == plain_blocks(message.content)
    raw = list(client.messages.create(stream=True, **kwargs))
    json_deltas = [
        e.delta.partial_json
        for e in raw
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert len(json_deltas) > 1
    assert orjson.loads("".join(json_deltas)) == tool.input


def plain_blocks(blocks: Any) -> list[dict[str, Any]]:
    """Content blocks as plain dicts (the stream helper's blocks carry an extra parsed_output)."""
    return [
        {k: v for k, v in block.model_dump().items() if k != "parsed_output"} for block in blocks
    ]


def _assert_weather_input(value: Any) -> None:
    assert isinstance(value, dict)
    assert {"city", "days", "unit"} <= set(value)
    assert isinstance(value["city"], str)
    assert len(value["city"]) >= 2
    assert isinstance(value["days"], int)
    assert 1 <= value["days"] <= 7
    assert value["unit"] in ("celsius", "fahrenheit")
    assert isinstance(value.get("hourly", True), bool)


def test_auto_tool_choice_answers_in_text(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="MiniMax-M3", max_tokens=500, messages=user("Hi"), tools=[WEATHER_TOOL]
    )
    assert message.content[-1].type == "text"
    assert message.stop_reason in ("end_turn", "max_tokens")


def test_tool_result_conversation_is_accepted(client: anthropic.Anthropic) -> None:
    first = client.messages.create(
        model="MiniMax-M2.7",
        max_tokens=2000,
        messages=user("Weather in Oslo?"),
        tools=[WEATHER_TOOL],
        tool_choice={"type": "any"},
    )
    tool = first.content[-1]
    assert tool.type == "tool_use"
    second = client.messages.create(
        model="MiniMax-M2.7",
        max_tokens=2000,
        tools=[WEATHER_TOOL],
        messages=[
            *user("Weather in Oslo?"),
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "Rain"}],
            },
        ],
    )
    assert second.content[-1].type == "text"


INVALID_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown model", {"model": "gpt-4"}, "unknown model"),
    ("zero max_tokens", {"max_tokens": 0}, "max_tokens"),
    ("temperature 5", {"extra_body": {"temperature": 5}}, "temperature"),
    ("temperature -0.1", {"extra_body": {"temperature": -0.1}}, "temperature"),
    ("top_p 1.5", {"extra_body": {"top_p": 1.5}}, "top_p"),
    ("empty messages", {"messages": []}, "messages"),
    ("bad role", {"messages": [{"role": "system", "content": "x"}]}, "role"),
    ("empty content", {"messages": [{"role": "user", "content": ""}]}, "content"),
    ("empty block list", {"messages": [{"role": "user", "content": []}]}, "content"),
    (
        "image to M2",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
                    ],
                }
            ]
        },
        "image",
    ),
    (
        "video to M2",
        {"messages": [{"role": "user", "content": [{"type": "video", "source": {}}]}]},
        "video",
    ),
    ("unknown block", {"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "audio"),
    ("bad tool_choice", {"tool_choice": {"type": "any"}}, "tool"),
    ("bad thinking", {"extra_body": {"thinking": {"type": "sometimes"}}}, "thinking"),
]


@pytest.mark.parametrize(
    ("overrides", "fragment"), [c[1:] for c in INVALID_CASES], ids=[c[0] for c in INVALID_CASES]
)
def test_invalid_requests_are_400_with_minimax_code(
    client: anthropic.Anthropic, overrides: dict[str, Any], fragment: str
) -> None:
    kwargs: dict[str, Any] = {"model": "MiniMax-M2.7", "max_tokens": 100, "messages": user("x")}
    kwargs.update(overrides)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(**kwargs)
    error = caught.value
    assert error.status_code == 400
    body = error.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].endswith("(2013)")
    assert fragment in body["error"]["message"]


def test_images_and_video_are_accepted_by_m3(client: anthropic.Anthropic) -> None:
    content = [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "video", "source": {"type": "url", "url": "https://example.com/a.mp4"}},
        {"type": "text", "text": "Describe both."},
    ]
    message = client.messages.create(
        model="MiniMax-M3", max_tokens=100, messages=[{"role": "user", "content": content}]
    )
    assert message.usage.input_tokens > 10_000  # an image and a video weigh many tokens


def test_context_window_overflow_is_2013_without_numbers(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="MiniMax-M2", max_tokens=204_800, messages=user("Hello"), timeout=30
        )
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["error"] == {  # C2: MiniMax gives no numbers
        "type": "invalid_request_error",
        "message": "invalid params, context window exceeds limit (2013)",
    }
    # the same request fits M3's 1,000,000-token window
    client.messages.create(
        model="MiniMax-M3", max_tokens=204_800, messages=user("Hello"), timeout=30
    )


def test_ignored_parameters_are_accepted(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="MiniMax-M2.7",
        max_tokens=100,
        messages=user("x"),
        stop_sequences=["\n\n"],
        metadata={"user_id": "u1"},
        extra_body={
            "top_k": 5,
            "temperature": 1.0,
            "top_p": 0.9,
            "mcp_servers": [],
            "context_management": {},
            "container": "c",
        },
    )
    assert message.usage.output_tokens > 0


_MISSING_BEARER = (
    "login fail: Please carry the API secret key in the 'Authorization' field of the "
    "request header (1004)"
)


@pytest.mark.parametrize(
    ("headers", "configured", "message"),
    [
        ({}, None, _MISSING_BEARER),
        ({"x-api-key": "right"}, "right", _MISSING_BEARER),  # MiniMax wants Bearer (row 1)
        ({"x-api-key": "any"}, None, _MISSING_BEARER),
        ({"authorization": "Bearer wrong"}, "right", "invalid api key (1004)"),
    ],
)
def test_auth_failures_are_401_with_minimax_code(
    sim_factory: Callable[..., RunningSimulator],
    headers: dict[str, str],
    configured: str | None,
    message: str,
) -> None:
    sim = sim_factory(api_key=configured)
    body = {"model": "MiniMax-M2", "max_tokens": 10, "messages": user("x")}
    response = httpx2.post(f"{sim.base_url}/v1/messages", json=body, headers=headers)
    assert response.status_code == 401
    error = response.json()
    assert error["type"] == "error"
    assert error["error"] == {"type": "authentication_error", "message": message}
    assert error["request_id"] == response.headers["request-id"]


def test_bearer_and_configured_key_are_accepted(
    sim_factory: Callable[..., RunningSimulator],
) -> None:
    sim = sim_factory(api_key="right", accept_x_api_key=True)
    body = {"model": "MiniMax-M2", "max_tokens": 10, "messages": user("x")}
    for headers in ({"x-api-key": "right"}, {"authorization": "Bearer right"}):
        response = httpx2.post(f"{sim.base_url}/anthropic/v1/messages", json=body, headers=headers)
        assert response.status_code == 200, response.text
    with make_client(sim) as sdk, pytest.raises(anthropic.AuthenticationError) as caught:
        sdk.messages.create(model="MiniMax-M2", max_tokens=10, messages=user("x"))
    assert "(1004)" in str(caught.value)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/messages"), ("POST", "/v1/complete"), ("GET", "/"), ("POST", "/v2/messages")],
)
def test_unknown_routes_are_a_plain_text_404(sim: RunningSimulator, method: str, path: str) -> None:
    response = httpx2.request(method, f"{sim.base_url}{path}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.strip() == "404 page not found"  # as MiniMax's host (row 15)
    assert response.headers["request-id"]


@pytest.mark.parametrize("max_tokens", [None, "100", 1.5, True, -3])
def test_missing_or_mistyped_max_tokens_is_400(sim: RunningSimulator, max_tokens: Any) -> None:
    body: dict[str, Any] = {"model": "MiniMax-M2", "messages": user("x")}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    response = httpx2.post(f"{sim.base_url}/v1/messages", json=body, headers=BEARER)
    assert response.status_code == 400
    assert "max_tokens" in response.json()["error"]["message"]


def test_body_that_is_not_json_is_400(sim: RunningSimulator) -> None:
    response = httpx2.post(f"{sim.base_url}/v1/messages", content=b"{not json", headers=BEARER)
    assert response.status_code == 400
    assert response.json()["error"]["message"].endswith("(2013)")


def test_count_tokens_can_be_limited_to_m3(sim_factory: Callable[..., RunningSimulator]) -> None:
    sim = sim_factory(count_tokens_models=frozenset({"MiniMax-M3"}))
    with make_client(sim) as sdk:
        assert sdk.messages.count_tokens(model="MiniMax-M3", messages=user("a b")).input_tokens
        with pytest.raises(anthropic.BadRequestError) as caught:
            sdk.messages.count_tokens(model="MiniMax-M2.7", messages=user("a b"))
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["error"] == {  # C3
        "type": "invalid_request_error",
        "message": "invalid params, count_tokens is not supported for model MiniMax-M2.7 (2013)",
    }


def test_stats_count_requests_and_reset(sim: RunningSimulator, client: anthropic.Anthropic) -> None:
    client.messages.create(model="MiniMax-M2", max_tokens=100, messages=user("x"))
    client.messages.count_tokens(model="MiniMax-M2", messages=user("x"))
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="MiniMax-M2", max_tokens=0, messages=user("x"))
    stats = sim.fetch_stats()
    assert stats["messages_total"] == 2
    assert stats["count_tokens_total"] == 1
    assert stats["models"]["MiniMax-M2"]["ok"] == 1
    assert stats["models"]["MiniMax-M2"]["4xx"] == 1
    sim.reset_stats()
    assert sim.fetch_stats()["messages_total"] == 0


def test_time_scale_sets_the_pace(sim_factory: Callable[..., RunningSimulator]) -> None:
    # At 0.05 and without random spread, a reply's first token comes 0.05 * 0.8 s after the
    # request and its tokens at 20x the model's speed: 300 tokens of M2.7 (60 tps) take 0.25 s.
    sim = sim_factory(time_scale=0.05, ttft_sigma=0.0, speed_jitter=0.0)
    with make_client(sim) as sdk:
        sent = time.perf_counter()
        stream = sdk.messages.create(
            model="MiniMax-M2.7", max_tokens=300, messages=user("x"), stream=True
        )
        arrivals = []
        for event in stream:
            if event.type == "content_block_delta":
                arrivals.append(time.perf_counter() - sent)
    assert len(arrivals) > 100
    ttft, last = arrivals[0], arrivals[-1]
    planned_last = 0.05 * (0.8 + (len(arrivals) - 1) / 60)
    # The schedule is a floor (a busy machine only makes replies later) ...
    assert ttft >= 0.05 * 0.8 - 0.002
    assert last >= planned_last - 0.002
    # ... and the scale shrinks it: unscaled, the first token would take 0.8 s and the last 5.8 s.
    assert ttft < 0.4
    assert last < 2.9


@pytest.mark.anyio
async def test_async_sdk_on_aiohttp_streams_concurrently(sim: RunningSimulator) -> None:
    import anyio

    results: list[int] = []
    async with make_async_client(sim) as sdk:

        async def one(i: int) -> None:
            async with sdk.messages.stream(
                model="MiniMax-M2.7-highspeed", max_tokens=2000, messages=user(f"q{i}")
            ) as stream:
                final = await stream.get_final_message()
            results.append(final.usage.output_tokens)

        async with anyio.create_task_group() as group:
            for i in range(50):
                group.start_soon(one, i)
        counted = await sdk.messages.count_tokens(model="MiniMax-M3", messages=user("a b c"))
    assert len(results) == 50
    assert all(results)
    assert counted.input_tokens == 1 + 3 + 3


@pytest.mark.parametrize("model", ["MiniMax-M2.7", "MiniMax-M3"])
def test_paced_streams_carry_the_same_reply(
    sim_factory: Callable[..., RunningSimulator], model: str
) -> None:
    # At a non-zero time scale the events are spread over many writes; the reply must not change.
    kwargs: dict[str, Any] = {
        "model": model,
        "max_tokens": 400,
        "messages": user("Weather in Rome?"),
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "any"},
    }
    with make_client(sim_factory(time_scale=0.002)) as sdk:
        plain = sdk.messages.create(**kwargs)
        with sdk.messages.stream(**kwargs) as stream:
            streamed = stream.get_final_message()
        text = sdk.messages.create(
            **{**kwargs, "tools": anthropic.omit, "tool_choice": anthropic.omit}
        )
        with sdk.messages.stream(
            **{**kwargs, "tools": anthropic.omit, "tool_choice": anthropic.omit}
        ) as stream:
            streamed_text = stream.get_final_message()
    assert plain_blocks(streamed.content) == plain_blocks(plain.content)
    assert plain.content[-1].type == "tool_use"
    assert plain_blocks(streamed_text.content) == plain_blocks(text.content)
    assert streamed_text.usage == text.usage

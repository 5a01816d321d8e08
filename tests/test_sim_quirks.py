"""MiniMax's reported streaming quirks (opt-in) and the prompt cache, read from the raw SSE.

The raw stream comes through the SDK's ``with_streaming_response`` (its bytes untouched); the
parsed view through ``messages.stream()``. Simulators with the same seed give the same reply to
the same body, so a quirky run is compared with a plain one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anthropic
import orjson

from batchrun.api.stream import StreamAssembler
from batchrun.sim import RunningSimulator
from tests.helpers import make_client, user

M27 = "MiniMax-M2.7"
M25 = "MiniMax-M2.5"

SimFactory = Callable[..., RunningSimulator]
Event = tuple[str, dict[str, Any]]

LONG_SYSTEM = " ".join(
    f"Rule {n}: answer the question about the batch in plain words, and cite the source."
    for n in range(40)
)


def _raw_events(client: anthropic.Anthropic, **params: Any) -> list[Event]:
    """The SSE events of a streamed create, parsed from the raw lines."""
    events: list[Event] = []
    name: str | None = None
    with client.messages.with_streaming_response.create(stream=True, **params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = orjson.loads(line.removeprefix("data: "))
                assert name is not None
                assert name == data["type"], "the event name and the data's type agree"
                events.append((name, data))
                name = None
            else:
                assert line == "", f"unexpected SSE line {line!r}"
    return events


def _only(events: list[Event], name: str) -> dict[str, Any]:
    found = [data for kind, data in events if kind == name]
    assert len(found) == 1, f"{len(found)} {name} events"
    return found[0]


def _params(text: str = "Hi", **extra: Any) -> dict[str, Any]:
    return {"model": M27, "max_tokens": 60, "messages": user(text), **extra}


def _cached_system(text: str = LONG_SYSTEM) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]


def _usage(message: anthropic.types.Message) -> tuple[int, int, int | None, int | None]:
    usage = message.usage
    return (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_creation_input_tokens,
        usage.cache_read_input_tokens,
    )


# --- the plain stream, as a baseline for the quirks --------------------------------------------


def test_plain_stream_has_signature_on_start_and_usage_on_message_delta(
    sim_factory: SimFactory,
) -> None:
    with make_client(sim_factory()) as client:
        events = _raw_events(client, **_params())
        message = client.messages.create(**_params())
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-2:] == ["message_delta", "message_stop"]
    start = next(data for name, data in events if name == "content_block_start")
    assert start["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert _only(events, "message_start")["message"]["usage"] == {
        "input_tokens": 5,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert _only(events, "message_delta")["usage"] == {"output_tokens": 60}
    assert _only(events, "message_stop") == {"type": "message_stop"}
    assert _usage(message) == (5, 60, 0, 0)


# --- start_without_signature ---------------------------------------------------------------------


def test_start_without_signature_sends_it_only_as_a_delta(sim_factory: SimFactory) -> None:
    quirky = sim_factory(quirks=frozenset({"start_without_signature"}))
    plain = sim_factory()
    with make_client(quirky) as client:
        events = _raw_events(client, **_params())
        with client.messages.stream(**_params()) as stream:
            streamed = stream.get_final_message()
    with make_client(plain) as client:
        with client.messages.stream(**_params()) as stream:
            expected = stream.get_final_message()
        unstreamed = client.messages.create(**_params())

    starts = [data for name, data in events if name == "content_block_start"]
    thinking_start = starts[0]["content_block"]
    assert thinking_start == {"type": "thinking", "thinking": ""}
    assert "signature" not in thinking_start
    signatures = [
        data["delta"]["signature"]
        for name, data in events
        if name == "content_block_delta" and data["delta"]["type"] == "signature_delta"
    ]
    assert len(signatures) == 1
    assert len(signatures[0]) == 64

    thinking = streamed.content[0]
    assert thinking.type == "thinking"
    assert expected.content[0].type == "thinking"
    assert unstreamed.content[0].type == "thinking"
    assert thinking.signature == signatures[0]
    assert thinking.signature == expected.content[0].signature
    assert thinking.signature == unstreamed.content[0].signature
    assert thinking.thinking == expected.content[0].thinking


# --- usage_on_stop ------------------------------------------------------------------------------


def test_usage_on_stop_moves_usage_to_message_stop(sim_factory: SimFactory) -> None:
    quirky = sim_factory(quirks=frozenset({"usage_on_stop"}))
    with make_client(quirky) as client:
        events = _raw_events(client, **_params())
        unstreamed = client.messages.create(**_params())
    assert _usage(unstreamed) == (5, 60, 0, 0)
    assert _only(events, "message_start")["message"]["usage"] == {
        "input_tokens": 0,
        "output_tokens": 0,
    }
    delta = _only(events, "message_delta")
    assert delta["usage"] == {"output_tokens": 0}
    assert delta["delta"]["stop_reason"] == unstreamed.stop_reason == "max_tokens"
    assert _only(events, "message_stop")["usage"] == {
        "input_tokens": 5,
        "output_tokens": 60,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def test_usage_on_stop_is_kept_by_batchruns_stream_parser(sim_factory: SimFactory) -> None:
    """The SDK's stream accumulator drops usage sent on message_stop; batchrun's parser, which
    merges usage from every event, records what the unstreamed reply reports."""
    quirky = sim_factory(quirks=frozenset({"usage_on_stop"}))
    assembler = StreamAssembler(time.perf_counter())
    with (
        make_client(quirky) as client,
        client.messages.with_streaming_response.create(stream=True, **_params()) as response,
    ):
        for chunk in response.iter_bytes():
            assembler.feed(chunk, time.perf_counter())
        unstreamed = client.messages.create(**_params())
    assert assembler.finished
    message = assembler.message()
    assert message["stop_reason"] == unstreamed.stop_reason == "max_tokens"
    usage = message["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (5, 60) == _usage(unstreamed)[:2]
    assert usage["cache_read_input_tokens"] == usage["cache_creation_input_tokens"] == 0


# --- stream_cache_read_zero -----------------------------------------------------------------------


def test_stream_cache_read_zero_hides_cache_reads_only_when_streamed(
    sim_factory: SimFactory,
) -> None:
    quirky = sim_factory(quirks=frozenset({"stream_cache_read_zero"}))
    params = _params(system=_cached_system())
    with make_client(quirky) as client:
        total = client.messages.count_tokens(
            model=M27, system=params["system"], messages=params["messages"]
        ).input_tokens
        first = client.messages.create(**params)
        events = _raw_events(client, **params)
        with client.messages.stream(**params) as stream:
            streamed = stream.get_final_message()
        again = client.messages.create(**params)
    written = first.usage.cache_creation_input_tokens
    assert written is not None
    assert written > 0
    assert _usage(first) == (total - written, 60, written, 0)
    # Unstreamed, the second call reads the whole prompt (cached passively by the first).
    assert _usage(again) == (0, 60, 0, total)
    # Streamed, the read is reported as 0, though input_tokens still leaves it out.
    assert _only(events, "message_start")["message"]["usage"] == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert _usage(streamed) == (0, 60, 0, 0)


def test_without_the_quirk_a_streamed_call_reports_its_cache_read(
    sim_factory: SimFactory,
) -> None:
    params = _params(system=_cached_system())
    with make_client(sim_factory()) as client:
        first = client.messages.create(**params).usage
        events = _raw_events(client, **params)
    assert first.cache_creation_input_tokens
    usage = _only(events, "message_start")["message"]["usage"]
    assert (
        usage["cache_read_input_tokens"] == first.input_tokens + first.cache_creation_input_tokens
    )
    assert usage["cache_creation_input_tokens"] == usage["input_tokens"] == 0


def test_quirks_together(sim_factory: SimFactory) -> None:
    quirks = frozenset({"start_without_signature", "usage_on_stop", "stream_cache_read_zero"})
    params = _params(system=_cached_system())
    with make_client(sim_factory(quirks=quirks)) as client:
        written = client.messages.create(**params).usage.cache_creation_input_tokens
        events = _raw_events(client, **params)
    assert written
    start = next(data for name, data in events if name == "content_block_start")
    assert "signature" not in start["content_block"]
    assert _only(events, "message_delta")["usage"] == {"output_tokens": 0}
    stop_usage = _only(events, "message_stop")["usage"]
    assert stop_usage["cache_read_input_tokens"] == 0
    assert stop_usage["output_tokens"] == 60


# --- prompt caching without quirks ---------------------------------------------------------------


def test_prompt_cache_write_then_read(sim_factory: SimFactory) -> None:
    params = _params(system=_cached_system())
    with make_client(sim_factory()) as client:
        total = client.messages.count_tokens(
            model=M27, system=params["system"], messages=params["messages"]
        ).input_tokens
        first = client.messages.create(**params)
        second = client.messages.create(**params)
    written = first.usage.cache_creation_input_tokens
    assert written is not None
    # The cached prefix is the request overhead and the system block; the user turn "Hi"
    # (3 tokens of message overhead + 1) comes after the mark.
    assert written == total - 4
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.input_tokens == 4
    assert first.usage.input_tokens < total
    # The first call also cached the whole prompt passively (it is over 512 tokens), so the
    # same prompt again reads all of it; the mark's prefix is already there, nothing is written.
    assert second.usage.cache_read_input_tokens == total
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == 0
    for message in (first, second):
        usage = message.usage
        assert (
            usage.input_tokens
            + (usage.cache_read_input_tokens or 0)
            + (usage.cache_creation_input_tokens or 0)
            == total
        )
    # The same seed and body give the same reply, cached or not.
    assert [block.model_dump() for block in first.content] == [
        block.model_dump() for block in second.content
    ]


def test_prompt_cache_is_a_prefix(sim_factory: SimFactory) -> None:
    with make_client(sim_factory()) as client:
        first = client.messages.create(**_params("Hi", system=_cached_system()))
        other_question = client.messages.create(
            **_params("What is a batch?", system=_cached_system())
        )
        other_system = client.messages.create(
            **_params("Hi", system=_cached_system(LONG_SYSTEM + " Be brief."))
        )
    written = first.usage.cache_creation_input_tokens
    assert written
    assert (
        other_question.usage.cache_read_input_tokens,
        other_question.usage.cache_creation_input_tokens,
    ) == (written + 3, 0)  # the system prompt and the user turn's role (3 tokens of overhead)
    assert other_question.usage.input_tokens == 5  # "What is a batch?"
    assert other_system.usage.cache_read_input_tokens == 0
    assert other_system.usage.cache_creation_input_tokens == written + 3  # " Be brief."


def test_without_cache_control_a_long_prompt_is_cached_passively(sim_factory: SimFactory) -> None:
    params = _params(system=[{"type": "text", "text": LONG_SYSTEM}])
    with make_client(sim_factory()) as client:
        total = client.messages.count_tokens(
            model=M27, system=params["system"], messages=params["messages"]
        ).input_tokens
        usages = [_usage(client.messages.create(**params)) for _ in range(2)]
    assert usages == [(total, 60, 0, 0), (0, 60, 0, total)]  # passive writes report no creation
    with make_client(sim_factory(passive_cache=False)) as client:
        usages = [_usage(client.messages.create(**params)) for _ in range(2)]
    assert usages == [(total, 60, 0, 0)] * 2


def test_streamed_prompt_cache_matches_unstreamed(sim_factory: SimFactory) -> None:
    params = _params(system=_cached_system())
    with make_client(sim_factory()) as client:
        with client.messages.stream(**params) as stream:
            first = stream.get_final_message()
        with client.messages.stream(**params) as stream:
            second = stream.get_final_message()
    written = first.usage.cache_creation_input_tokens
    assert written
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == written + first.usage.input_tokens  # all of it
    assert second.usage.cache_creation_input_tokens == second.usage.input_tokens == 0


def test_prompt_cache_is_per_model(sim_factory: SimFactory) -> None:
    with make_client(sim_factory()) as client:
        first = client.messages.create(**_params(system=_cached_system()))
        other = client.messages.create(**{**_params(system=_cached_system()), "model": M25})
    assert first.usage.cache_creation_input_tokens
    assert other.usage.cache_read_input_tokens == 0
    assert other.usage.cache_creation_input_tokens == first.usage.cache_creation_input_tokens

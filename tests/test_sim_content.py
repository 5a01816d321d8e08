"""What the simulator answers when MiniMax's field behaviour is switched on: reasoning leaked into
the text (contract C10), M3's empty replies (C11), and tools called under ``tool_choice`` auto.

Through the real SDK over HTTP; each behaviour streamed and not. A simulator with the rate at 0
and the same seed gives the clean twin of a reply, to compare with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import orjson
import pytest

from batchrun.sim import RunningSimulator, SimSettings, simulator_process
from tests.helpers import API_KEY, make_client, user

M3 = "MiniMax-M3"
M27 = "MiniMax-M2.7"

SimFactory = Callable[..., RunningSimulator]

LOOKUP_TOOL = {
    "name": "lookup",
    "description": "Look a word up",
    "input_schema": {
        "type": "object",
        "properties": {"word": {"type": "string"}},
        "required": ["word"],
    },
}
CLOCK_TOOL = {"name": "clock", "description": "The time", "input_schema": {"type": "object"}}


def _params(text: str = "What is a batch?", **extra: Any) -> dict[str, Any]:
    return {"model": M27, "max_tokens": 2000, "messages": user(text), **extra}


def _text_deltas(client: anthropic.Anthropic, **params: Any) -> tuple[list[str], list[Any]]:
    """The text_delta pieces of a streamed create, and all its events (as the SDK parses them)."""
    events = list(client.messages.create(stream=True, **params))
    pieces = [
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    ]
    return pieces, events


def _first_text(message: anthropic.types.Message) -> str:
    """The text of the reply's first block, which must be a text block."""
    block = message.content[0]
    assert isinstance(block, anthropic.types.TextBlock)
    return block.text


def _raw_body(client: anthropic.Anthropic, **params: Any) -> dict[str, Any]:
    """The JSON body of a non-streamed create, untouched by the SDK's models."""
    response = client.messages.with_raw_response.create(**params)
    body: dict[str, Any] = orjson.loads(response.http_response.content)
    return body


# --- reasoning leaked into the text (row 5, contract C10) --------------------------------------


def test_leaked_reasoning_is_text_with_think_tags_and_no_thinking_block(
    sim_factory: SimFactory,
) -> None:
    with make_client(sim_factory()) as client:
        clean = client.messages.create(**_params())
    with make_client(sim_factory(think_leak_rate=1.0)) as client:
        leaked = client.messages.create(**_params())
        pieces, events = _text_deltas(client, **_params())
        with client.messages.stream(**_params()) as stream:
            streamed = stream.get_final_message()

    thinking, answer = clean.content
    assert thinking.type == "thinking"
    assert answer.type == "text"
    expected = f"<think>{thinking.thinking}</think>\n\n{answer.text}"
    assert [block.type for block in leaked.content] == ["text"]
    assert leaked.content[0].type == "text"
    assert leaked.content[0].text == expected
    assert leaked.stop_reason == clean.stop_reason == "end_turn"
    # every piece is a token, the tags and the blank line included
    assert leaked.usage.output_tokens == clean.usage.output_tokens + 3
    # streamed: the same text as text_delta pieces, each tag one whole piece, no thinking block
    assert "".join(pieces) == expected
    assert pieces[0] == "<think>"
    assert "</think>" in pieces
    assert pieces[pieces.index("</think>") + 1] == "\n\n"
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["text"]
    assert not any(e.type == "content_block_delta" and e.delta.type != "text_delta" for e in events)
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.usage.output_tokens == len(pieces) == leaked.usage.output_tokens
    assert [block.type for block in streamed.content] == ["text"]
    assert streamed.content[0].type == "text"
    assert streamed.content[0].text == expected


def test_a_steered_answer_is_exactly_the_text_after_the_closing_tag(
    sim_factory: SimFactory,
) -> None:
    params = _params("6 times 7?\n#answer: 42")
    with make_client(sim_factory(think_leak_rate=1.0)) as client:
        message = client.messages.create(**params)
        with client.messages.stream(**params) as stream:
            streamed = stream.get_final_message()
    for reply in (message, streamed):
        text = _first_text(reply)
        assert text.startswith("<think>")
        reasoning, _, visible = text.partition("</think>")
        assert reasoning.removeprefix("<think>")
        assert visible == "\n\n42"


def test_reasoning_gives_way_so_the_answer_still_fits_in_max_tokens(
    sim_factory: SimFactory,
) -> None:
    """Whenever the clean twin's answer is complete, the leaked reply ends with the same answer
    and stop reason, within max_tokens: the three extra pieces come out of the reasoning."""
    answer = "the sum is 12"
    with make_client(sim_factory()) as plain, make_client(sim_factory(think_leak_rate=1)) as leaky:
        completed = squeezed_in = 0
        for max_tokens in range(8, 400, 9):
            params = _params(f"Add.\n#answer: {answer}", max_tokens=max_tokens)
            clean = plain.messages.create(**params)
            leaked = leaky.messages.create(**params)
            text = leaked.content[0]
            assert text.type == "text"
            assert leaked.usage.output_tokens <= max_tokens
            if clean.stop_reason == "end_turn":
                completed += 1
                assert text.text.endswith(f"</think>\n\n{answer}")
                assert leaked.stop_reason == "end_turn"
                squeezed_in += clean.usage.output_tokens + 3 > max_tokens
                assert leaked.usage.output_tokens == min(max_tokens, clean.usage.output_tokens + 3)
    assert completed > 10
    assert squeezed_in  # some leaked replies had to shorten their reasoning to keep the answer


def test_a_reply_cut_off_while_thinking_leaves_the_tag_open(sim_factory: SimFactory) -> None:
    params = _params(max_tokens=10)
    with make_client(sim_factory(think_leak_rate=1.0)) as client:
        message = client.messages.create(**params)
    text = message.content[0]
    assert text.type == "text"
    assert text.text.startswith("<think>")
    assert "</think>" not in text.text
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 10


def test_leak_rate_leaks_some_replies_the_same_ones_every_time(sim_factory: SimFactory) -> None:
    questions = [f"Question {n}?" for n in range(40)]

    def leaked(sim: RunningSimulator) -> list[bool]:
        with make_client(sim) as client:
            replies = [client.messages.create(**_params(q, max_tokens=50)) for q in questions]
        return [reply.content[0].type == "text" for reply in replies]

    first = leaked(sim_factory(think_leak_rate=0.5))
    assert 5 < sum(first) < 35
    assert leaked(sim_factory(think_leak_rate=0.5)) == first
    assert not any(leaked(sim_factory()))


def test_leaked_reasoning_comes_before_a_tool_call(sim_factory: SimFactory) -> None:
    params = _params(tools=[LOOKUP_TOOL], tool_choice={"type": "any"})
    with make_client(sim_factory(think_leak_rate=1.0)) as client:
        message = client.messages.create(**params)
    assert [block.type for block in message.content] == ["text", "tool_use"]
    text = message.content[0]
    assert text.type == "text"
    assert text.text.startswith("<think>")
    assert text.text.endswith("</think>")
    assert message.stop_reason == "tool_use"


# --- empty replies from MiniMax-M3 (row 6, contract C11) -----------------------------------------


def test_m3_without_thinking_answers_empty_streamed_and_not(sim_factory: SimFactory) -> None:
    params = _params(model=M3)
    with make_client(sim_factory(empty_reply_rate=1.0)) as client:
        body = _raw_body(client, **params)
        _, events = _text_deltas(client, **params)
    assert body["content"] is None
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["output_tokens"] == 1
    assert [e.type for e in events] == ["message_start", "message_delta", "message_stop"]
    delta = events[1]
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 1


def test_empty_replies_come_only_from_m3_without_thinking(sim_factory: SimFactory) -> None:
    with make_client(sim_factory(empty_reply_rate=1.0)) as client:
        m27 = _raw_body(client, **_params())
        thinking = _raw_body(client, **_params(model=M3, thinking={"type": "adaptive"}))
    assert [block["type"] for block in m27["content"]] == ["thinking", "text"]
    assert [block["type"] for block in thinking["content"]] == ["thinking", "text"]


def test_no_empty_replies_by_default(sim_factory: SimFactory) -> None:
    with make_client(sim_factory()) as client:
        body = _raw_body(client, **_params(model=M3))
    assert [block["type"] for block in body["content"]] == ["text"]


# --- tools called under tool_choice auto (row 16) ------------------------------------------------


@pytest.mark.parametrize("choice", [None, {"type": "auto"}])
def test_tool_call_rate_one_calls_a_tool_under_auto(
    sim_factory: SimFactory, choice: dict[str, str] | None
) -> None:
    extra: dict[str, Any] = {"tools": [LOOKUP_TOOL, CLOCK_TOOL]}
    if choice is not None:
        extra["tool_choice"] = choice
    names = set()
    with make_client(sim_factory(tool_call_rate=1.0)) as client:
        for n in range(8):
            params = _params(f"Question {n}?", **extra)
            message = client.messages.create(**params)
            with client.messages.stream(**params) as stream:
                streamed = stream.get_final_message()
            assert message.stop_reason == streamed.stop_reason == "tool_use"
            assert [b.type for b in message.content] == ["thinking", "tool_use"]
            tool = message.content[-1]
            assert tool.type == "tool_use"
            assert streamed.content[-1].model_dump(exclude={"parsed_output"}) == tool.model_dump()
            names.add(tool.name)
    assert names == {"lookup", "clock"}  # a seeded choice among the tools


def test_tool_call_rate_zero_or_tool_choice_none_never_calls(sim_factory: SimFactory) -> None:
    tools: dict[str, Any] = {"tools": [LOOKUP_TOOL]}
    with make_client(sim_factory()) as client:
        plain = [client.messages.create(**_params(f"Q{n}", **tools)) for n in range(5)]
    with make_client(sim_factory(tool_call_rate=1.0)) as client:
        refused = client.messages.create(**_params(tool_choice={"type": "none"}, **tools))
        no_tools = client.messages.create(**_params())
    for message in (*plain, refused, no_tools):
        assert message.stop_reason == "end_turn"
        assert message.content[-1].type == "text"


# --- the command line carries the settings -----------------------------------------------------


def test_simulator_process_takes_the_content_settings() -> None:
    settings = SimSettings(
        time_scale=0, seed=3, api_key=API_KEY, think_leak_rate=1.0, empty_reply_rate=1.0
    )
    with (
        simulator_process(settings) as sim,
        anthropic.Anthropic(base_url=sim.base_url, api_key=API_KEY, max_retries=0) as sdk,
    ):
        leaked = sdk.messages.create(**_params())
        empty = sdk.messages.with_raw_response.create(**_params(model=M3))
    assert leaked.content[0].type == "text"
    assert leaked.content[0].text.startswith("<think>")
    assert orjson.loads(empty.http_response.content)["content"] is None

"""The simulator's prompt cache as MiniMax describes it (row 7 of the field evidence): passive
caching of prompts from 512 tokens, matched by prefix in the order tools, system, messages;
explicit marks from about 600 tokens; entries living 5 minutes of simulated time; M3 reporting no
cache creation. Through the real SDK over HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anthropic

from batchrun.sim import RunningSimulator
from tests.helpers import make_client, user

M27 = "MiniMax-M2.7"
M3 = "MiniMax-M3"

SimFactory = Callable[..., RunningSimulator]
Usage = tuple[int, int, int]  # input, cache creation, cache read


def _words(count: int) -> str:
    """A text of exactly ``count`` tokens."""
    return " ".join(f"w{n % 97}" for n in range(count))


SYSTEM_600 = _words(600)


def _params(
    system: str | list[dict[str, Any]] = SYSTEM_600, text: str = "Hi", **extra: Any
) -> dict[str, Any]:
    return {"model": M27, "max_tokens": 20, "system": system, "messages": user(text), **extra}


def _marked(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]


def _usage(client: anthropic.Anthropic, params: dict[str, Any]) -> Usage:
    """The request's usage, checked to add up to what count_tokens says of its prompt."""
    usage = client.messages.create(**params).usage
    counted = {
        key: params[key] for key in ("model", "system", "messages", "tools") if key in params
    }
    total = client.messages.count_tokens(**counted).input_tokens
    result = (
        usage.input_tokens,
        usage.cache_creation_input_tokens or 0,
        usage.cache_read_input_tokens or 0,
    )
    assert sum(result) == total, f"{result} does not add up to {total}"
    return result


def _total(client: anthropic.Anthropic, params: dict[str, Any]) -> int:
    counted = {
        key: params[key] for key in ("model", "system", "messages", "tools") if key in params
    }
    return client.messages.count_tokens(**counted).input_tokens


# --- passive caching -----------------------------------------------------------------------------


def test_a_long_system_prompt_is_read_by_the_next_request(sim_factory: SimFactory) -> None:
    first, second = _params(text="Hi"), _params(text="What is a batch, in short?")
    with make_client(sim_factory()) as client:
        total = _total(client, first)
        assert _usage(client, first) == (total, 0, 0)  # a passive write reports no creation
        question = 8  # the tokens of the second question, the only new part of its prompt
        read = _total(client, second) - question
        assert _usage(client, second) == (question, 0, read)
        # streamed, message_start reports the same read
        events = list(client.messages.create(stream=True, **_params(text="Why?")))
    start = events[0]
    assert start.type == "message_start"
    assert start.message.usage.cache_read_input_tokens == read
    assert start.message.usage.input_tokens == 2  # "Why?"


def test_the_whole_prompt_is_read_when_it_comes_again(sim_factory: SimFactory) -> None:
    with make_client(sim_factory()) as client:
        total = _total(client, _params())
        assert [_usage(client, _params()) for _ in range(3)] == [
            (total, 0, 0),
            (0, 0, total),
            (0, 0, total),
        ]


def test_prompts_under_cache_min_tokens_are_never_cached(sim_factory: SimFactory) -> None:
    # 1 request + 3 message overhead + 1 ("Hi") around the system text
    just_under, just_enough = _params(_words(506)), _params(_words(507))
    with make_client(sim_factory()) as client:
        assert _total(client, just_under) == 511
        assert [_usage(client, just_under)[2] for _ in range(3)] == [0, 0, 0]
        assert [_usage(client, just_enough)[2] for _ in range(2)] == [0, 512]
    with make_client(sim_factory(cache_min_tokens=2000)) as client:
        assert [_usage(client, _params())[2] for _ in range(2)] == [0, 0]


def test_prefixes_run_tools_then_system_then_messages(sim_factory: SimFactory) -> None:
    tool = {"name": "lookup", "description": _words(600), "input_schema": {"type": "object"}}
    with make_client(sim_factory()) as client:
        _usage(client, _params(tools=[tool]))
        tools_only = _total(client, {"model": M27, "messages": user("x"), "tools": [tool]}) - 4
        # another system prompt after the same tools: the tools are read, the rest is new
        assert _usage(client, _params("Be kind.", tools=[tool]))[2] == tools_only
        # the same system prompt without the tools: nothing matches, the tools come first
        assert _usage(client, _params())[2] == 0


def test_a_cache_control_mark_does_not_change_the_prefix(sim_factory: SimFactory) -> None:
    with make_client(sim_factory()) as client:
        total = _total(client, _params())
        _usage(client, _params())
        assert _usage(client, _params(_marked(SYSTEM_600))) == (0, 0, total)


def test_no_passive_cache_turns_it_off(sim_factory: SimFactory) -> None:
    with make_client(sim_factory(passive_cache=False)) as client:
        total = _total(client, _params())
        assert [_usage(client, _params()) for _ in range(2)] == [(total, 0, 0)] * 2


def test_passive_cache_writes_can_be_reported_as_creation(sim_factory: SimFactory) -> None:
    with make_client(sim_factory(passive_cache_writes=True)) as client:
        total = _total(client, _params())
        assert [_usage(client, _params()) for _ in range(2)] == [(0, total, 0), (0, 0, total)]
        read = _total(client, _params()) - 1  # the same prompt up to a new question's text
        assert _usage(client, _params(text="Why?")) == (0, 2, read)


# --- lifetime in simulated time ------------------------------------------------------------------


def test_entries_expire_after_cache_ttl_of_simulated_time_and_hits_renew_them(
    sim_factory: SimFactory,
) -> None:
    # 1000 simulated seconds are 1 s of wall time at time scale 0.001
    sim = sim_factory(time_scale=0.001, cache_ttl=1000.0)
    with make_client(sim) as client:
        total = _total(client, _params())
        reads = [_usage(client, _params())[2]]
        for pause in (0.6, 0.6, 1.4):  # the second 0.6 passes the first write's expiry
            time.sleep(pause)
            reads.append(_usage(client, _params())[2])
    assert reads == [0, total, total, 0]


def test_at_time_scale_zero_entries_never_expire(sim_factory: SimFactory) -> None:
    with make_client(sim_factory(cache_ttl=0.001)) as client:
        _usage(client, _params())
        time.sleep(0.05)
        assert _usage(client, _params())[2] > 0


# --- explicit marks and MiniMax-M3 ----------------------------------------------------------------


def test_explicit_marks_below_cache_mark_min_tokens_do_nothing(sim_factory: SimFactory) -> None:
    short_mark, long_mark = _params(_marked(_words(550))), _params(_marked(SYSTEM_600))
    with make_client(sim_factory(passive_cache=False)) as client:
        total = _total(client, short_mark)
        assert [_usage(client, short_mark) for _ in range(2)] == [(total, 0, 0)] * 2
        marked = 1 + 600  # the request's overhead and the system block
        assert _usage(client, long_mark) == (4, marked, 0)
        assert _usage(client, long_mark) == (4, 0, marked)
    with make_client(sim_factory()) as client:
        # passively cached (over 512 tokens), but the mark writes nothing it could report
        assert [_usage(client, short_mark) for _ in range(2)] == [(total, 0, 0), (0, 0, total)]


def test_m3_ignores_marks_and_reports_no_cache_creation(sim_factory: SimFactory) -> None:
    m3 = {**_params(_marked(SYSTEM_600)), "model": M3}
    for settings in ({}, {"passive_cache_writes": True}):
        with make_client(sim_factory(**settings)) as client:
            total = _total(client, m3)
            assert [_usage(client, m3) for _ in range(2)] == [(total, 0, 0), (0, 0, total)]
            assert _usage(client, _params(_marked(SYSTEM_600)))[1] > 0  # M2.7 honours the mark
    with make_client(sim_factory(passive_only_models=frozenset())) as client:
        assert _usage(client, m3)[1] == 601


# --- bounded memory -------------------------------------------------------------------------------


def test_each_model_keeps_at_most_cache_max_entries(sim_factory: SimFactory) -> None:
    # each of these prompts keeps 3 prefixes: the system, the user turn's role, its text
    first, other = _params(), _params(_words(700))
    with make_client(sim_factory(cache_max_entries=3)) as client:
        for params in (first, other, first):
            assert _usage(client, params)[2] == 0  # the other prompt pushed the first one out
    with make_client(sim_factory(cache_max_entries=6)) as client:
        assert [_usage(client, params)[2] > 0 for params in (first, other, first)] == [
            False,
            False,
            True,
        ]

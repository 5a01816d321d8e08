"""batchrun's stream assembler gives exactly the final message the SDK's own accumulation gives.

Hundreds of seeded simulator streams per case (500 in the slow set, the first 120 by default):
thinking with signatures, tool_use built from input_json_delta, usage spread over several events,
and MiniMax's reported quirks. Where a quirk
makes the SDK's accumulation wrong (usage sent on message_stop), the truth is the same request
answered without streaming.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import anthropic
import anyio
import pytest

from batchrun.api.client import ApiClient
from batchrun.api.endpoint import Deadlines
from batchrun.sim import RunningSimulator
from tests.helpers import make_async_client
from tests.runharness import endpoint_for

SimFactory = Callable[..., RunningSimulator]
MODELS = ["MiniMax-M3", "MiniMax-M2.7", "MiniMax-M2.5-highspeed", "MiniMax-M2"]
TOOL = {
    "name": "lookup",
    "description": "Look a thing up",
    "input_schema": {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 20},
            "filters": {"type": "array", "items": {"enum": ["new", "old", "any"]}},
            "nested": {"type": "object", "properties": {"flag": {"type": "boolean"}}},
        },
        "required": ["query", "limit", "nested"],
    },
}


def random_request(rng: random.Random) -> dict[str, Any]:
    """A seeded mix of what job files contain."""
    model = rng.choice(MODELS)
    params: dict[str, Any] = {
        "max_tokens": rng.choice([1, 5, 40, 200, 600]),
        "messages": [{"role": "user", "content": f'Question {rng.random()} ünïcødé ✓ "quoted"'}],
    }
    if rng.random() < 0.3:
        # no cache_control: both calls of a pair must find the simulator's cache the same
        params["system"] = [{"type": "text", "text": "Be terse."}]
    if rng.random() < 0.3:
        params["tools"] = [TOOL]
        params["tool_choice"] = {"type": rng.choice(["any", "tool"]), "name": "lookup"}
        if params["tool_choice"]["type"] == "any":
            del params["tool_choice"]["name"]
        params["max_tokens"] = 2000
    if model == "MiniMax-M3" and rng.random() < 0.5:
        params["thinking"] = {"type": "adaptive"}
    return {"model": model, **params}


def comparable(message: dict[str, Any]) -> dict[str, Any]:
    """The parts of a message both must agree on, without fields that are None or SDK-only."""
    keep = ("id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage")
    return {key: _drop_none(message.get(key)) for key in keep}


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _drop_none(v) for k, v in value.items() if v is not None and k != "parsed_output"
        }
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


async def sdk_final(
    sdk: anthropic.AsyncAnthropic, request: dict[str, Any], stream: bool
) -> dict[str, Any]:
    if not stream:
        message = await sdk.messages.create(**request)
        return message.to_dict()
    async with sdk.messages.stream(**request) as events:
        final = await events.get_final_message()
    return final.to_dict()


async def compare_many(sim: RunningSimulator, count: int, seed: int, truth_streamed: bool) -> int:
    rng = random.Random(seed)
    requests = [random_request(rng) for _ in range(count)]
    ours_client = ApiClient(endpoint_for(sim), Deadlines(idle=20, total=60), max_connections=32)
    mismatches: list[str] = []
    limiter = anyio.CapacityLimiter(16)
    async with make_async_client(sim) as sdk:

        async def one(request: dict[str, Any]) -> None:
            async with limiter:
                params = {k: v for k, v in request.items() if k != "model"}
                ours = await ours_client.stream_message(request["model"], params)
                truth = await sdk_final(sdk, request, truth_streamed)
            if comparable(ours.message) != comparable(truth):
                mismatches.append(
                    f"{request}\nours:  {comparable(ours.message)}\ntruth: {comparable(truth)}"
                )

        async with anyio.create_task_group() as group:
            for request in requests:
                group.start_soon(one, request)
    await ours_client.aclose()
    assert not mismatches, f"{len(mismatches)} of {count} differ; first:\n{mismatches[0]}"
    return count


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("quirks", "truth_streamed"),
    [
        (frozenset(), True),
        (frozenset({"start_without_signature"}), True),
        (frozenset({"usage_on_stop"}), False),  # the SDK drops usage sent on message_stop
        (frozenset({"start_without_signature", "usage_on_stop"}), False),
    ],
    ids=["plain", "start-without-signature", "usage-on-stop", "both"],
)
# The default run compares the first 120 streams of each seed; the slow set all 500.
@pytest.mark.parametrize(
    "count", [120, pytest.param(500, marks=pytest.mark.slow)], ids=["120-streams", "500-streams"]
)
async def test_final_message_equals_the_sdks(
    sim_factory: SimFactory, quirks: frozenset[str], truth_streamed: bool, count: int
) -> None:
    sim = sim_factory(quirks=quirks, limits=False, seed=11)
    seed = len(quirks) * 7 + truth_streamed
    assert await compare_many(sim, count, seed=seed, truth_streamed=truth_streamed) == count


@pytest.mark.anyio
async def test_paced_streams_split_across_many_reads_assemble_the_same(
    sim_factory: SimFactory,
) -> None:
    # At a non-zero time scale every event arrives in its own read, often split mid-event.
    sim = sim_factory(time_scale=0.002, limits=False, seed=5)
    assert await compare_many(sim, 60, seed=99, truth_streamed=True) == 60

"""Shared fixtures: a real simulator on 127.0.0.1, and the real anthropic SDK pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import anthropic
import pytest

from batchrun.sim import RunningSimulator, SimSettings, simulator_thread

API_KEY = "sk-test-not-a-real-key"


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., RunningSimulator]]:
    """Start simulators with custom settings; each stops at the end of the test."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> RunningSimulator:
            settings = SimSettings(**{"time_scale": 0.0, "seed": 7, **overrides})
            return stack.enter_context(simulator_thread(settings))

        yield start


@pytest.fixture
def sim(sim_factory: Callable[..., RunningSimulator]) -> RunningSimulator:
    """A simulator at time scale 0 with seed 7, default limits and no faults."""
    return sim_factory()


def make_client(sim: RunningSimulator, **kwargs: Any) -> anthropic.Anthropic:
    """A synchronous SDK client for ``sim``, with the SDK's own retries off."""
    return anthropic.Anthropic(
        base_url=f"{sim.base_url}/anthropic", api_key=API_KEY, max_retries=0, **kwargs
    )


def make_async_client(sim: RunningSimulator, **kwargs: Any) -> anthropic.AsyncAnthropic:
    """An asynchronous SDK client for ``sim`` on the aiohttp transport, retries off."""
    return anthropic.AsyncAnthropic(
        base_url=f"{sim.base_url}/anthropic",
        api_key=API_KEY,
        max_retries=0,
        http_client=anthropic.DefaultAioHttpClient(),
        **kwargs,
    )


@pytest.fixture
def client(sim: RunningSimulator) -> Iterator[anthropic.Anthropic]:
    """The sync SDK against the default simulator."""
    with make_client(sim) as sdk:
        yield sdk


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the runner's backend)."""
    return "asyncio"


def user(text: str) -> list[dict[str, Any]]:
    """A one-message conversation."""
    return [{"role": "user", "content": text}]

"""Shared fixtures: a real simulator on 127.0.0.1, and the real anthropic SDK pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import anthropic
import pytest

from batchrun.sim import RunningSimulator, SimSettings, simulator_thread
from tests.helpers import make_client


@pytest.hookimpl(tryfirst=True)  # before -m 'not slow' deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``@pytest.mark.slow_on("postgres")``: the test's PostgreSQL variants are slow (a second
    run of what the SQLite variant shows, at several times its cost), the others stay default."""
    for item in items:
        marker = item.get_closest_marker("slow_on")
        callspec = getattr(item, "callspec", None)
        if marker is None or callspec is None:
            continue
        if set(marker.args) & {str(value) for value in callspec.params.values()}:
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture
def client(sim: RunningSimulator) -> Iterator[anthropic.Anthropic]:
    """The sync SDK against the default simulator."""
    with make_client(sim) as sdk:
        yield sdk


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the runner's backend)."""
    return "asyncio"

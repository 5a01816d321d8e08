"""A simulator over several processes on one port (``--processes``): what MiniMax would do still
holds across them: the rate limits, the prompt cache, the stats and the timing log; and every
worker ends with its parent, SIGKILL included. Real processes, real HTTP, the real SDK; each
request on a new connection, so that the kernel spreads them over the workers."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anthropic
import pytest

from batchrun.catalog import load_catalog
from batchrun.exceptions import SimulatorError
from batchrun.sim import RunningSimulator, SimSettings, simulator_process
from batchrun.sim.cli import settings_from_args
from batchrun.sim.core import SimulatorCore
from batchrun.sim.host import READY_PREFIX, settings_to_args, simulator_thread
from batchrun.sim.shared import Peer
from batchrun.sim.timing import read_timing_log
from tests.helpers import make_client, user
from tests.test_processes import descendants, kill_all, serves, wait_gone

M27 = "MiniMax-M2.7"
LONG = " ".join(f"word{i}" for i in range(700))  # over the passive cache's 512 tokens


def _ask(
    sim: RunningSimulator, text: str = "Hi", *, stream: bool = False
) -> anthropic.types.Message | anthropic.RateLimitError:
    """One request on a client (and connection) of its own; the reply or the 429."""
    with make_client(sim) as client:
        try:
            if stream:
                with client.messages.stream(
                    model=M27, max_tokens=20, messages=user(text)
                ) as answer:
                    return answer.get_final_message()
            return client.messages.create(model=M27, max_tokens=20, messages=user(text))
        except anthropic.RateLimitError as refused:
            return refused


def _spread(sim: RunningSimulator) -> list[int]:
    """Requests each worker counted."""
    workers: list[int] = sim.fetch_stats()["workers"]
    return workers


def test_requests_spread_over_the_workers_and_stats_add_up() -> None:
    with simulator_process(SimSettings(time_scale=0, processes=2)) as sim:
        replies = [_ask(sim, f"question {i}") for i in range(30)]
        stats = sim.fetch_stats()
        assert all(isinstance(r, anthropic.types.Message) for r in replies)
        assert stats["messages_total"] == 30
        assert stats["models"][M27]["ok"] == 30
        assert len(stats["workers"]) == 2
        assert min(stats["workers"]) > 0, f"one worker served nothing: {stats['workers']}"
        sim.reset_stats()
        assert sim.fetch_stats()["messages_total"] == 0


def test_a_model_limit_holds_across_the_workers() -> None:
    settings = SimSettings(time_scale=0, processes=2, rpm={M27: 12})
    with simulator_process(settings) as sim:
        replies = [_ask(sim, f"question {i}") for i in range(24)]
        passed = sum(isinstance(r, anthropic.types.Message) for r in replies)
        assert passed == 12, "the workers together admitted more or less than the limit"
        assert all(isinstance(r, anthropic.RateLimitError) for r in replies[12:])
        assert sim.fetch_stats()["models"][M27]["429"] == 12
        assert min(_spread(sim)) > 0


def test_the_prompt_cache_is_shared_by_the_workers() -> None:
    with simulator_process(SimSettings(time_scale=0, processes=2)) as sim:
        replies = [_ask(sim, LONG) for _ in range(12)]
        reads = [
            r.usage.cache_read_input_tokens
            for r in replies
            if isinstance(r, anthropic.types.Message)
        ]
        assert len(reads) == 12
        assert reads[0] == 0
        assert all(read and read > 500 for read in reads[1:]), reads
        assert min(_spread(sim)) > 0


def test_the_timing_log_has_every_stream_of_every_worker(tmp_path: Path) -> None:
    log = tmp_path / "timing.jsonl"
    settings = SimSettings(time_scale=0.01, processes=2, timing_log=log)
    with simulator_process(settings) as sim:
        replies = [_ask(sim, f"question {i}", stream=True) for i in range(16)]
        spread = _spread(sim)
        assert not log.exists(), "the log appeared before the simulator stopped"
    records = read_timing_log(log)
    ids = {r.id for r in replies if isinstance(r, anthropic.types.Message)}
    assert len(ids) == 16
    assert set(records) == ids
    assert all(r["last_byte"] >= r["first_token"] for r in records.values())
    assert min(spread) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timing.jsonl"]


def test_an_existing_timing_log_is_refused_before_any_worker_starts(tmp_path: Path) -> None:
    log = tmp_path / "timing.jsonl"
    log.write_text("kept\n")
    with (
        pytest.raises(SimulatorError, match="exists already"),
        simulator_process(SimSettings(processes=2, timing_log=log)),
    ):
        pass
    assert log.read_text() == "kept\n"


def test_each_worker_draws_its_own_repeatable_faults() -> None:
    catalog = load_catalog()
    settings = SimSettings(seed=3)

    def draws(core: SimulatorCore) -> list[int]:
        return [core.fault_point(1000) for _ in range(20)]

    lone = draws(SimulatorCore(settings, catalog))
    assert draws(SimulatorCore(settings, catalog, worker=0)) == lone
    second = draws(SimulatorCore(settings, catalog, worker=1))
    assert draws(SimulatorCore(settings, catalog, worker=1)) == second
    assert second != lone


def test_processes_below_one_are_refused() -> None:
    with pytest.raises(SimulatorError, match="processes"):
        SimSettings(processes=0)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_the_workers_end_with_their_parent(how: signal.Signals, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "batchrun.sim", "--port", "0", "--processes", "2"]
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # where the parent keeps its socket
    parent = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    workers: list[int] = []
    try:
        line = parent.stdout.readline() if parent.stdout else ""
        assert line.startswith(READY_PREFIX), line
        port = int(line.rsplit(":", 1)[1])
        workers = descendants(parent.pid)
        assert len(workers) >= 2
        assert serves(port)
        os.kill(parent.pid, how)
        parent.wait(timeout=20)
        assert wait_gone(workers) == [], f"a worker outlived its parent ({how.name})"
        assert not serves(port)
        # a parent that could clean up leaves nothing; one killed leaves its socket's folder
        assert len(list(tmp_path.iterdir())) == (1 if how == signal.SIGKILL else 0)
    finally:
        parent.kill()
        parent.wait(timeout=10)
        kill_all(workers)
        if parent.stdout is not None:
            parent.stdout.close()


def test_processes_pass_through_the_command_line() -> None:
    settings = SimSettings(processes=3, time_scale=0.5)
    assert settings_from_args(settings_to_args(settings)) == settings


def test_a_second_simulator_cannot_join_the_port_of_one_with_workers() -> None:
    with simulator_process(SimSettings(time_scale=0, processes=2)) as sim:
        port = int(sim.base_url.rsplit(":", 1)[1])
        with (
            pytest.raises(SimulatorError, match="cannot listen"),
            simulator_process(SimSettings(processes=2, port=port)),
        ):
            pass
        assert isinstance(_ask(sim), anthropic.types.Message)


def test_a_call_whose_handler_fails_raises_and_a_call_to_no_one_too() -> None:
    async def scenario() -> None:
        left, right = socket.socketpair()

        async def failing(message: dict[str, Any]) -> dict[str, Any] | None:
            raise KeyError(message["op"])

        async def none(message: dict[str, Any]) -> dict[str, Any] | None:
            return None

        caller = Peer(*await asyncio.open_connection(sock=left), none)
        answerer = Peer(*await asyncio.open_connection(sock=right), failing)
        reading = [asyncio.ensure_future(peer.run()) for peer in (caller, answerer)]
        with pytest.raises(SimulatorError, match="failed on admit: KeyError"):
            await asyncio.wait_for(caller.call("admit"), 10)  # answered, not left waiting
        answerer._writer.close()  # the other end goes
        await asyncio.wait_for(reading[0], 10)
        with pytest.raises(SimulatorError, match="has gone"):
            await asyncio.wait_for(caller.call("stats"), 10)
        for task in reading:
            task.cancel()
        await asyncio.gather(*reading, return_exceptions=True)

    asyncio.run(scenario())


def test_a_custom_catalog_object_is_refused_with_several_processes() -> None:
    with (
        pytest.raises(SimulatorError, match="runs as one process"),
        simulator_thread(SimSettings(processes=2), load_catalog()),
    ):
        pass

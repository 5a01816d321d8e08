"""batchrun estimate: counts from the simulator, output ranges, history, costs by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.api.client import ApiClient
from batchrun.api.endpoint import Deadlines
from batchrun.catalog import load_catalog
from batchrun.jobs import ReadOptions, read_jobs
from batchrun.plan.estimate import Estimate, estimate, planned_from_file
from batchrun.plan.precheck import TokenCounter
from batchrun.sim import RunningSimulator
from batchrun.sim.loop import run_fast
from tests.helpers import batchrun, make_client
from tests.runharness import endpoint_for, prompts, run_jobs, write_jobs

M27, M3 = "MiniMax-M2.7", "MiniMax-M3"


def estimate_file(
    sim: RunningSimulator, path: Path, models: list[str], history: dict[str, tuple[int, float]]
) -> Estimate:
    async def go() -> Estimate:
        client = ApiClient(endpoint_for(sim), Deadlines(), max_connections=16)
        try:
            lines = read_jobs(path, load_catalog(), ReadOptions(models=models))
            planned = planned_from_file(lines, models)
            return await estimate(planned, load_catalog(), TokenCounter(client), history)
        finally:
            await client.aclose()

    return run_fast(go())


def test_estimate_matches_the_simulators_counts_and_prices(
    tmp_path: Path, sim: RunningSimulator
) -> None:
    jobs = [
        {"custom_id": "a", "prompt": "How tall is the Eiffel tower?", "max_tokens": 100},
        {"custom_id": "b", "prompt": "Name three rivers.", "max_tokens": 300},
    ]
    path = write_jobs(tmp_path / "jobs.jsonl", jobs)
    found = estimate_file(sim, path, [M27, M3], {})
    with make_client(sim) as sdk:
        counts = [
            sdk.messages.count_tokens(
                model=M27, messages=[{"role": "user", "content": job["prompt"]}]
            ).input_tokens
            for job in jobs
        ]
    m27 = found.models[M27]
    assert m27.requests == 2
    assert m27.input_tokens == sum(counts)
    assert m27.estimated == 0
    assert m27.max_output_tokens == 400
    # input at 0.30 and up to 400 output tokens at 1.20 per million
    assert m27.cost_min_nanos == sum(counts) * 300
    assert m27.cost_max_nanos == sum(counts) * 300 + 400 * 1_200
    assert m27.expected_output_tokens is None
    assert m27.cost_expected_nanos is None
    total = found.total()
    assert total.requests == 4
    assert total.cost_max_nanos == m27.cost_max_nanos + found.models[M3].cost_max_nanos
    assert list(found.models) == [M3, M27]  # catalog order


def test_expected_output_comes_from_past_results(tmp_path: Path, sim: RunningSimulator) -> None:
    run = run_jobs(tmp_path, sim, prompts(6), [M27])
    history = run.store.output_history(simulated=True)
    count, mean = history[M27]
    assert count == 6
    assert mean == sum(row["output_tokens"] for row in run.results()) / 6
    path = write_jobs(tmp_path / "next.jsonl", [{"custom_id": "x", "prompt": "q", "max_tokens": 50},
                                                {"custom_id": "y", "prompt": "q2"}])  # fmt: skip
    found = estimate_file(sim, path, [M27], history)
    expected = min(50, round(mean)) + min(1024, round(mean))
    assert found.models[M27].expected_output_tokens == expected
    assert found.models[M27].history == 6
    assert found.models[M27].cost_expected_nanos is not None


def test_estimate_command_and_run_reuse_the_counts(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(4))
    shown = batchrun(tmp_path, "estimate", "jobs.jsonl", "--models", M27, "--sim-time-scale", "0")
    assert shown.returncode == 0, shown.stderr
    assert "Estimate for jobs.jsonl" in shown.stdout
    assert "0 - 4,096" in shown.stdout  # 4 requests x the default max_tokens of 1024
    run = batchrun(tmp_path, "run", "jobs.jsonl", "--models", M27, "--sim-time-scale", "0")
    assert run.returncode == 0, run.stderr
    assert "Estimate of the requests to send" in run.stdout


def test_counts_from_the_estimate_are_not_counted_again(
    tmp_path: Path, sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchrun.plan.estimate import planned_from_store
    from batchrun.plan.planner import PlanOptions, create_batch, file_digest
    from batchrun.store import Store, database_url
    from tests.runharness import Run, resume_run

    store = Store(database_url(str(tmp_path / "b.db")))
    path = write_jobs(tmp_path / "jobs.jsonl", prompts(5))
    plan = create_batch(
        store, load_catalog(), path, PlanOptions(models=[M27]), digest=file_digest(path),
        base_url=sim.base_url, simulated=True, settings={},
    )  # fmt: skip

    async def go() -> Estimate:
        client = ApiClient(endpoint_for(sim), Deadlines(), max_connections=16)
        try:
            planned = planned_from_store(store, plan.batch.id, [M27])
            counter = TokenCounter(client)
            return await estimate(planned, load_catalog(), counter, {}, keep=keep)
        finally:
            await client.aclose()

    slices: list[int] = []

    def keep(counts: list[tuple[int, int, bool]]) -> None:
        slices.append(len(counts))
        store.set_input_tokens(counts)

    # The counts are stored in slices as they come, not held to the end (a million stay small).
    monkeypatch.setattr("batchrun.plan.estimate.KEEP_EVERY", 2)
    found = run_fast(go())
    assert found.counts == []
    assert sum(slices) == 5
    assert max(slices) <= 2 + 16  # a slice, plus what the other counting workers added meanwhile
    assert len(slices) >= 2
    counted = sim.fetch_stats()["count_tokens_total"]
    assert counted == 5
    report, progress = resume_run(store, plan, sim)
    run = Run(store=store, plan=plan, report=report, progress=progress)
    assert sim.fetch_stats()["count_tokens_total"] == counted  # the runner reused them
    assert all(row["input_estimated"] is False for row in run.requests())
    assert len(run.results()) == 5

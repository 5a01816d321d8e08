"""--max-cost: spend never passes the cap, under concurrency and retries; resume raises it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from batchrun.run.budget import Budget
from batchrun.run.launch import LimitOptions
from batchrun.run.retry import RetryPolicy
from batchrun.sim import FaultRates, RunningSimulator
from tests.runharness import prompts, resume_run, run_jobs

SimFactory = Callable[..., RunningSimulator]
M27, M3 = "MiniMax-M2.7", "MiniMax-M3"
WIDE = LimitOptions(rpm={"*": 100_000}, tpm={"*": 10**12}, concurrency={"*": 64})


def _spent(rows: list[dict[str, object]]) -> int:
    return sum(int(str(row["cost_nanos"])) for row in rows)


def test_cap_holds_at_concurrency_64_with_retries_and_resume_finishes(
    tmp_path: Path, sim_factory: SimFactory
) -> None:
    sim = sim_factory(faults=FaultRates(overloaded=0.2, drop=0.05))
    cap = 20_000_000  # $0.02: room for about 16 worst cases of 1,024 output tokens
    run = run_jobs(
        tmp_path,
        sim,
        prompts(120),
        [M27, M3],
        limits=WIDE,
        retry=RetryPolicy(max_attempts=20, base_delay=0.01, max_delay=0.02),
        max_cost_nanos=cap,
    )
    results = run.results()
    assert run.report.budget_reached
    assert 0 < _spent(results) <= cap
    status = Counter(row["status"] for row in run.requests())
    assert status["pending"] > 0
    assert status["succeeded"] == len(results)
    assert status["errored"] == 0
    assert any(row["outcome"] == "retry" for row in run.attempts())  # retries happened

    report, _ = resume_run(run.store, run.plan, sim, limits=WIDE, max_cost_nanos=1_000_000_000)
    assert not report.budget_reached
    assert {row["status"] for row in run.requests()} == {"succeeded"}
    assert len(run.results()) == 240


def test_unpriced_model_is_not_sent_under_a_cap(tmp_path: Path, sim: RunningSimulator) -> None:
    # The user's price list for M2.7 on our date has no output price: M2.7 cannot be budgeted.
    override = tmp_path / "catalog.toml"
    override.write_text('[[models."MiniMax-M2.7".prices]]\neffective = 2026-11-22\ninput = 0.30\n')
    run = run_jobs(
        tmp_path, sim, prompts(3), [M27, M3], max_cost_nanos=10**9, catalog_file=override
    )
    status = Counter((row["model"], row["status"]) for row in run.requests())
    assert status == {(M3, "succeeded"): 3, (M27, "pending"): 3}
    assert "--max-cost" in run.report.stopped_models[M27]
    assert sim.fetch_stats()["models"].get(M27) is None  # nothing was sent for it


@pytest.mark.anyio
async def test_budget_waits_for_settlements_then_gives_up() -> None:
    budget = Budget(cap_nanos=100, spent_nanos=10)
    assert await budget.reserve(60)
    waiter_result: list[bool] = []

    async def waiter() -> None:
        waiter_result.append(await budget.reserve(50))

    async with anyio.create_task_group() as group:
        group.start_soon(waiter)
        await anyio.sleep(0.01)
        assert waiter_result == []  # 10 + 60 + 50 > 100: it waits for the first to settle
        budget.settle(60, 20)  # the first cost 20, not 60
    assert waiter_result == [True]  # 30 + 50 <= 100
    budget.settle(50, 50)
    assert budget.spent_nanos == 80
    assert not await budget.reserve(30)  # nothing in flight and 80 + 30 > 100
    assert budget.exhausted
    assert not await budget.reserve(1)  # spent stays spent


def test_amount_options_say_which_option_is_wrong() -> None:
    from batchrun.exceptions import ConfigError
    from batchrun.pricing import parse_usd

    assert parse_usd("2.50") == 2_500_000_000
    assert parse_usd("$0.01") == 10_000_000
    assert parse_usd("0", "--confirm-above", allow_zero=True) == 0
    with pytest.raises(ConfigError, match=r"--max-cost must be an amount in USD from 0\.000000001"):
        parse_usd("0")
    with pytest.raises(ConfigError, match="--confirm-above must be"):
        parse_usd("lots", "--confirm-above", allow_zero=True)

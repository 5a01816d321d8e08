"""Period budgets enforced: run and resume stop at what is left of the day's budget, warn past
its threshold, and store why the batch stopped (real processes over the simulator)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.run.budget import worker_cap
from batchrun.store import Store
from tests.helpers import batchrun, db_rows
from tests.runharness import prompts, write_jobs

M27, M3 = "MiniMax-M2.7", "MiniMax-M3"
FAST = ("--sim-time-scale", "0", "--max-tokens", "64", "--yes")


def _spent_today(tmp_path: Path) -> int:
    rows = db_rows(tmp_path / "batchrun.db", "select coalesce(sum(cost_nanos), 0) from results")
    return int(rows[0][0])


def _budgets(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "budgets.toml"
    path.write_text(text, encoding="utf-8")
    return {"BATCHRUN_BUDGETS": str(path)}


@pytest.mark.slow  # four processes, about a minute
def test_a_day_budget_caps_the_run_warns_and_is_stored_as_the_stop_reason(
    tmp_path: Path,
) -> None:
    write_jobs(tmp_path / "first.jsonl", prompts(10, model=M27))
    assert batchrun(tmp_path, "run", "first.jsonl", *FAST).returncode == 0
    first = _spent_today(tmp_path)
    assert first > 0
    usd = f"{first * 1.5 / 1e9:.9f}"  # half as much again is left today
    env = _budgets(tmp_path, f'warn_at = 0.5\n[[budget]]\nperiod = "day"\nusd = "{usd}"\n')
    write_jobs(tmp_path / "second.jsonl", prompts(40, model=M27))
    done = batchrun(tmp_path, "run", "second.jsonl", *FAST, env=env)
    said = " ".join(done.stdout.split())
    assert done.returncode == 1, done.stdout + done.stderr
    assert "past its warning threshold of 50%" in said
    assert "left this day; the run stops there" in said
    assert "Budget reached: the day budget" in said
    assert "batchrun resume" in said
    assert _spent_today(tmp_path) <= first * 1.5  # never past the budget
    assert db_rows(tmp_path / "batchrun.db", "select stop_reason from batches order by created_at")[
        -1
    ] == ("budget",)
    status = batchrun(tmp_path, "status", env=env)
    assert "last run: stopped at its budget" in " ".join(status.stdout.split())
    capped = _spent_today(tmp_path)
    again = batchrun(
        tmp_path, "resume", _latest_batch(tmp_path), "--sim-time-scale", "0", "--yes", env=env
    )
    assert "Budget reached: the day budget" in " ".join(again.stdout.split())
    assert _spent_today(tmp_path) <= first * 1.5
    assert _spent_today(tmp_path) - capped < first  # resume sent at most what was left


def _latest_batch(tmp_path: Path) -> str:
    store = Store(f"sqlite:///{tmp_path / 'batchrun.db'}")
    try:
        return store.list_batches()[0].name
    finally:
        store.close()


def test_a_model_budget_stops_that_model_alone_in_a_batch_of_several(tmp_path: Path) -> None:
    env = _budgets(tmp_path, f'[[budget]]\nperiod = "month"\nusd = "0.000000001"\nmodel = "{M3}"\n')
    write_jobs(tmp_path / "jobs.jsonl", prompts(3))
    done = batchrun(tmp_path, "run", "jobs.jsonl", "--models", f"{M27},{M3}", *FAST, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    said = " ".join(done.stdout.split())
    assert f"left this month; {M3} stops there, the other models go on" in said
    assert f"Stopped sending to {M3}: the month budget of $0.000000 for {M3} has no room" in said
    assert "3 requests are still pending. Continue with: batchrun resume" in said
    assert db_rows(tmp_path / "batchrun.db", "select stop_reason from batches") == [("budget",)]
    assert db_rows(
        tmp_path / "batchrun.db", "select model, status, count(*) from requests group by 1, 2"
    ) == [(M27, "succeeded", 3), (M3, "pending", 3)]
    status = " ".join(batchrun(tmp_path, "status", env=env).stdout.split())
    assert f"last run: stopped at its budget: {M3} at the month budget" in status


def test_a_model_budget_caps_a_batch_of_that_model_alone(tmp_path: Path) -> None:
    env = _budgets(tmp_path, f'[[budget]]\nperiod = "month"\nusd = "0.000000001"\nmodel = "{M3}"\n')
    write_jobs(tmp_path / "jobs.jsonl", prompts(3, model=M3))
    done = batchrun(tmp_path, "run", "jobs.jsonl", *FAST, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    said = " ".join(done.stdout.split())
    assert f"for {M3} has $0.000000 left this month; the run stops there" in said
    assert f"Budget reached: the month budget of $0.000000 for {M3} has no room" in said
    assert _spent_today(tmp_path) == 0


def test_a_worker_caps_a_batch_at_what_is_left_of_the_day_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_jobs(tmp_path / "first.jsonl", prompts(4, model=M27))
    assert batchrun(tmp_path, "run", "first.jsonl", *FAST).returncode == 0
    first = _spent_today(tmp_path)
    env = _budgets(tmp_path, f'[[budget]]\nperiod = "day"\nusd = "{first * 3 / 1e9:.9f}"\n')
    monkeypatch.setenv("BATCHRUN_BUDGETS", env["BATCHRUN_BUDGETS"])
    store = Store(f"sqlite:///{tmp_path / 'batchrun.db'}")
    try:
        batch = store.list_batches()[0]
        cap = worker_cap(store, batch, simulated=True)
        assert cap == store.batch_spend(batch.id) + first * 3 - first
        assert worker_cap(store, batch, simulated=False) == store.batch_spend(batch.id) + first * 3
    finally:
        store.close()

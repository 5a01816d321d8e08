"""A budget of one model in a batch of several caps that model alone: it stops at what is left of
its budget, its requests stay pending, the other models go on, the batch says which model
stopped and why, and resume sends the rest once there is room; the same for a team's worker.
And a soft threshold crossed during a run is said at that moment, once. (In process, over the
real simulator at time scale 0 and a real SQLite file or PostgreSQL.)"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from rich.console import Console

from batchrun.budgets import PeriodBudget
from batchrun.catalog import load_catalog
from batchrun.cli.budgets import say_crossed
from batchrun.cli.display import ProgressDisplay, progress_table
from batchrun.plan.planner import Plan, PlanOptions, create_batch, file_digest
from batchrun.run.budget import BudgetRoom, RunCap, SpendWatch
from batchrun.run.progress import BudgetWarning, ModelProgress, RunProgress
from batchrun.run.report import finish_batch
from batchrun.sim.host import RunningSimulator
from batchrun.store import Store
from tests.dbfixtures import postgres_server, postgres_url, sqlite_url, store, store_url
from tests.runharness import prompts, resume_run, run_jobs, write_jobs
from tests.test_teams import serve

__all__ = ["postgres_server", "postgres_url", "sqlite_url", "store", "store_url"]

M27, M3 = "MiniMax-M2.7", "MiniMax-M3"
SHORT = {"max_tokens": 64}  # the worst case close to what an answer costs


def _budgets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    path = tmp_path / "budgets.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("BATCHRUN_BUDGETS", str(path))


def _model_budget(usd: str, model: str = M3, warn_at: float = 0.8) -> str:
    return f'[[budget]]\nperiod = "day"\nusd = "{usd}"\nmodel = "{model}"\nwarn_at = {warn_at}\n'


def _spend(store: Store, model: str) -> int:
    return store.spend_since(0, True).get(model, 0)


def test_a_spent_model_budget_stops_that_model_only_and_resume_sends_the_rest(
    tmp_path: Path, sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    _budgets(tmp_path, monkeypatch, _model_budget("0.000000001"))
    run = run_jobs(tmp_path, sim, prompts(4, **SHORT), [M27, M3])
    assert run.store.status_counts(run.plan.batch.id) == {
        M27: {"succeeded": 4},
        M3: {"pending": 4},
    }
    assert list(run.report.budget_models) == [M3]
    assert f"the day budget of $0.000000 for {M3}" in run.report.stopped_models[M3]
    assert "the other models go on" in run.report.stopped_models[M3]
    finish_batch(run.store, run.plan.batch.id, run.report)  # as run and resume end
    batch = run.store.find_batch(run.plan.batch.id)
    assert (batch.status, batch.stop_reason) == ("paused", "budget")
    assert batch.settings["budget_models"] == {M3: f"the day budget of $0.000000 for {M3}"}

    _budgets(tmp_path, monkeypatch, _model_budget("100"))  # raised: room again
    report, _ = resume_run(run.store, run.plan, sim)
    assert report.budget_models == {}
    finish_batch(run.store, run.plan.batch.id, report)
    assert run.store.status_counts(run.plan.batch.id)[M3] == {"succeeded": 4}
    batch = run.store.find_batch(run.plan.batch.id)
    assert (batch.status, batch.stop_reason) == ("completed", "finished")
    assert batch.settings["budget_models"] == {}


def test_a_model_stops_at_what_is_left_of_its_budget_and_warns_once_as_it_crosses(
    tmp_path: Path,
    sim: RunningSimulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = run_jobs(tmp_path, sim, prompts(4, **SHORT), [M3])  # today's spend so far
    spent = _spend(first.store, M3)
    first.store.close()
    budget = f"{spent * 2 / 1e9:.9f}"  # as much again is left: room for about four more
    _budgets(tmp_path, monkeypatch, _model_budget(budget, warn_at=0.6))
    caplog.set_level(logging.WARNING, logger="batchrun.run.budget")
    run = run_jobs(tmp_path, sim, prompts(12, **SHORT), [M27, M3])
    counts = run.store.status_counts(run.plan.batch.id)
    assert counts[M27] == {"succeeded": 12}
    assert counts[M3]["pending"] > 0
    assert _spend(run.store, M3) <= spent * 2  # never past the budget
    assert list(run.report.budget_models) == [M3]
    crossed = [str(w) for w in run.progress.budget_warnings]
    assert len(crossed) == 1  # said once, when it happened
    assert crossed[0].startswith(f"the day budget of ${spent * 2 / 1e9:.6f} for {M3}:")
    assert "past its warning threshold of 60%" in crossed[0]
    assert [r.getMessage() for r in caplog.records].count(crossed[0]) == 1


def test_the_spend_watch_warns_of_each_budget_once_and_not_of_one_warned_before() -> None:
    day = PeriodBudget(period="day", cap_nanos=100, warn_at=0.5)
    month = PeriodBudget(period="month", cap_nanos=100, model=M3, warn_at=0.5)
    before = PeriodBudget(period="day", cap_nanos=10, warn_at=0.5)
    watch = SpendWatch(
        [
            BudgetRoom(budget=day, spent_nanos=40, enforced=True),
            BudgetRoom(budget=month, spent_nanos=0, enforced=False),
            BudgetRoom(budget=before, spent_nanos=9, enforced=True),  # warned before the run
        ]
    )
    assert watch.add(M27, 5) == []
    said = watch.add(M27, 5)
    assert [w.budget for w in said] == [day]  # the budget itself, not only words about it
    assert [str(w) for w in said] == [
        "the day budget of $0.000000 for all models: $0.000000 spent this day (50%), past its "
        "warning threshold of 50%"
    ]
    assert watch.add(M27, 50) == []  # not again
    assert watch.add(M3, 49) == []  # the M3 budget counts M3's spend only
    assert len(watch.add(M3, 1)) == 1


def _two_models(store: Store, tmp_path: Path, count: int) -> Plan:
    """A batch of ``count`` jobs to M2.7 and M3, submitted for workers."""
    path = write_jobs(tmp_path / "jobs.jsonl", prompts(count, **SHORT))
    plan = create_batch(
        store,
        load_catalog(),
        path,
        PlanOptions(models=[M27, M3]),
        digest=file_digest(path),
        base_url="http://127.0.0.1:9",
        simulated=True,
        settings={},
    )
    store.set_batch(plan.batch.id, settings={"workers": True}, status="queued")
    return plan


def test_a_worker_stops_a_model_at_its_budget_pauses_the_batch_and_goes_on_later(
    store: Store, tmp_path: Path, sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    _budgets(tmp_path, monkeypatch, _model_budget("0.000000001"))
    plan = _two_models(store, tmp_path, 3)
    report = serve(store, sim)
    assert report.refused == {}  # stopped at its budget, not refused: it goes on later
    assert store.status_counts(plan.batch.id) == {M27: {"succeeded": 3}, M3: {"pending": 3}}
    batch = store.find_batch(plan.batch.id)
    assert (batch.status, batch.stop_reason) == ("paused", "budget")
    assert list(batch.settings["budget_models"]) == [M3]

    _budgets(tmp_path, monkeypatch, _model_budget("100"))
    store.set_batch(plan.batch.id, status="queued")  # as `batchrun submit` queues it again
    serve(store, sim)
    assert store.status_counts(plan.batch.id)[M3] == {"succeeded": 3}
    assert store.find_batch(plan.batch.id).stop_reason == "finished"


DAY = PeriodBudget(period="day", cap_nanos=5_000_000_000)
TEXT = "the day budget of $5.00 for all models: $4.10 spent this day (82%), past its " + (
    "warning threshold of 80%"
)
WARNING = BudgetWarning(budget=DAY, text=TEXT)


def test_a_crossed_threshold_is_printed_at_once_off_a_terminal_and_only_once() -> None:
    buffer = io.StringIO()
    display = ProgressDisplay(Console(file=buffer, width=300))
    assert display.live is None  # not a terminal: plain lines
    progress = RunProgress(models={M3: ModelProgress(model=M3, total=3)})
    display(progress)
    progress.budget_warnings.append(WARNING)
    display(progress)  # within the plain line's five seconds: the warning is printed anyway
    display(progress)
    lines = buffer.getvalue().splitlines()
    assert lines.count(f"Warning: {TEXT}.") == 1
    assert len(lines) == 2  # one progress line, one warning


def test_the_live_table_shows_the_crossed_thresholds() -> None:
    progress = RunProgress(models={M3: ModelProgress(model=M3, total=3)})
    progress.budget_warnings.append(WARNING)
    buffer = io.StringIO()
    Console(file=buffer, width=300).print(progress_table(progress))
    assert f"Warning: {TEXT}." in " ".join(buffer.getvalue().split())  # wrapped to the table


def test_after_a_run_a_budget_warned_of_while_it_ran_is_not_said_again() -> None:
    """say_crossed knows the budgets the run warned of by the budget, whatever the words."""
    before = RunCap(cap_nanos=None, rooms=(BudgetRoom(budget=DAY, spent_nanos=0, enforced=True),),
                    binding=None)  # fmt: skip
    after = [BudgetRoom(budget=DAY, spent_nanos=4_100_000_000, enforced=True)]
    reworded = BudgetWarning(budget=DAY, text="worded another way")
    said = io.StringIO()
    say_crossed(Console(file=said, width=300), before, after, [reworded])
    assert said.getvalue() == ""
    say_crossed(Console(file=said, width=300), before, after, [])
    assert "past its warning threshold of 80%" in said.getvalue()  # not warned of: said now

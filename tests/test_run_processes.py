"""``batchrun run --processes N`` (issue 19): one batch sent by N processes, one store, one result
per request, the children ending with the run even when it is killed with SIGKILL."""

from __future__ import annotations

import contextlib
import logging
import signal
import sqlite3
import time
from pathlib import Path

import orjson
import pytest

from batchrun.api.endpoint import Deadlines
from batchrun.budgets import PeriodBudget
from batchrun.cli.processes import ChildCounts, report_line, settings_from, settings_spec
from batchrun.run.launch import LimitOptions
from batchrun.run.progress import BudgetWarning, ModelProgress, RunProgress
from batchrun.run.retry import RetryPolicy
from batchrun.run.settings import SendSettings
from tests.helpers import batchrun, db_rows
from tests.runharness import prompts, write_jobs
from tests.test_processes import batchrun_process, wait_gone

M27 = "MiniMax-M2.7"


def sender_pids(db: Path, want: int, timeout: float = 120) -> set[int]:
    """The pids of the senders the store has seen, once ``want`` of them are (or at the end)."""
    deadline, seen = time.monotonic() + timeout, set[int]()
    while time.monotonic() < deadline and len(seen) < want:
        with contextlib.suppress(sqlite3.OperationalError):  # not created yet
            seen |= {int(str(row[0])) for row in db_rows(db, "select pid from workers")}
        time.sleep(0.05)
    return seen


def answers(db: Path) -> list[tuple[object, ...]]:
    return sorted(db_rows(db, "select custom_id, model, text, output_tokens from results"))


def send_from(work: Path, args: tuple[str, ...], processes: int) -> None:
    """``batchrun ARGS --processes N`` in ``work``, paced so that it lasts until its children
    are up (one request per claim each); it ends well, and every process sent."""
    paced = ("--rpm", "90", "--concurrency", "3", "--processes", str(processes))
    with batchrun_process(work, *args, *paced) as (run, _):
        pids = sender_pids(work / "batchrun.db", processes)
        assert run.wait(timeout=180) == 0
    assert len(pids) == processes, pids
    assert run.pid in pids


def assert_sent_once(db: Path, count: int) -> None:
    """Every one of ``count`` requests has one result from one attempt; no sender is left."""
    assert db_rows(db, "select count(*), count(distinct request_id) from results") == [
        (count, count)
    ]
    assert db_rows(db, "select count(*) from attempts") == [(count,)]  # none sent twice
    assert db_rows(db, "select count(*) from workers") == [(0,)]  # every sender signed off


# the children's start-up (the SDK's import) takes 10-30 s on a busy machine
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_three_processes_send_every_request_once_with_the_same_answers(tmp_path: Path) -> None:
    alone, spread = tmp_path / "alone", tmp_path / "spread"
    for work in (alone, spread):
        work.mkdir()
        write_jobs(work / "jobs.jsonl", prompts(60))
    args = ("run", "jobs.jsonl", "--models", M27, "--sim-time-scale", "0", "--yes")
    send_from(spread, args, 3)
    done = batchrun(alone, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    db = spread / "batchrun.db"
    assert_sent_once(db, 60)
    assert answers(db) == answers(alone / "batchrun.db")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_of_the_run_ends_its_child_senders(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(400))
    args = ("run", "jobs.jsonl", "--models", M27, "--sim-time-scale", "1", "--yes")
    with batchrun_process(tmp_path, *args, "--processes", "2") as (run, children):
        pids = sender_pids(tmp_path / "batchrun.db", 2)
        assert len(pids) == 2, pids
        others = sorted(pids - {run.pid})
        children.extend(others)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
        assert wait_gone(others) == [], "a child sender outlived the run killed with SIGKILL"


@pytest.mark.slow  # the child's start-up, as above
@pytest.mark.timeout(300)
def test_resume_sends_from_several_processes_too(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(60))
    stored = ("submit", "jobs.jsonl", "--models", M27, "--name", "later", "--no-precheck")
    submitted = batchrun(tmp_path, *stored)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    send_from(tmp_path, ("resume", "later", "--sim-time-scale", "0", "--yes"), 2)
    assert_sent_once(tmp_path / "batchrun.db", 60)


def test_a_child_sender_is_handed_the_run_settings_unchanged() -> None:
    limits = LimitOptions(rpm={M27: 90}, tpm={}, concurrency={"*": 3}, account_tpm=1000)
    settings = SendSettings(
        limits=limits,
        retry=RetryPolicy(max_attempts=2, quota_wait=0.0),
        deadlines=Deadlines(idle=5.0),
        precheck=False,
        max_cost_nanos=7,
    )
    handed = orjson.loads(orjson.dumps(settings_spec(settings)))  # as the child's stdin holds it
    assert settings_from(handed) == settings


def test_the_run_shows_its_children_counters_with_its_own() -> None:
    mine = ModelProgress(model=M27, total=90, succeeded=10, output_tokens=100, spent_nanos=5)
    for _ in range(4):
        mine.finished()
    counts = ChildCounts()
    child = ModelProgress(model=M27, total=90, succeeded=20, output_tokens=300, throttled=2)
    for _ in range(6):
        child.finished()
    counts.latest[1] = orjson.loads(report_line(RunProgress(models={M27: child})))
    shown = counts.combined(RunProgress(models={M27: mine}))
    both = shown.of(M27)
    assert (both.succeeded, both.output_tokens, both.throttled) == (30, 400, 2)
    assert (both.spent_nanos, both.total, both.remaining) == (5, 90, 60)
    assert both.rate() == pytest.approx(1.0)  # 10 finished within the 10 s window
    assert mine.succeeded == 10  # the run's own counters are left as they were


def test_a_threshold_crossed_by_several_processes_is_shown_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    day = PeriodBudget(period="day", cap_nanos=100, warn_at=0.5)
    month = PeriodBudget(period="month", cap_nanos=900, model=M27)
    crossed = BudgetWarning(budget=day, text="the day budget: past its threshold")
    child = RunProgress(models={M27: ModelProgress(model=M27, total=9)}, budget_warnings=[crossed])
    counts = ChildCounts()
    counts.latest[1] = orjson.loads(report_line(child))  # as each child's output line holds it
    counts.latest[2] = orjson.loads(report_line(child))
    mine = RunProgress(models={M27: ModelProgress(model=M27, total=9)})
    caplog.set_level(logging.WARNING, logger="batchrun.cli.processes")
    for _ in range(3):  # the display is refreshed again and again
        shown = counts.combined(mine)
    assert shown.budget_warnings == [crossed]
    mine.budget_warnings.append(BudgetWarning(budget=day, text="the run's own words for it"))
    mine.budget_warnings.append(BudgetWarning(budget=month, text="the month budget"))
    assert [w.budget for w in counts.combined(mine).budget_warnings] == [day, month]
    said = [r.getMessage() for r in caplog.records]
    assert said == ["the day budget: past its threshold", "the month budget"]

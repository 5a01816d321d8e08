"""``batchrun grade`` as a user runs it: real processes, the built-in simulator, a SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from batchrun.sim import RunningSimulator
from tests.helpers import batchrun
from tests.runharness import run_jobs

M27, M3 = "MiniMax-M2.7", "MiniMax-M3"


def rows(path: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(query).fetchall()


@pytest.fixture
def ran(tmp_path: Path, sim: RunningSimulator) -> str:
    """A batch of graded jobs run on the simulator into tmp_path/batchrun.db; its name."""
    jobs = [
        {"id": "sum", "prompt": "2+2?\n#answer: 4", "expect": {"equals": 4}},
        {"id": "mc", "prompt": "Pick.\n#answer: (C)", "expect": {"choice": "B"}},
        {"id": "free", "prompt": "Say something."},
    ]
    run = run_jobs(tmp_path, sim, jobs, [M27, M3])
    run.store.set_batch(run.plan.batch.id, name="quiz", status="completed")
    run.store.close()
    return "quiz"


def test_grade_prints_pass_rates_and_stores_grades(tmp_path: Path, ran: str) -> None:
    done = batchrun(tmp_path, "grade", ran)
    assert done.returncode == 0, done.stderr
    assert "Graded 4 answers of batch quiz by their expect (2 without one)." in done.stdout
    assert "Quality of batch quiz" in done.stdout
    assert "50% (9%-91%)" in done.stdout  # 1 of 2 per model, Wilson 95%
    assert "judging cost $0.000000" in done.stdout
    db = tmp_path / "batchrun.db"
    assert sorted(rows(db, "SELECT grader, passed FROM grades")) == [
        ("expect", 0), ("expect", 0), ("expect", 1), ("expect", 1),
    ]  # fmt: skip
    attempts = rows(db, "SELECT count(*) FROM attempts")
    assert batchrun(tmp_path, "grade", ran).returncode == 0
    assert rows(db, "SELECT count(*) FROM grades") == [(4,)]
    assert rows(db, "SELECT count(*) FROM attempts") == attempts


def test_grade_with_a_judge(tmp_path: Path, ran: str) -> None:
    (tmp_path / "rubric.txt").write_text(
        'Be fair.\n#answer: {"score": 0.4, "reason": "half right"}\n', encoding="utf-8"
    )
    done = batchrun(
        tmp_path, "grade", ran, "--judge", M3, "--rubric", "rubric.txt", "--sim-time-scale", "0"
    )
    assert done.returncode == 0, done.stderr
    assert f"Judged 6 answers with {M3} in judge batch quiz.judge-{M3}." in done.stdout
    assert f"judge:{M3}" in done.stdout
    db = tmp_path / "batchrun.db"
    judged = rows(db, f"SELECT score, passed, reason FROM grades WHERE grader = 'judge:{M3}'")
    assert judged == [(0.4, 0, "half right")] * 6
    (spent,) = rows(db, "SELECT sum(judge_cost_nanos) FROM grades")[0]
    assert isinstance(spent, int)
    assert spent > 0
    listed = batchrun(tmp_path, "batches")
    assert f"quiz.judge-{M3}" in listed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--judge", M3], "--judge and --rubric go together"),
        (["--rubric", "rubric.txt"], "--judge and --rubric go together"),
        (["--judge", M3, "--rubric", "missing.txt"], "--rubric missing.txt: no such file"),
        (["--judge", M3, "--rubric", "empty.txt"], "--rubric empty.txt: the file is empty"),
        (["--judge", "MiniMax-M9", "--rubric", "rubric.txt"], "unknown model 'MiniMax-M9'"),
    ],
)
def test_grade_option_errors(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "rubric.txt").write_text("Be fair.", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    done = batchrun(tmp_path, "grade", "some-batch", *args)  # checked before the batch
    assert done.returncode == 2
    assert message in done.stderr


def test_grade_names_a_missing_batch(tmp_path: Path) -> None:
    done = batchrun(tmp_path, "grade", "nope")
    assert done.returncode == 2
    assert "nope" in done.stderr


def test_run_with_grade_grades_as_soon_as_the_batch_is_done(tmp_path: Path) -> None:
    graded = Path(__file__).resolve().parent.parent / "jobs" / "graded-sim.jsonl"
    done = batchrun(tmp_path, "run", str(graded), "--models", f"{M27},{M3}",
                    "--sim-time-scale", "0", "--name", "quiz", "--grade")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Graded 22 answers of batch quiz by their expect." in done.stdout
    assert "73% (43%-90%)" in done.stdout  # M2.7: 8 of 11 by the sample's markers
    assert "91% (62%-98%)" in done.stdout  # M3: 10 of 11
    assert rows(tmp_path / "batchrun.db", "SELECT count(*) FROM grades") == [(22,)]

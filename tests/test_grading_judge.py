"""Grading a run on the real simulator over HTTP: by expectations, and by a judge model that
goes through the same runner, limits, costs and store.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchrun.api.endpoint import Deadlines
from batchrun.catalog import load_catalog
from batchrun.grading.apply import grade_batch
from batchrun.grading.judge import (
    JudgeOptions,
    JudgeOutcome,
    JudgeReplyError,
    judge_grader,
    parse_judge_reply,
    question_of,
    run_judge,
)
from batchrun.run.launch import LimitOptions, limit_settings
from batchrun.run.retry import RetryPolicy
from batchrun.run.settings import RunSettings
from batchrun.sim import RunningSimulator
from batchrun.sim.generate import marked_answer
from batchrun.sim.loop import run_fast
from batchrun.store import BatchInfo, Store
from batchrun.store.tables import attempts, requests
from tests.helpers import API_KEY, user
from tests.runharness import Run, endpoint_for, run_jobs

M3, M27, M27S = "MiniMax-M3", "MiniMax-M2.7", "MiniMax-M2.7-highspeed"
JUDGE_SAYS = '#answer: Verdict: {"score": 0.8, "reason": "right, but wordy"} end'

JOBS: list[dict[str, Any]] = [
    {"id": "sum", "prompt": "2+2? Reply with the number.\n#answer: 4", "expect": {"equals": 4}},
    {
        "id": "wrong",
        "prompt": "3+3?\n#answer: 7\n#answer[MiniMax-M2.7]: six",
        "expect": {"equals": 6},
    },
    {
        "id": "json",
        "prompt": 'Extract.\n#answer: Sure, here: {"name": "Ada", "age": 36} and more.',
        "expect": {"json_schema": {"type": "object", "required": ["name", "age"]}},
    },
    {
        "id": "mc",
        "prompt": "Pick one.\n#answer: I think the answer is (B).",
        "expect": {"choice": "B", "regex": "ANSWER", "flags": "i"},
    },
    {"id": "free", "prompt": "Tell me about Paris."},
]


def judged(run: Run, sim: RunningSimulator, rubric: str, key: str = API_KEY) -> JudgeOutcome:
    catalog = load_catalog()
    options = JudgeOptions(
        model=M3,
        rubric=rubric,
        settings=RunSettings(
            limits=limit_settings(
                catalog,
                [M3],
                LimitOptions(rpm={"*": 100_000}, tpm={"*": 10**12}, concurrency={"*": 8}),
            ),
            retry=RetryPolicy(base_delay=0.01, max_delay=0.05),
            grace_seconds=1.0,
        ),
        deadlines=Deadlines(idle=10, total=30),
        max_tokens=256,
    )
    return run_fast(
        run_judge(
            store=run.store,
            catalog=catalog,
            batch=run.plan.batch,
            endpoint=endpoint_for(sim, key),
            options=options,
        )
    )


def count(store: Store, table: Any, batch: BatchInfo) -> int:
    with store.engine.connect() as connection:
        return len(connection.execute(table.select().where(table.c.batch_id == batch.id)).all())


def grades_by(run: Run, grader: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (row["custom_id"], row["model"]): row
        for row in run.store.grade_rows(run.plan.batch.id, grader)
    }


@pytest.fixture
def answered(tmp_path: Path, sim: RunningSimulator) -> Run:
    """The JOBS run on two models by the simulator, which answers each marked prompt."""
    return run_jobs(tmp_path, sim, JOBS, [M3, M27])


# ---------------------------------------------------------------- the simulator's marker


def test_the_simulator_answers_the_marked_text(answered: Run) -> None:
    texts = {(row["custom_id"], row["model"]): row["text"] for row in answered.results()}
    assert texts["sum", M3] == texts["sum", M27] == "4"
    assert texts["mc", M3] == "I think the answer is (B)."
    usage = {(r["custom_id"], r["model"]): r["output_tokens"] for r in answered.results()}
    assert usage["mc", M3] == 6  # one delta per word, as every simulated token
    assert "#answer" not in texts["free", M3]  # an unmarked prompt gets generated text
    assert texts["wrong", M3] == "7"
    assert texts["wrong", M27] == "six"  # its own marker


def test_marked_answer_reads_the_last_user_message_only() -> None:
    assert marked_answer({"messages": user("Q\n#answer:  B) Paris  \nmore")}) == "B) Paris"
    blocks = [{"type": "text", "text": "a"}, {"type": "text", "text": "#answer: 42"}]
    assert marked_answer({"messages": [{"role": "user", "content": blocks}]}) == "42"
    turns = [*user("#answer: old"), {"role": "assistant", "content": "x"}, *user("new")]
    assert marked_answer({"messages": turns}) is None
    assert marked_answer({"messages": user("#answer:   ")}) is None
    both = {"messages": user("#answer: 4\n#answer[MiniMax-M3]: 5\n#answer[MiniMax-M3]: 6")}
    assert marked_answer(both, M3) == "5"  # a model's own marker wins; the first one counts
    assert marked_answer(both, M27) == "4"
    assert marked_answer({"messages": user("#answer[MiniMax-M3]: 5")}, M27) is None


# ---------------------------------------------------------------- by expectations


def test_grading_uses_stored_answers_and_sends_nothing(answered: Run) -> None:
    batch = answered.plan.batch
    sent = count(answered.store, attempts, batch)
    first = grade_batch(answered.store, batch.id)
    assert (first.graded, first.skipped) == (8, 2)
    grades = grades_by(answered, "expect")
    assert {key: row["passed"] for key, row in grades.items()} == {
        (custom_id, model): custom_id != "wrong"
        for custom_id in ("sum", "wrong", "json", "mc")
        for model in (M3, M27)
    }
    assert grades["json", M3]["reason"] == "json_schema: valid JSON (embedded at character 13)"
    assert grades["wrong", M3]["reason"] == "equals: expected 6, got 7"
    assert grades["wrong", M27]["reason"] == "equals: expected the number 6 alone, got 'six'"
    again = grade_batch(answered.store, batch.id)
    assert again == first
    assert len(answered.store.grade_rows(batch.id)) == 8  # replaced, not added
    assert count(answered.store, attempts, batch) == sent  # regrading re-ran no answer


# ---------------------------------------------------------------- by a judge


def test_judge_grades_every_answer_through_the_runner(answered: Run, sim: RunningSimulator) -> None:
    batch = answered.plan.batch
    answers_cost = answered.store.batch_spend(batch.id)
    outcome = judged(answered, sim, f"Score the answer.\n{JUDGE_SAYS}")
    judge = outcome.judge_batch
    assert judge.status == "completed"
    assert judge.settings["judge_of"] == batch.id
    assert judge.name == f"{batch.name}.judge-{M3}"
    grades = grades_by(answered, judge_grader(M3))
    assert len(grades) == 10  # every answer, with or without an expect
    for row in grades.values():
        assert (row["score"], row["passed"], row["error"]) == (0.8, True, None)
        assert row["reason"] == "right, but wordy"
        assert row["judge_model"] == M3
        assert row["judge_cost_nanos"] > 0
    judge_results = {r["request_id"]: r for r in answered.store.result_rows(judge.id)}
    assert {row["judge_request_id"] for row in grades.values()} == set(judge_results)
    assert answered.store.judge_spend(batch.id) == sum(
        r["cost_nanos"] for r in judge_results.values()
    )
    assert answered.store.batch_spend(batch.id) == answers_cost  # kept apart from the answers
    # The judge saw each question and answer after the rubric.
    with answered.store.engine.connect() as connection:
        sent = connection.execute(requests.select().where(requests.c.batch_id == judge.id)).all()
    assert len(sent) == 10


def test_judging_again_continues_the_judge_batch_and_sends_nothing_new(
    answered: Run, sim: RunningSimulator
) -> None:
    first = judged(answered, sim, JUDGE_SAYS)
    calls = count(answered.store, attempts, first.judge_batch)
    second = judged(answered, sim, JUDGE_SAYS)
    assert second.judge_batch.id == first.judge_batch.id
    assert count(answered.store, attempts, first.judge_batch) == calls
    assert len(answered.store.grade_rows(answered.plan.batch.id)) == 10
    other = judged(answered, sim, JUDGE_SAYS + "\nBe strict.")  # a new rubric is a new batch
    assert other.judge_batch.id != first.judge_batch.id
    assert other.judge_batch.name == f"{answered.plan.batch.name}.judge-{M3}-2"


def test_an_unparseable_judge_reply_is_a_grade_error_not_a_crash(
    answered: Run, sim: RunningSimulator
) -> None:
    outcome = judged(answered, sim, "Score the answer from 0 to 1.")  # no marker: filler text
    assert len(outcome.grades) == 10
    for row in answered.store.grade_rows(answered.plan.batch.id, judge_grader(M3)):
        assert row["score"] is None
        assert row["passed"] is None
        assert row["error"].startswith("no score in the judge's reply: ")
        assert row["judge_cost_nanos"] > 0  # the call was made and paid for all the same


def test_a_refused_judge_call_is_a_grade_error(
    tmp_path: Path, sim_factory: Callable[..., RunningSimulator]
) -> None:
    sim = sim_factory(api_key=API_KEY)
    run = run_jobs(tmp_path, sim, JOBS[:2], [M27])
    outcome = judged(run, sim, JUDGE_SAYS, key="sk-wrong-key")
    assert M3 in outcome.report.stopped_models
    assert outcome.judge_batch.status == "paused"
    rows = run.store.grade_rows(run.plan.batch.id, judge_grader(M3))
    assert len(rows) == 2
    assert all(row["error"].startswith("the judge call has not finished") for row in rows)
    assert "sk-wrong-key" not in str(rows)


# ---------------------------------------------------------------- the reply parser


@pytest.mark.parametrize(
    ("reply", "score", "passed", "reason"),
    [
        ('{"score": 1, "reason": "exact"}', 1.0, True, "exact"),
        ('Here you go:\n```json\n{"score": 0.25, "reason": "off"}\n```', 0.25, False, "off"),
        ('{"score": "0.5"}', 0.5, True, '{"score": "0.5"}'),
        ('{"score": 7, "reason": "r"}', 0.7, True, "r"),
        ('{"score": 45, "reason": "r"}', 0.45, False, "r"),
        ('{"score": 0.9, "passed": false, "reason": "r"}', 0.9, False, "r"),
        ('{"score": 0.1, "pass": true, "reason": "r"}', 0.1, True, "r"),
        ("Score: 3/4\nThe answer misses one step.", 0.75, True, "Score: 3/4"),
        ("I would give it a score of 2 out of 10.", 0.2, False, "I would give it"),
        ("**Score** = 0.6", 0.6, True, "**Score** = 0.6"),
        ('{"score": 1, "reason": "caf\u00e9 \u2713"}', 1.0, True, "caf\u00e9 \u2713"),
    ],
)
def test_parse_judge_reply(reply: str, score: float, passed: bool, reason: str) -> None:
    verdict = parse_judge_reply(reply)
    assert verdict.score == pytest.approx(score)
    assert verdict.passed is passed
    assert verdict.reason.startswith(reason)


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        ("Looks good to me.", "no score in the judge's reply: 'Looks good to me.'"),
        ("", "no score"),
        ('{"score": true}', "not a number"),
        ('{"score": "high"}', "not a number"),
        ('{"score": -1}', "outside"),
        ('{"score": 250}', "outside"),
        ("score: 5/0", "outside"),
        ('{"verdict": "good"}', "no score"),
    ],
)
def test_parse_judge_reply_refuses(reply: str, words: str) -> None:
    with pytest.raises(JudgeReplyError) as caught:
        parse_judge_reply(reply)
    assert words in str(caught.value)


def test_question_of_takes_the_last_user_message() -> None:
    blocks = [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]
    assert question_of({"messages": [{"role": "user", "content": blocks}]}) == "a\nb"
    turns = [*user("first"), {"role": "assistant", "content": "x"}, *user("second")]
    assert question_of({"messages": turns}) == "second"


def test_the_simulator_demo_file_gives_each_model_its_own_pass_rate(
    tmp_path: Path, sim: RunningSimulator
) -> None:
    path = Path(__file__).parent.parent / "jobs" / "graded-sim.jsonl"
    jobs = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    run = run_jobs(tmp_path, sim, jobs, [M27, M27S, M3])
    grade_batch(run.store, run.plan.batch.id)
    passed: dict[str, int] = {}
    for row in run.store.grade_rows(run.plan.batch.id, "expect"):
        passed[row["model"]] = passed.get(row["model"], 0) + bool(row["passed"])
    assert passed == {M3: 10, M27: 8, M27S: 6}  # of 11, as the README's demo shows

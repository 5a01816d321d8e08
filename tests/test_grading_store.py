"""The grades table and its store methods, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

from batchrun.grading.apply import expect_grades, grade_batch
from batchrun.jobs import JobSpec
from batchrun.store import Outcome, Store
from tests.dbfixtures import postgres_server, postgres_url, sqlite_url, store, store_url

__all__ = ["postgres_server", "postgres_url", "sqlite_url", "store", "store_url"]

M3, M27 = "MiniMax-M3", "MiniMax-M2.7"


def job(line_no: int, custom_id: str, expect: dict[str, Any] | None) -> JobSpec:
    return JobSpec(
        line_no=line_no,
        custom_id=custom_id,
        params={"max_tokens": 64, "messages": [{"role": "user", "content": custom_id}]},
        model=None,
        invalid_for={},
        content_hash=f"{line_no:064x}",
        expect=expect,
    )


def answered(store: Store, answers: dict[tuple[str, str], str], cost: int | None = 1000) -> None:
    """A batch "b1" whose (custom_id, model) requests succeeded with these answers."""
    store.create_batch(
        {
            "id": "b1",
            "name": "graded",
            "source_path": "graded.jsonl",
            "source_sha256": "c" * 64,
            "models": [M3, M27],
            "status": "running",
            "simulated": True,
            "base_url": "http://127.0.0.1:9",
            "settings": {},
            "jobs_total": 0,
            "lines_invalid": 0,
        }
    )
    store.add_jobs(
        "b1",
        [
            job(1, "sum", {"equals": 4}),
            job(2, "city", {"contains": ["Paris"], "ignore_case": True}),
            job(3, "free", None),
        ],
        [M3, M27],
    )
    outcomes = []
    for model in (M3, M27):
        for item in store.pending("b1", model, 0, 100):
            text = answers.get((item.custom_id, model))
            if text is None:
                continue
            outcomes.append(
                Outcome(
                    request_id=item.request_id,
                    batch_id="b1",
                    model=model,
                    custom_id=item.custom_id,
                    status="succeeded",
                    result=_result(text, cost),
                )
            )
    store.record(outcomes)


def _result(text: str, cost: int | None) -> dict[str, Any]:
    return {
        "sent_at": 1_700_000_000.0,
        "first_event_s": 0.1,
        "first_token_s": 0.2,
        "first_text_s": 0.2,
        "last_token_s": 1.2,
        "done_s": 1.3,
        "input_tokens": 10,
        "output_tokens": 20,
        "cache_read_tokens": 0,
        "cache_creation_tokens": 0,
        "stop_reason": "end_turn",
        "text": text,
        "thinking": "",
        "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
        "cost_nanos": cost,
        "price_date": "2026-01-01",
        "simulated": True,
    }


ANSWERS = {
    ("sum", M3): "4",
    ("sum", M27): "five",
    ("city", M3): "It is PARIS.",
    ("city", M27): "Lyon",
    ("free", M3): "anything",
    ("free", M27): "anything",
}


def by_key(store: Store, grader: str | None = None) -> dict[tuple[str, str, str], Any]:
    return {
        (row["grader"], row["custom_id"], row["model"]): row
        for row in store.grade_rows("b1", grader)
    }


def test_migration_creates_the_grades_table(store_url: str, store: Store) -> None:
    engine = create_engine(store_url)
    try:
        columns = {column["name"] for column in inspect(engine).get_columns("grades")}
    finally:
        engine.dispose()
    assert {
        "request_id", "grader", "score", "passed", "reason", "error", "judge_model",
        "judge_cost_nanos", "graded_at", "batch_id",
    } <= columns  # fmt: skip


def test_grade_batch_grades_stored_answers_by_their_expect(store: Store) -> None:
    answered(store, ANSWERS)
    summary = grade_batch(store, "b1")
    assert (summary.graded, summary.skipped) == (4, 2)
    grades = by_key(store)
    assert set(grades) == {
        ("expect", custom_id, model) for custom_id in ("sum", "city") for model in (M3, M27)
    }
    assert grades["expect", "sum", M3]["passed"] is True
    assert grades["expect", "sum", M27]["passed"] is False
    assert grades["expect", "sum", M27]["reason"] == (
        "equals: expected the number 4 alone, got 'five'"
    )
    assert grades["expect", "city", M3]["score"] == 1.0
    assert grades["expect", "city", M27]["score"] == 0.0
    row = grades["expect", "sum", M3]
    assert row["cost_nanos"] == 1000  # the answer's cost comes along for the reports
    assert row["judge_cost_nanos"] is None
    assert row["error"] is None


def test_grading_again_replaces_the_same_graders_grades_only(store: Store) -> None:
    answered(store, ANSWERS)
    grade_batch(store, "b1")
    ids = {key: row["id"] for key, row in by_key(store).items()}
    request = by_key(store)["expect", "sum", M3]["request_id"]
    store.replace_grades(
        "b1",
        "judge:MiniMax-M3",
        [
            {
                "request_id": request,
                "score": 0.5,
                "passed": True,
                "reason": "ok",
                "judge_model": M3,
                "judge_cost_nanos": 77,
            }
        ],
    )
    grade_batch(store, "b1")
    again = by_key(store)
    assert len(again) == 5
    assert all(again[key]["id"] != ids[key] for key in ids)  # replaced, not added
    judged = again["judge:MiniMax-M3", "sum", M3]
    assert (judged["score"], judged["judge_cost_nanos"]) == (0.5, 77)
    assert store.judge_spend("b1") == 77
    assert len(store.grade_rows("b1", "expect")) == 4


def test_expect_grades_mark_an_unusable_stored_expectation_as_an_error() -> None:
    rows, skipped = expect_grades(
        [
            {"request_id": 1, "text": "x", "expect": {"regex": "("}},
            {"request_id": 2, "text": "x", "expect": None},
        ]
    )
    assert skipped == 1
    assert rows[0]["score"] is None
    assert rows[0]["error"].startswith("unusable expectation: expect.regex: invalid regular")


@pytest.mark.parametrize("cost", [None, 5])
def test_judge_spend_is_zero_without_judge_costs(store: Store, cost: int | None) -> None:
    answered(store, ANSWERS, cost=cost)
    grade_batch(store, "b1")
    assert store.judge_spend("b1") == 0
    assert store.batch_spend("b1") == (0 if cost is None else 6 * cost)

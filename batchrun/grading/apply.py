"""Grade a stored batch with its jobs' expectations: stored answers in, grade rows out.

Grading reads answers from the store and never sends anything, so grading again (after a
grader changes, say) costs nothing and replaces the earlier grades of the same grader.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from batchrun.grading.graders import grade
from batchrun.jobs.expect import ExpectationError, parse_expectation
from batchrun.store import Store

EXPECT_GRADER = "expect"


@dataclass(frozen=True, kw_only=True)
class GradingSummary:
    """What one grading pass did."""

    grader: str
    graded: int  # grade rows written
    skipped: int  # results without anything to grade them by


def expect_grades(rows: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Grade rows for results whose job has an ``expect``; and how many had none."""
    out: list[dict[str, Any]] = []
    skipped = 0
    for row in rows:
        raw = row.get("expect")
        if raw is None:
            skipped += 1
            continue
        try:
            expectation = parse_expectation(raw)
        except ExpectationError as exc:  # stored by an older batchrun that did not check it
            out.append(_error_row(row["request_id"], f"unusable expectation: {exc}"))
            continue
        verdict = grade(row.get("text") or "", expectation)
        out.append(
            {
                "request_id": row["request_id"],
                "score": verdict.score,
                "passed": verdict.passed,
                "reason": verdict.reason,
                "error": None,
            }
        )
    return out, skipped


def grade_batch(store: Store, batch_id: str) -> GradingSummary:
    """Grade every stored answer of a batch by its job's expectation (grader ``expect``)."""
    rows, skipped = expect_grades(store.grading_rows(batch_id))
    store.replace_grades(batch_id, EXPECT_GRADER, rows)
    return GradingSummary(grader=EXPECT_GRADER, graded=len(rows), skipped=skipped)


def _error_row(request_id: int, why: str) -> dict[str, Any]:
    return {"request_id": request_id, "score": None, "passed": None, "reason": why, "error": why}

"""The quality reports against hand-computed values."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from batchrun.grading.report import (
    cost_per_correct,
    disagreements,
    grades_frame,
    pass_rates,
    quality_frame,
    wilson_interval,
)

A, B, C = "model-a", "model-b", "model-c"


def row(model: str, custom_id: str, passed: bool | None, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "grader": "expect",
        "model": model,
        "custom_id": custom_id,
        "score": None if passed is None else float(passed),
        "passed": passed,
        "error": "no score" if passed is None else None,
        "first_token_s": 0.0,
        "first_text_s": 0.0,
        "last_token_s": 1.0,
        "done_s": 1.0,
        "output_tokens": 40,
        "cost_nanos": 100,
        "sent_at": 1.7e9,
    }
    return {**base, **extra}


def sample() -> pl.DataFrame:
    rows = [
        # A: 8 of 10 pass; output tps 40 / (0.5 i) = 80 / i for i = 1..10.
        *(row(A, f"q{i}", i <= 8, last_token_s=0.5 * i) for i in range(1, 11)),
        # B: 4 of 4 pass, one grade error (not counted), answers cost 300 each.
        *(row(B, f"q{i}", True, cost_nanos=300) for i in range(1, 5)),
        row(B, "q5", None, cost_nanos=300),
        # C: 0 of 5 pass, unpriced.
        *(row(C, f"q{i}", False, cost_nanos=None) for i in range(1, 6)),
        # A judge on A's first two answers: costs 7 and 9.
        row(A, "q1", True, grader="judge:J", score=0.9, judge_cost_nanos=7),
        row(A, "q2", False, grader="judge:J", score=0.2, judge_cost_nanos=9),
    ]
    return grades_frame(rows)


def by_model(frame: pl.DataFrame, grader: str = "expect") -> dict[str, dict[str, Any]]:
    return {r["model"]: r for r in frame.filter(pl.col("grader") == grader).iter_rows(named=True)}


def test_wilson_interval_matches_published_values() -> None:
    # Wilson score intervals at 95% (Newcombe 1998, table I; also any statistics package).
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 5) == pytest.approx((0.0, 0.4345), abs=1e-4)
    assert wilson_interval(4, 4) == pytest.approx((0.5101, 1.0), abs=1e-4)
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(0, 0) is None


def test_pass_rates_per_model_with_their_interval() -> None:
    rates = by_model(pass_rates(sample()))
    a, b, c = rates[A], rates[B], rates[C]
    assert (a["graded"], a["passed"], a["errors"]) == (10, 8, 0)
    assert a["pass_rate"] == pytest.approx(0.8)
    assert (a["ci_low"], a["ci_high"]) == pytest.approx(wilson_interval(8, 10))
    assert a["mean_score"] == pytest.approx(0.8)
    assert (b["graded"], b["passed"], b["errors"]) == (4, 4, 1)  # the error is left out
    assert b["pass_rate"] == 1.0
    assert (b["ci_low"], b["ci_high"]) == pytest.approx(wilson_interval(4, 4))
    assert (c["pass_rate"], c["ci_low"]) == (0.0, 0.0)
    assert c["ci_high"] == pytest.approx(0.4345, abs=1e-4)
    judge = by_model(pass_rates(sample()), "judge:J")[A]
    assert (judge["graded"], judge["passed"]) == (2, 1)
    assert judge["mean_score"] == pytest.approx(0.55)


def test_cost_per_correct_answer() -> None:
    costs = by_model(cost_per_correct(sample()))
    assert costs[A]["cost_nanos"] == 1000
    assert costs[A]["cost_per_correct_nanos"] == pytest.approx(125.0)  # 1000 / 8
    assert costs[B]["cost_nanos"] == 1200  # the errored grade's answer is not graded
    assert costs[B]["cost_per_correct_nanos"] == pytest.approx(300.0)
    assert costs[C]["cost_nanos"] is None  # unpriced, never $0
    assert costs[C]["unpriced"] == 5
    assert costs[C]["cost_per_correct_nanos"] is None  # none correct
    assert costs[A]["judge_cost_nanos"] is None
    judge = by_model(cost_per_correct(sample()), "judge:J")[A]
    assert judge["judge_cost_nanos"] == 16
    assert judge["cost_per_correct_nanos"] == pytest.approx(200.0)  # 2 answers at 100, 1 passed


def test_quality_frame_for_the_pareto_chart() -> None:
    quality = quality_frame(sample())
    assert quality.columns[:2] == ["grader", "model"]
    assert quality.height == 4
    a = by_model(quality)[A]
    # tps 80/i for i = 1..10: the median is the mean of 80/5 and 80/6.
    assert a["output_tps_p50"] == pytest.approx((16 + 80 / 6) / 2)
    assert a["cost_per_answer_nanos"] == pytest.approx(100.0)
    assert a["pass_rate"] == pytest.approx(0.8)
    assert a["cost_per_correct_nanos"] == pytest.approx(125.0)
    b = by_model(quality)[B]
    assert b["output_tps_p50"] == pytest.approx(40.0)
    assert b["cost_per_answer_nanos"] == pytest.approx(300.0)


def test_disagreements_list_the_jobs_models_split_on() -> None:
    found = disagreements(sample())
    rows = {(r["grader"], r["custom_id"]): r for r in found.iter_rows(named=True)}
    # q1..q4: A and B pass, C fails; q5: B has no grade, A passes, C fails; q6..q8: A alone.
    assert set(rows) == {("expect", f"q{i}") for i in range(1, 6)}
    assert rows["expect", "q1"]["passed_models"] == [A, B]
    assert rows["expect", "q1"]["failed_models"] == [C]
    assert rows["expect", "q5"]["passed_models"] == [A]


def test_empty_grades_give_empty_frames() -> None:
    empty = grades_frame([])
    assert pass_rates(empty).is_empty()
    assert quality_frame(empty).is_empty()
    assert disagreements(empty).is_empty()

"""Quality next to cost and speed: pure polars functions over grade rows from the store
(``Store.grade_rows``), one row per grader and model.

Definitions:
- graded: answers with a score; answers whose grader failed (an unparseable judge reply, a
  failed judge call) are counted in ``errors`` and left out of every rate;
- pass rate: passed / graded, with a Wilson score interval at 95% (z = 1.959964), which stays
  inside [0, 1] and is honest for small samples and rates near 0 or 1;
- cost per correct answer: the priced cost of the graded answers / the answers that passed
  (null when none passed or none is priced); the judge's cost is not in it, it is reported
  apart as ``judge_cost_nanos``;
- output tps: as in ``batchrun.analytics`` (output tokens / (last token - first token)); the
  median over the graded answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from batchrun.analytics import priced_sum, with_metrics

Z95 = 1.959963984540054

GRADE_SCHEMA: dict[str, Any] = {
    "request_id": pl.Int64,
    "grader": pl.String,
    "model": pl.String,
    "custom_id": pl.String,
    "score": pl.Float64,
    "passed": pl.Boolean,
    "reason": pl.String,
    "error": pl.String,
    "judge_model": pl.String,
    "judge_cost_nanos": pl.Int64,
    "sent_at": pl.Float64,
    "first_token_s": pl.Float64,
    "first_text_s": pl.Float64,
    "last_token_s": pl.Float64,
    "done_s": pl.Float64,
    "output_tokens": pl.Int64,
    "cost_nanos": pl.Int64,
}
_KEYS = ["grader", "model"]


def grades_frame(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Grade rows (as the store returns them) as a frame, with the speed metrics added."""
    frame = pl.DataFrame(
        [{key: row.get(key) for key in GRADE_SCHEMA} for row in rows], schema=GRADE_SCHEMA
    )
    return with_metrics(frame)


def wilson_interval(passed: int, total: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of ``passed`` successes out of ``total``; None for no trials."""
    if total <= 0:
        return None
    rate = passed / total
    z2 = z * z
    denominator = 1 + z2 / total
    center = (rate + z2 / (2 * total)) / denominator
    half = z / denominator * math.sqrt(rate * (1 - rate) / total + z2 / (4 * total * total))
    return max(0.0, center - half), min(1.0, center + half)


def _wilson(passed: pl.Expr, total: pl.Expr, z: float = Z95) -> tuple[pl.Expr, pl.Expr]:
    n = total.cast(pl.Float64)
    rate = passed / n
    z2 = z * z
    denominator = 1 + z2 / n
    center = (rate + z2 / (2 * n)) / denominator
    half = z / denominator * (rate * (1 - rate) / n + z2 / (4 * n * n)).sqrt()
    low = pl.when(n > 0).then(pl.max_horizontal(center - half, pl.lit(0.0)))
    high = pl.when(n > 0).then(pl.min_horizontal(center + half, pl.lit(1.0)))
    return low, high


def pass_rates(grades: pl.DataFrame) -> pl.DataFrame:
    """Per grader and model: graded, errors, passed, pass rate, its 95% interval, mean score."""
    graded = pl.col("score").is_not_null()
    stats = grades.group_by(_KEYS).agg(
        graded.sum().cast(pl.Int64).alias("graded"),
        pl.col("error").is_not_null().sum().cast(pl.Int64).alias("errors"),
        (graded & pl.col("passed")).sum().cast(pl.Int64).alias("passed"),
        pl.col("score").mean().alias("mean_score"),
    )
    low, high = _wilson(pl.col("passed"), pl.col("graded"))
    return stats.with_columns(
        pass_rate=pl.when(pl.col("graded") > 0).then(pl.col("passed") / pl.col("graded")),
        ci_low=low,
        ci_high=high,
    ).sort(_KEYS)


def cost_per_correct(grades: pl.DataFrame) -> pl.DataFrame:
    """Per grader and model: the graded answers' cost, the passed count, and cost per correct."""
    stats = (
        grades.filter(pl.col("score").is_not_null())
        .group_by(_KEYS)
        .agg(
            priced_sum(),
            pl.col("cost_nanos").is_null().sum().cast(pl.Int64).alias("unpriced"),
            pl.col("passed").sum().cast(pl.Int64).alias("passed"),
        )
    )
    judge = grades.group_by(_KEYS).agg(
        pl.when(pl.col("judge_cost_nanos").is_not_null().any())
        .then(pl.col("judge_cost_nanos").sum())
        .alias("judge_cost_nanos")
    )
    return (
        judge.join(stats, on=_KEYS, how="left")
        .with_columns(
            cost_per_correct_nanos=pl.when(pl.col("passed") > 0).then(
                pl.col("cost_nanos") / pl.col("passed")
            )
        )
        .select(
            *_KEYS, "cost_nanos", "unpriced", "passed", "cost_per_correct_nanos", "judge_cost_nanos"
        )
        .sort(_KEYS)
    )


def quality_frame(grades: pl.DataFrame) -> pl.DataFrame:
    """One row per grader and model for the Pareto chart: quality with its interval, cost per
    request and per correct answer, and median output tps.
    """
    rates = pass_rates(grades)
    costs = cost_per_correct(grades).drop("passed")
    speed = (
        grades.filter(pl.col("score").is_not_null())
        .group_by(_KEYS)
        .agg(
            pl.col("output_tps").median().alias("output_tps_p50"),
            pl.col("cost_nanos").mean().alias("cost_per_answer_nanos"),
        )
    )
    return rates.join(costs, on=_KEYS, how="left").join(speed, on=_KEYS, how="left").sort(_KEYS)


def disagreements(grades: pl.DataFrame) -> pl.DataFrame:
    """Jobs where the models disagree under one grader: some passed and some did not.

    One row per grader and custom_id, with the models that passed and those that failed.
    """
    graded = grades.filter(pl.col("passed").is_not_null())
    return (
        graded.group_by("grader", "custom_id")
        .agg(
            pl.col("model").filter(pl.col("passed")).sort().alias("passed_models"),
            pl.col("model").filter(~pl.col("passed")).sort().alias("failed_models"),
        )
        .filter((pl.col("passed_models").list.len() > 0) & (pl.col("failed_models").list.len() > 0))
        .sort("grader", "custom_id")
    )

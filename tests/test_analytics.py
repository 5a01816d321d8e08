"""analytics.py against figures worked out by hand on small frames."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import polars as pl
import pytest

from batchrun import analytics

DAY1 = 1_764_547_200.0  # 2025-12-01 00:00 UTC
HOUR = 3600.0
BATCHES = [
    {"id": "b1", "name": "first", "simulated": True, "max_cost_nanos": 10_000},
    {"id": "b2", "name": "second", "simulated": False, "max_cost_nanos": None},
]


def request(
    rid: int,
    model: str,
    status: str = "succeeded",
    *,
    batch: str = "b1",
    custom_id: str | None = None,
    attempts: int = 1,
    error: str | None = None,
) -> tuple[Any, ...]:
    return (rid, batch, custom_id or f"job-{rid}", model, status, attempts, error, None)


def result(
    rid: int,
    *,
    sent: float = DAY1,
    ttft: float = 1.0,
    text: float | None = None,
    last: float = 3.0,
    done: float = 4.0,
    out: int = 100,
    cost: int | None = 1000,
    flags: str | None = None,
    simulated: bool | None = None,  # None: as its batch
) -> tuple[Any, ...]:
    text_s = ttft if text is None else text
    cache = (None, None, None)  # expected cache tokens, uncached cost, cache-write cost
    figures = (10, out, 2, 1, cost, flags, *cache, simulated)
    return (rid, "unused", sent, ttft, text_s, last, done, *figures)


@pytest.fixture
def frame() -> pl.DataFrame:
    """Model A: four results (done 1..4 s), one retried; model B: one result, one error, one
    invalid, one pending, and one result without a price."""
    requests = [
        request(1, "A"),
        request(2, "A", attempts=3),
        request(3, "A"),
        request(4, "A"),
        request(5, "B"),
        request(6, "B", "errored", attempts=2, error="overloaded_error"),
        request(7, "B", "invalid", error="invalid_request_error"),
        request(8, "B", "pending", attempts=0),
        request(9, "B", batch="b2"),
    ]
    results = [
        result(1, done=1.0, last=0.9, ttft=0.4, text=0.5, out=50, cost=100),
        result(2, done=2.0, last=1.5, ttft=0.5, out=100, cost=200),
        result(3, done=3.0, last=2.5, ttft=0.5, out=200, cost=300),
        result(4, done=4.0, last=3.5, ttft=1.5, out=300, cost=400, sent=DAY1 + 25 * HOUR),
        result(5, done=2.0, last=1.0, ttft=0.5, out=40, cost=1000),
        result(9, done=1.0, last=0.5, ttft=0.5, out=10, cost=None, sent=DAY1 + HOUR),
    ]
    return analytics.requests_frame([requests], [results], BATCHES)


def by_model(table: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {row["model"]: row for row in table.iter_rows(named=True)}


def test_metric_columns_follow_their_definitions(frame: pl.DataFrame) -> None:
    first = frame.filter(pl.col("request_id") == 1).row(0, named=True)
    assert first["latency_s"] == 1.0
    assert first["ttft_s"] == 0.4
    assert first["ttft_text_s"] == 0.5
    assert first["output_tps"] == pytest.approx(50 / (0.9 - 0.4))  # MiniMax: after first token
    assert first["e2e_tps"] == pytest.approx(50 / 1.0)
    assert first["day"] == date(2025, 12, 1)
    assert first["batch_name"] == "first"
    assert first["simulated"] is True
    retried = frame.filter(pl.col("request_id") == 2).row(0, named=True)
    assert retried["retries"] == 2
    pending = frame.filter(pl.col("request_id") == 8).row(0, named=True)
    assert pending["retries"] == 0
    assert pending["latency_s"] is None


def test_model_metrics_counts_rates_and_percentiles(frame: pl.DataFrame) -> None:
    rows = by_model(analytics.model_metrics(frame))
    a, b = rows["A"], rows["B"]
    assert (a["requests"], a["succeeded"], a["retries"]) == (4, 4, 2)
    # Linear interpolation over 1, 2, 3, 4 s: p50 = 2.5, p90 = 1 + 0.9 * 3, p99 = 1 + 0.99 * 3.
    assert a["latency_p50"] == pytest.approx(2.5)
    assert a["latency_p90"] == pytest.approx(3.7)
    assert a["latency_p99"] == pytest.approx(3.97)
    assert a["ttft_p50"] == pytest.approx(0.5)
    assert a["error_rate"] == 0.0
    assert (b["requests"], b["succeeded"], b["errored"], b["invalid"], b["pending"]) == (
        5,
        2,
        1,
        1,
        1,
    )
    assert b["error_rate"] == pytest.approx(2 / 4)  # pending is not finished
    assert b["retries"] == 1


def test_summary_from_results_and_status_counts() -> None:
    results = [result(1, done=1.0), result(2, done=2.0), result(3, done=3.0), result(5, cost=None)]
    pages = [[(r[0], m, *r[2:]) for r, m in zip(results, "AAAB", strict=True)]]
    counts = {"A": {"succeeded": 3, "pending": 5}, "B": {"succeeded": 1, "errored": 1}}
    rows = by_model(analytics.summary_frame(pages, counts, {"A": 2}, False))
    assert (rows["A"]["retries"], rows["B"]["retries"]) == (2, 0)
    assert not rows["A"]["simulated"]
    assert (rows["A"]["requests"], rows["A"]["pending"], rows["A"]["succeeded"]) == (8, 5, 3)
    assert rows["A"]["latency_p50"] == pytest.approx(2.0)
    assert rows["A"]["success_rate"] == pytest.approx(3 / 8)
    assert rows["A"]["error_rate"] == 0.0
    assert rows["B"]["error_rate"] == pytest.approx(0.5)
    assert rows["B"]["cost_nanos"] is None
    assert rows["B"]["unpriced"] == 1


def test_cost_figures_leave_unpriced_results_out_and_say_so(frame: pl.DataFrame) -> None:
    rows = by_model(analytics.model_metrics(frame))
    a, b = rows["A"], rows["B"]
    assert a["cost_nanos"] == 1000
    assert a["unpriced"] == 0
    assert a["cost_per_1k_nanos"] == pytest.approx(1000 / 4 * 1000)
    assert a["cost_per_m_output_nanos"] == pytest.approx(1000 / 650 * 1_000_000)
    assert b["cost_nanos"] == 1000  # request 9 has no price: not added as 0, counted
    assert b["unpriced"] == 1
    assert b["cost_per_1k_nanos"] == pytest.approx(1000 * 1000)  # over the priced result only
    assert b["cost_per_m_output_nanos"] == pytest.approx(1000 / 40 * 1_000_000)
    only_unpriced = analytics.model_metrics(frame.filter(pl.col("request_id") == 9))
    assert only_unpriced.row(0, named=True)["cost_nanos"] is None
    assert only_unpriced.row(0, named=True)["cost_per_1k_nanos"] is None


def test_metrics_per_batch_and_per_day(frame: pl.DataFrame) -> None:
    per_batch = analytics.model_metrics(frame, by=("batch_name", "model"))
    assert per_batch.select("batch_name", "model", "requests").rows() == [
        ("first", "A", 4),
        ("first", "B", 4),
        ("second", "B", 1),
    ]
    per_day = analytics.model_metrics(frame.filter(pl.col("model") == "A"), by=("day", "model"))
    assert per_day.select("day", "requests", "cost_nanos").rows() == [
        (date(2025, 12, 1), 3, 600),
        (date(2025, 12, 2), 1, 400),
    ]


def test_error_breakdown_shares_are_of_finished_requests(frame: pl.DataFrame) -> None:
    table = analytics.error_breakdown(frame)
    assert table.select("model", "error_type", "requests", "finished").rows() == [
        ("B", "invalid_request_error", 1, 4),
        ("B", "overloaded_error", 1, 4),
    ]
    assert table.get_column("share").to_list() == [0.25, 0.25]


def test_distribution_gives_box_figures(frame: pl.DataFrame) -> None:
    box = analytics.distribution(frame, "latency_s").row(0, named=True)
    assert box["model"] == "A"
    assert box["p25"] == pytest.approx(1.75)
    assert box["p50"] == pytest.approx(2.5)
    assert box["p75"] == pytest.approx(3.25)
    assert box["mean"] == pytest.approx(2.5)
    assert box["count"] == 4


def test_spend_over_time_per_hour_and_day_with_running_totals(frame: pl.DataFrame) -> None:
    daily = analytics.spend_over_time(frame, "day")
    assert daily.select("period", "model", "cost_nanos", "unpriced", "cumulative_nanos").rows() == [
        (date(2025, 12, 1), "A", 600, 0, 600),
        (date(2025, 12, 1), "B", 1000, 1, 1000),
        (date(2025, 12, 2), "A", 400, 0, 1000),
    ]
    hourly = analytics.spend_over_time(frame.filter(pl.col("model") == "B"), "hour")
    assert hourly.select("period", "cost_nanos", "unpriced").rows() == [
        (datetime(2025, 12, 1, 0), 1000, 0),
        (datetime(2025, 12, 1, 1), None, 1),  # all unpriced: null, never $0
    ]


def test_spend_by_batch_counts_only_results(frame: pl.DataFrame) -> None:
    table = analytics.spend(frame, "batch")
    assert table.select("batch", "requests", "cost_nanos", "unpriced", "simulated").rows() == [
        ("second", 1, None, 1, False),  # real rows first, never added to simulated ones
        ("first", 5, 2000, 0, True),
    ]


def test_budget_use_of_capped_batches(frame: pl.DataFrame) -> None:
    table = analytics.budget_use(BATCHES, frame)
    assert table.select("batch", "cap_nanos", "cost_nanos", "used").rows() == [
        ("first", 10_000, 2000, 0.2),
    ]


def test_estimate_against_actual(frame: pl.DataFrame) -> None:
    estimates = {
        "A": {
            "requests": 4,
            "input_tokens": 44,
            "cost_min_nanos": 10,
            "cost_expected_nanos": 500,
            "cost_max_nanos": 5000,
        }
    }
    table = analytics.estimate_vs_actual(estimates, analytics.model_metrics(frame))
    row = table.row(0, named=True)
    assert row["actual_results"] == 4
    assert row["actual_input_tokens"] == 40
    assert row["actual_cost_nanos"] == 1000
    assert row["actual_over_expected"] == pytest.approx(2.0)


def test_job_spread_finds_failures_and_length_differences() -> None:
    requests = [
        request(1, "A", custom_id="same"),
        request(2, "B", custom_id="same"),
        request(3, "A", custom_id="apart"),
        request(4, "B", custom_id="apart"),
        request(5, "A", custom_id="failed"),
        request(6, "B", "errored", custom_id="failed", error="api_error"),
    ]
    results = [
        result(1, out=100),
        result(2, out=100),
        result(3, out=400),
        result(4, out=100),
        result(5, out=50),
    ]
    spread = analytics.job_spread(analytics.requests_frame([requests], [results], BATCHES))
    rows = {r["custom_id"]: r for r in spread.iter_rows(named=True)}
    assert rows["same"]["length_spread"] == 0.0
    assert rows["apart"]["length_spread"] == pytest.approx(0.75)
    assert rows["failed"]["failed_models"] == 1
    assert rows["failed"]["length_spread"] == 0.0  # one answer: nothing to differ from


def test_an_empty_store_gives_empty_tables() -> None:
    empty = analytics.requests_frame([], [], [])
    assert analytics.model_metrics(empty).is_empty()
    assert analytics.spend_over_time(empty, "day").is_empty()
    assert analytics.job_spread(empty).is_empty()

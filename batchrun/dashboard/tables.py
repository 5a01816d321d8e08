"""Frames from ``batchrun.analytics`` made readable: dollars, seconds and percentages, with each
column's definition as its tooltip (and listed under the table by the pages)."""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from batchrun.analytics import DEFINITIONS
from batchrun.dashboard.text import literal, shown
from batchrun.pricing import usd

# (metrics column, shown as, definition key or None, format)
METRIC_COLUMNS: tuple[tuple[str, str, str | None, str], ...] = (
    ("requests", "requests", None, "%d"),
    ("succeeded", "succeeded", None, "%d"),
    ("error_rate", "error rate", "error rate", "percent"),
    ("retries", "retries", "retries", "%d"),
    ("think_leaked", "think leaked", "think leaked", "%d"),
    ("empty_replies", "empty replies", "empty replies", "%d"),
    ("latency_n", "latency n", "n", "%d"),
    ("latency_p50", "latency p50 (s)", "latency", "%.2f"),
    ("latency_p90", "latency p90 (s)", "latency", "%.2f"),
    ("latency_p99", "latency p99 (s)", "latency", "%.2f"),
    ("ttft_n", "TTFT n", "n", "%d"),
    ("ttft_p50", "TTFT p50 (s)", "TTFT", "%.2f"),
    ("ttft_p90", "TTFT p90 (s)", "TTFT", "%.2f"),
    ("ttft_p99", "TTFT p99 (s)", "TTFT", "%.2f"),
    ("ttft_text_n", "TTFT text n", "n", "%d"),
    ("ttft_text_p50", "TTFT text p50 (s)", "TTFT (text)", "%.2f"),
    ("ttft_text_p90", "TTFT text p90 (s)", "TTFT (text)", "%.2f"),
    ("output_tps_n", "output tps n", "n", "%d"),
    ("output_tps_p50", "output tps p50", "output tps", "%.1f"),
    ("output_tps_p10", "output tps p10 (slow tail)", "output tps slow tail", "%.1f"),
    ("output_tps_p1", "output tps p1 (slow tail)", "output tps slow tail", "%.1f"),
    ("e2e_tps_n", "end-to-end tps n", "n", "%d"),
    ("e2e_tps_p50", "end-to-end tps p50", "end-to-end tps", "%.1f"),
    ("input_tokens", "input tokens", None, "%d"),
    ("output_tokens", "output tokens", None, "%d"),
    ("cache_read_tokens", "cache read tokens", None, "%d"),
    ("cache_creation_tokens", "cache write tokens", None, "%d"),
)


def money(nanos: float | None, unpriced: int = 0) -> str:
    """A cost for people (nano-dollars, rounded): never $0 for unpriced results, which are
    counted beside it."""
    if nanos is None:
        return f"unpriced ({unpriced:,})" if unpriced else "unpriced"
    return usd(round(nanos)) + (f" + {unpriced:,} unpriced" if unpriced else "")


NO_REAL = "none"
NO_REAL_NOTE = "Nothing was sent to MiniMax: every result here is simulated (its cost is apart)."


def spend_metric(where: Any, value: str | None, help: str) -> None:
    """The "Spend" headline in ``where`` (a column): the real spend, or, with none, a short
    "none" and why beneath it. A long value is cut to "none: nothing..." in a narrow column,
    and a headline is never cut."""
    where.metric("Spend", value or NO_REAL, help=help)
    if value is None:
        where.caption(NO_REAL_NOTE)


def share(value: float | None) -> str:
    """A rate for people: one decimal of a percent, "-" when there is nothing to divide."""
    return "-" if value is None else f"{value:.1%}"


def derived_money(nanos: float | None, unpriced: int = 0, unknown: int = 0) -> str:
    """A figure derived from the stored costs (the cache saving, the cache-write cost) for
    people: ``unpriced`` when nothing was priced (never $0), and the priced results it is not
    known for (stored before batchrun kept it) counted beside, or alone when it is known for
    none of them."""
    if nanos is None and unknown:
        return f"unknown ({unknown:,})" + (f" + {unpriced:,} unpriced" if unpriced else "")
    return money(nanos, unpriced) + (f" + {unknown:,} unknown" if unknown else "")


# The prompt-caching figures, as the Compare page's table names them, with their definitions.
CACHE_DEFINITIONS = ("cache hit rate", "cached requests", "cache writes", "cache saving")


def cache_table(metrics: pl.DataFrame, keys: tuple[str, ...] = ("model",)) -> pl.DataFrame:
    """The prompt-caching figures of analytics.model_metrics (or spend) as text: rates in
    percent, money in USD or ``unpriced``, the saving beside the cost it was made on."""
    rows: list[dict[str, Any]] = []
    for row in metrics.iter_rows(named=True):
        shown_row: dict[str, Any] = {key: shown(row[key]) for key in keys}
        shown_row["prompt tokens"] = f"{row['prompt_tokens'] or 0:,}"
        shown_row["cache hit rate"] = share(row["cache_hit_rate"])
        answered = row.get("succeeded", row["requests"])  # spend rows are all results
        shown_row["cached requests"] = f"{row['cached_requests']:,} of {answered:,}"
        shown_row["cache write tokens"] = f"{row['cache_creation_tokens'] or 0:,}"
        unknown = row["saving_unknown"]  # the same rows lack the cache-write part
        shown_row["cache write cost"] = derived_money(row["cache_write_cost_nanos"], 0, unknown)
        shown_row["cost"] = money(row["cost_nanos"], row["unpriced"])
        shown_row["cache saving"] = derived_money(
            row["cache_saving_nanos"], row["unpriced"], unknown
        )
        shown_row["cache figures"] = "possibly under-reported" if row["cache_trust"] else "ok"
        rows.append(shown_row)
    return pl.DataFrame(rows, schema=dict.fromkeys(rows[0] if rows else keys, pl.String))


def cache_captions() -> str:
    """The definitions of the caching figures, as one caption."""
    return " ".join(f"**{name}**: {DEFINITIONS[name]}" for name in CACHE_DEFINITIONS)


def cache_warnings(metrics: pl.DataFrame, key: str = "model") -> None:
    """A warning per group (a model by default) whose cache figures analytics flags, with why."""
    flagged = metrics.filter(pl.col("cache_trust").is_not_null())
    for row in flagged.iter_rows(named=True):
        st.warning(
            f"**Cache figures of {literal(str(row[key]))} are possibly under-reported.** "
            f"{row['cache_trust']} {DEFINITIONS['cache under-reported']}"
        )


def metrics_table(metrics: pl.DataFrame, keys: tuple[str, ...] = ("model",)) -> pl.DataFrame:
    """analytics.model_metrics joined with analytics.sample_figures (on ``keys``) as shown:
    figures, each percentile after its sample count, the slow tail for output tps, then cost
    as text (so unpriced is visible)."""
    rows: list[dict[str, Any]] = []
    for row in metrics.iter_rows(named=True):
        shown_row: dict[str, Any] = {key: row[key] for key in keys}
        shown_row["data"] = "simulated" if row["simulated"] else "MiniMax"
        shown_row.update({label: row[column] for column, label, _, _ in METRIC_COLUMNS})
        shown_row["cost"] = money(row["cost_nanos"], row["unpriced"])
        shown_row["cost / 1k requests"] = money(row["cost_per_1k_nanos"])
        shown_row["cost / M output tokens"] = money(row["cost_per_m_output_nanos"])
        rows.append(shown_row)
    return pl.DataFrame(rows)


def metric_config() -> dict[str, Any]:
    """st.dataframe column settings: number formats and each metric's definition as help."""
    config: dict[str, Any] = {}
    for _, label, definition, number_format in METRIC_COLUMNS:
        config[label] = st.column_config.NumberColumn(
            label, help=DEFINITIONS.get(definition or "", None), format=number_format
        )
    config["cost"] = st.column_config.TextColumn("cost", help=DEFINITIONS["cost"])
    config["cost / 1k requests"] = st.column_config.TextColumn(
        "cost / 1k requests", help=DEFINITIONS["cost / 1k requests"]
    )
    config["cost / M output tokens"] = st.column_config.TextColumn(
        "cost / M output tokens", help=DEFINITIONS["cost / M output"]
    )
    config["data"] = st.column_config.TextColumn(
        "data", help="simulated: answered by batchrun's built-in simulator, not by MiniMax."
    )
    return config


def definitions(*names: str) -> None:
    """The definitions of the named metrics, shown under a table or chart."""
    with st.expander("What these numbers mean"):
        for name in names or tuple(DEFINITIONS):
            st.markdown(f"**{name}**: {DEFINITIONS[name]}")


def sampled(value: float | None, count: int, unit: str = "", digits: int = 2) -> str:
    """A percentile for people with the number of results it is taken over beside it:
    ``1.23 s (n=12)``; ``- (n=0)`` when there is no value."""
    figure = "-" if value is None else f"{value:,.{digits}f}{unit}"
    return f"{figure} (n={count:,})"


# The scorecard's columns, in order, and what each one means (shown under it).
SCORECARD_HELP = {
    "requests": DEFINITIONS["requests"],
    "success rate": "Requests that succeeded / all of them (pending ones count as not yet).",
    "latency p50": DEFINITIONS["latency"],
    "TTFT p50": DEFINITIONS["TTFT"],
    "output tps p50": DEFINITIONS["output tps"],
    "cost / 1k requests": DEFINITIONS["cost / 1k requests"],
    "pass rate": "Graded answers that passed / graded answers (by the grader named under the "
    "table); - where nothing was graded.",
    "cache saving": DEFINITIONS["cache saving"],
}


def scorecard(
    metrics: pl.DataFrame, samples: pl.DataFrame, passes: pl.DataFrame | None = None
) -> pl.DataFrame:
    """One compact row per model: analytics.model_metrics with analytics.sample_figures (the
    sample count beside each percentile) and, where graded, the pass rate (a frame of model,
    passed, graded, pass_rate as grading.report.pass_rates gives for one grader)."""
    counts = {row["model"]: row for row in samples.iter_rows(named=True)}
    grades = {} if passes is None else {r["model"]: r for r in passes.iter_rows(named=True)}
    rows: list[dict[str, str]] = []
    for row in metrics.iter_rows(named=True):
        n = counts.get(row["model"], {})
        graded = grades.get(row["model"])
        rows.append(
            {
                "model": shown(row["model"]),
                "requests": f"{row['requests']:,}",
                "success rate": share(row["success_rate"]),
                "latency p50": sampled(row["latency_p50"], n.get("latency_n", 0), " s"),
                "TTFT p50": sampled(row["ttft_p50"], n.get("ttft_n", 0), " s"),
                "output tps p50": sampled(row["output_tps_p50"], n.get("output_tps_n", 0), "", 1),
                "cost / 1k requests": money(row["cost_per_1k_nanos"]),
                "pass rate": "-"
                if graded is None or not graded["graded"]
                else f"{share(graded['pass_rate'])} of {graded['graded']:,}",
                "cache saving": derived_money(
                    row["cache_saving_nanos"], row["unpriced"], row["saving_unknown"]
                ),
            }
        )
    return pl.DataFrame(rows, schema=dict.fromkeys(("model", *SCORECARD_HELP), pl.String))

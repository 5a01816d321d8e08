"""Frames from ``batchrun.analytics`` made readable: dollars, seconds and percentages, with each
column's definition as its tooltip (and listed under the table by the pages)."""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from batchrun.analytics import DEFINITIONS
from batchrun.pricing import usd

# (metrics column, shown as, definition key or None, format)
METRIC_COLUMNS: tuple[tuple[str, str, str | None, str], ...] = (
    ("requests", "requests", None, "%d"),
    ("succeeded", "succeeded", None, "%d"),
    ("error_rate", "error rate", "error rate", "percent"),
    ("retries", "retries", "retries", "%d"),
    ("think_leaked", "think leaked", "think leaked", "%d"),
    ("empty_replies", "empty replies", "empty replies", "%d"),
    ("latency_p50", "latency p50 (s)", "latency", "%.2f"),
    ("latency_p90", "latency p90 (s)", "latency", "%.2f"),
    ("latency_p99", "latency p99 (s)", "latency", "%.2f"),
    ("ttft_p50", "TTFT p50 (s)", "TTFT", "%.2f"),
    ("ttft_p90", "TTFT p90 (s)", "TTFT", "%.2f"),
    ("ttft_p99", "TTFT p99 (s)", "TTFT", "%.2f"),
    ("ttft_text_p50", "TTFT text p50 (s)", "TTFT (text)", "%.2f"),
    ("ttft_text_p90", "TTFT text p90 (s)", "TTFT (text)", "%.2f"),
    ("output_tps_p50", "output tps p50", "output tps", "%.1f"),
    ("output_tps_p90", "output tps p90", "output tps", "%.1f"),
    ("output_tps_p99", "output tps p99", "output tps", "%.1f"),
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


def metrics_table(metrics: pl.DataFrame, keys: tuple[str, ...] = ("model",)) -> pl.DataFrame:
    """analytics.model_metrics as shown: figures, then cost as text (so unpriced is visible)."""
    rows: list[dict[str, Any]] = []
    for row in metrics.iter_rows(named=True):
        shown: dict[str, Any] = {key: row[key] for key in keys}
        shown["data"] = "simulated" if row["simulated"] else "MiniMax"
        shown.update({label: row[column] for column, label, _, _ in METRIC_COLUMNS})
        shown["cost"] = money(row["cost_nanos"], row["unpriced"])
        shown["cost / 1k requests"] = money(row["cost_per_1k_nanos"])
        shown["cost / M output tokens"] = money(row["cost_per_m_output_nanos"])
        rows.append(shown)
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

"""Compare models: the metrics table, latency, TTFT and tps distributions, cost, and cost
against speed, for chosen batches and models."""

from __future__ import annotations

import polars as pl
import streamlit as st

from batchrun import analytics
from batchrun.dashboard import charts, data, tables
from batchrun.dashboard.views.common import pick_batches, pick_models, simulated_notice

GROUPS = {
    "model": ("model",),
    "batch and model": ("batch_name", "model"),
    "day and model": ("day", "model"),
}


def render(source: data.Source) -> None:
    """The compare-models page."""
    st.title("Compare models")
    chosen = pick_batches(data.batches(source.url), key="compare_batches")
    if not chosen:
        st.info("Choose at least one batch.")
        return
    frame = data.requests(source.url, tuple(sorted(chosen)))
    models = pick_models(frame, key="compare_models")
    frame = frame.filter(pl.col("model").is_in(models))
    if frame.is_empty():
        st.info("No requests for this choice of batches and models.")
        return
    simulated_notice(frame)
    _table(frame)
    _distributions(frame)
    _cost(frame)


def _table(frame: pl.DataFrame) -> None:
    group = st.segmented_control("Per", list(GROUPS), default="model", key="compare_group")
    keys = GROUPS[group or "model"]
    metrics = analytics.model_metrics(frame, by=keys)
    shown = tables.metrics_table(metrics, keys=tuple(k for k in keys))
    st.dataframe(shown, hide_index=True, column_config=tables.metric_config())
    tables.definitions()
    errors = analytics.error_breakdown(frame)
    if not errors.is_empty():
        st.subheader("Errors by type")
        st.dataframe(
            errors.select("model", "error_type", "requests", "finished", "share"),
            hide_index=True,
            column_config={"share": st.column_config.NumberColumn(format="percent")},
        )


def _distributions(frame: pl.DataFrame) -> None:
    st.subheader("Distributions")
    left, right = st.columns(2)
    left.altair_chart(charts.box(analytics.distribution(frame, "latency_s"), "Latency", "s"))
    left.caption(analytics.DEFINITIONS["latency"])
    right.altair_chart(charts.box(analytics.distribution(frame, "ttft_s"), "TTFT", "s"))
    right.caption(analytics.DEFINITIONS["TTFT"])
    left.altair_chart(
        charts.box(analytics.distribution(frame, "output_tps"), "Output tps", "tokens/s")
    )
    left.caption(analytics.DEFINITIONS["output tps"])
    right.altair_chart(charts.box(analytics.distribution(frame, "ttft_text_s"), "TTFT (text)", "s"))
    right.caption(analytics.DEFINITIONS["TTFT (text)"])


def _cost(frame: pl.DataFrame) -> None:
    st.subheader("Cost")
    metrics = analytics.model_metrics(frame)
    priced = metrics.filter(pl.col("cost_per_1k_nanos").is_not_null()).with_columns(
        usd_per_1k=pl.col("cost_per_1k_nanos") / charts.NANOS_PER_USD
    )
    unpriced = metrics.filter(pl.col("cost_per_1k_nanos").is_null()).get_column("model")
    if unpriced.len():
        st.warning(
            "No price is known for "
            + ", ".join(unpriced.to_list())
            + ": their cost is shown as unpriced, not $0, and they are left out of the cost "
            "charts. Add a price with a catalog override file (see README, Catalog)."
        )
    if priced.is_empty():
        return
    left, right = st.columns(2)
    left.altair_chart(charts.bars(priced, "usd_per_1k", "Cost per 1,000 requests", "USD"))
    left.caption(analytics.DEFINITIONS["cost / 1k requests"])
    right.altair_chart(charts.cost_vs_speed(metrics))
    right.caption(
        "Each model one point: median output tps (MiniMax's definition) against cost per 1,000 "
        "requests."
    )

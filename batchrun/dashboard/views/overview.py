"""Overview: what was spent and sent, spend over time by model, and running batches live."""

from __future__ import annotations

from typing import Any

import altair as alt
import polars as pl
import streamlit as st

from batchrun import analytics
from batchrun.dashboard import caps, charts, data, tables
from batchrun.dashboard.text import shown
from batchrun.dashboard.views.common import sent_between, simulated_notice
from batchrun.teams.vitals import worker_cells


def render(source: data.Source) -> None:
    """The overview page."""
    st.title("Overview")
    # Every figure here is a sum: read from the store's aggregates (a few hundred rows), never
    # from the million-row requests frame, so a fresh server shows it at once.
    whole = data.sums(source.url)
    simulated_notice(whole)
    # The range's frame is the same object on every rerun (data.memo), so each figure over it is
    # worked out once per version of the store and range, not on every refresh.
    frame = sent_between(whole, key="overview_range")
    _headline(*data.memo(_headline_figures, frame))
    _running(source)
    _capped(source)  # a cap counts a batch's whole spend, not the range's
    # Real and simulated spend are never added: the charts show the real spend, or, in a store
    # with no real results, the simulated cost under its own title.
    has_real = data.memo(_has_real, frame)
    st.subheader("Spend over time" if has_real else "Simulated cost over time")
    every = st.segmented_control("Per", ["day", "hour"], default="day", key="overview_every")
    spent = data.memo(_spend_over_time, frame, every or "day", has_real)
    # One Vega view of both charts side by side, not two in columns: the browser drew two
    # views in columns a second or more after the headline (bench/dashboard_profile.py).
    st.altair_chart(data.memo(_spend_charts, spent, every or "day"), key="overview_chart")
    st.caption(
        analytics.DEFINITIONS["cost"]
        + (" Real spend only." if has_real else analytics.DEFINITIONS["simulated cost"])
    )


def _spend_charts(spent: pl.DataFrame, every: str) -> alt.HConcatChart:
    # One legend for both, below them: at the right it ran past the page's edge.
    both = alt.hconcat(charts.spend_over_time(spent, every), charts.cumulative(spent))
    shown: alt.HConcatChart = both.configure_legend(orient="bottom", title=None, labelLimit=0)
    return shown


def _headline_figures(
    frame: pl.DataFrame,
) -> tuple[dict[str, Any], tuple[str | None, str | None], int]:
    """The headline's totals, real and simulated costs, and real unpriced results (of a sums
    frame, or of a requests frame)."""
    real_sent = analytics.weighed(analytics.real(frame)).filter(pl.col("day").is_not_null())
    unpriced = int((real_sent.get_column("n") - real_sent.get_column("priced")).sum())
    return analytics.totals(frame), _origin_costs(frame), unpriced


def _spend_over_time(frame: pl.DataFrame, every: str, has_real: bool) -> pl.DataFrame:
    """Spend per model and day or hour: the real spend, or the simulated cost where none is."""
    return analytics.spend_over_time(
        analytics.real(frame) if has_real else analytics.simulated(frame), every
    )


def _has_real(frame: pl.DataFrame) -> bool:
    """Whether any result was sent to MiniMax (not the simulator)."""
    return bool(analytics.real(frame).filter(pl.col("day").is_not_null()).height)


def _origin_costs(frame: pl.DataFrame) -> tuple[str | None, str | None]:
    """The real spend and the simulated results' cost, apart (each None when there is none)."""
    costs: list[str | None] = []
    for rows in (analytics.real(frame), analytics.simulated(frame)):
        done = analytics.weighed(rows).filter(pl.col("day").is_not_null())
        priced = int(done.get_column("priced").sum())
        unpriced = int(done.get_column("n").sum()) - priced
        spent = int(done.get_column("cost_nanos").fill_null(0).sum())
        costs.append(
            (tables.money(spent if priced or not unpriced else None, unpriced))
            if done.height
            else None
        )
    return costs[0], costs[1]


def _headline(
    total: dict[str, Any], costs: tuple[str | None, str | None], unpriced: int = 0
) -> None:
    spend, requests, tokens, errors = st.columns(4)
    real = costs[0]
    tables.spend_metric(
        spend,
        real.removesuffix(f" + {unpriced:,} unpriced") if real and unpriced else real,
        help=analytics.DEFINITIONS["cost"] + " Real spend only: results sent to MiniMax.",
    )
    if unpriced:  # the count in a metric of its own: a long figure is cut in a narrow column
        spend.metric("Unpriced results (not in Spend)", f"{unpriced:,}")
    if costs[1] is not None:
        spend.metric(
            "Simulated cost (not billed)",
            costs[1],
            help=analytics.DEFINITIONS["simulated cost"],
        )
    requests.metric("Requests", f"{total['requests']:,}", help="Every request of every batch.")
    tokens.metric(
        "Tokens in / out", f"{total['input_tokens'] or 0:,} / {total['output_tokens'] or 0:,}"
    )
    rate = total["error_rate"]
    errors.metric(
        "Error rate",
        "-" if rate is None else f"{rate:.1%}",
        help=analytics.DEFINITIONS["error rate"],
    )


def _capped(source: data.Source) -> None:
    """Batches that stopped at their budget cap or went past it: what is left and how to go on
    (the Spend page lists every capped batch)."""
    batches = data.batches(source.url)
    states = caps.states(batches, data.sums(source.url))  # a few hundred rows: no cache needed
    if states.filter(pl.col("state").is_in(caps.NOTICED)).is_empty():
        return
    st.subheader("Budget caps")
    caps.show(states, only=caps.NOTICED)


def _running(source: data.Source) -> None:
    # Live with the rest of the page (app.py): while a batch runs, never once it is finished.
    running = [b for b in data.batches(source.url) if b["status"] in ("running", "loading")]
    _workers(source)
    st.subheader("Running batches")
    if not running:
        st.caption("No batch is running. This list refreshes by itself while one runs.")
        return
    for batch in running:
        counts = data.progress(source.url, batch["id"])
        total = sum(sum(by.values()) for by in counts.values())
        done = total - sum(by.get("pending", 0) for by in counts.values())
        mark = " (simulated)" if batch["simulated"] else ""
        text = f"{shown(batch['name'])}{mark}: {done:,} of {total:,} requests finished"
        st.progress(done / total if total else 0.0, text=text)


def _workers(source: data.Source) -> None:
    """Workers draining submitted batches (`batchrun worker`), when there are any."""
    rows = data.workers(source.url)
    if not rows:
        return
    st.subheader("Workers")
    st.dataframe(pl.DataFrame([worker_cells(w) for w in rows]), hide_index=True)
    st.caption(
        "Rate: requests sent in the last minute. Loop stall: the longest time the worker's "
        "event loop was held up (its streams waited meanwhile); empty until its first report."
    )

"""Spend: by day, model and batch; budget against spend for capped batches; the estimate made
before a batch ran against what it cost. Unpriced results are flagged, never shown as $0."""

from __future__ import annotations

import time
from typing import Any

import polars as pl
import streamlit as st

from batchrun import analytics, budgets
from batchrun.dashboard import caps, data, spend_chart, tables
from batchrun.dashboard.text import shown
from batchrun.dashboard.views.common import pick_batch, sent_between, simulated_notice
from batchrun.exceptions import ConfigError


def render(source: data.Source) -> None:
    """The spend page, from the per-batch sums alone (data.sums: a few hundred rows whatever the
    results, kept by the writer): the headline, the chart, the tables and their cache flag, the
    caps, the period budgets and the estimate against actual read no requests frame."""
    st.title("Spend")
    sums = data.sums(source.url)
    simulated_notice(sums)
    batches = data.batches(source.url)
    unpriced = _unpriced(sums)
    if unpriced:
        st.warning(
            f"{unpriced:,} results have no price (their model has none in the catalog). They are "
            "counted as unpriced in every table, never as $0. `batchrun reprice` prices them "
            "once a price is added."
        )
    chosen = _in_range(sums)
    per_model = data.memo(analytics.spend_from_sums, chosen, "model")  # totals and warnings
    _totals(per_model)
    tables.cache_warnings(per_model)
    _chart(chosen)
    by = st.segmented_control("By", ["day", "model", "batch"], default="day", key="spend_by")
    table = (
        per_model if by == "model" else data.memo(analytics.spend_from_sums, chosen, by or "day")
    )
    st.dataframe(_spend_table(table, by or "day"), hide_index=True, column_config=_SPEND_CONFIG)
    st.caption(analytics.DEFINITIONS["cost"] + " Days are UTC, by the time a request was sent.")
    st.caption(tables.cache_captions())
    _budgets(batches, sums)  # a cap counts a batch's whole spend, not the range's
    _period_budgets(sums)
    _estimate(source, batches)


def _in_range(frame: pl.DataFrame) -> pl.DataFrame:
    """The requests sent in the chosen days (the shared "Sent between" range)."""
    return sent_between(
        frame,
        key="spend_range",
        help="The headline, the chart and the table cover these days; the budget caps below "
        "always count a batch's whole spend.",
    )


def _chart(frame: pl.DataFrame) -> None:
    """Spend per day or hour and each model's running total: the real spend, or, in a store
    with no real results, the simulated cost under its own title (the two are never added)."""
    is_real = data.memo(_has_real, frame)
    st.subheader("Spend over time" if is_real else "Simulated cost over time (not billed)")
    every = st.segmented_control("Per", ["day", "hour"], default="day", key="spend_every")
    # Worked out once per frame and period (data.memo), the chart too: Altair's building and
    # validating of a chart took most of a warm page's time.
    spent = data.memo(_spent, frame, every or "day", is_real)
    if spent.is_empty():
        st.caption("Nothing was sent in these days.")
        return
    st.altair_chart(data.memo(_spend_chart, spent, every or "day"), key="spend_chart")
    st.caption(
        spend_chart.CAPTION + ("" if is_real else " " + analytics.DEFINITIONS["simulated cost"])
    )


def _unpriced(sums: pl.DataFrame) -> int:
    """Results without a price (a sums row stands for ``n`` results, ``priced`` of them priced)."""
    succeeded = sums.filter(pl.col("status") == "succeeded")
    return int((succeeded.get_column("n") - succeeded.get_column("priced")).sum())


def _has_real(sums: pl.DataFrame) -> bool:
    return analytics.real(sums).filter(pl.col("day").is_not_null()).height > 0


def _spent(frame: pl.DataFrame, every: str, is_real: bool) -> pl.DataFrame:
    return analytics.spend_over_time(
        analytics.real(frame) if is_real else analytics.simulated(frame), every
    )


def _spend_chart(spent: pl.DataFrame, every: str) -> spend_chart.Chart:
    return spend_chart.spend_chart(spent, every)


def _totals(per_model: pl.DataFrame) -> None:
    """All batches together: the real spend, apart from it what simulated results would have
    cost (never added), and what the prompt cache saved (on real results when there are any).

    Two metrics a row, so that no figure is cut; the unpriced results' count is a metric of its
    own beside the spend (the real spend is the priced cost alone: the count beside it says
    what it leaves out)."""
    real, simulated = analytics.real(per_model), analytics.simulated(per_model)
    cached = real if real.height or not simulated.height else simulated
    total = analytics.cache_total(cached, also=("unpriced",)).row(0, named=True)
    spent, left_out = st.columns(2)
    unpriced = int(real.get_column("unpriced").sum()) if real.height else 0
    tables.spend_metric(
        spent,
        _priced_money(real, unpriced) if real.height else None,
        help=analytics.DEFINITIONS["cost"] + _REAL,
    )
    if unpriced:
        left_out.metric("Unpriced results (not in Spend)", f"{unpriced:,}", help=_UNPRICED)
    if simulated.height:
        cost, left_out = st.columns(2)
        cost.metric(
            "Simulated cost (not billed)",
            _sum_money(simulated),
            help=analytics.DEFINITIONS["simulated cost"],
        )
        unpriced = int(simulated.get_column("unpriced").sum())
        if unpriced:
            left_out.metric("Unpriced results (simulated)", f"{unpriced:,}", help=_UNPRICED)
    saved, rate = st.columns(2)
    of = "" if cached is real else " Of the simulated results: there are no real ones."
    saved.metric(
        "Cache saving",
        tables.derived_money(
            total["cache_saving_nanos"], total["unpriced"], total["saving_unknown"]
        ),
        help=analytics.DEFINITIONS["cache saving"] + of,
    )
    rate.metric(
        "Cache hit rate",
        tables.share(total["cache_hit_rate"]),
        help=analytics.DEFINITIONS["cache hit rate"] + of,
    )


_UNPRICED = "Results whose model has no price: left out of the cost, never counted as $0."


def _priced_money(rows: pl.DataFrame, unpriced: int) -> str:
    """The priced cost of some spend rows alone ("unpriced (N)" when none was priced)."""
    priced = rows.get_column("cost_nanos").drop_nulls()
    return (
        tables.money(int(priced.sum()))
        if len(priced) or not unpriced
        else f"unpriced ({unpriced:,})"
    )


_REAL = " Real spend only: results sent to MiniMax (simulated results are shown apart)."


def _sum_money(rows: pl.DataFrame) -> str:
    """The priced cost of some spend rows, with their unpriced results beside it."""
    priced = [int(cost) for cost in rows.get_column("cost_nanos").drop_nulls()]
    unpriced = int(rows.get_column("unpriced").sum())
    return tables.money(sum(priced) if priced or not unpriced else None, unpriced)


def _spend_table(table: pl.DataFrame, by: str) -> pl.DataFrame:
    """The spend rows as shown: tokens, then the cost with the cache saving beside it, then the
    other caching figures (money as text, so unpriced stays visible)."""
    rows = [
        {
            by: str(row[by]),
            "data": "simulated (not billed)" if row["simulated"] else "MiniMax",
            "results": row["requests"],  # only those with a result: "requests" is every one sent
            "input tokens": row["input_tokens"],
            "output tokens": row["output_tokens"],
            "cache read tokens": row["cache_read_tokens"],
            "cache write tokens": row["cache_creation_tokens"],
            "cost": tables.money(row["cost_nanos"], row["unpriced"]),
            "cache saving": tables.derived_money(
                row["cache_saving_nanos"], row["unpriced"], row["saving_unknown"]
            ),
            "cache hit rate": row["cache_hit_rate"],
            "cached requests": row["cached_requests"],
            "cache write cost": tables.derived_money(
                row["cache_write_cost_nanos"], 0, row["saving_unknown"]
            ),
            "unpriced": row["unpriced"],
            "cache figures": "possibly under-reported" if row["cache_trust"] else "ok",
        }
        for row in table.iter_rows(named=True)
    ]
    return pl.DataFrame(rows)


_SPEND_CONFIG = {
    "results": st.column_config.NumberColumn("results", help=analytics.DEFINITIONS["results"]),
    "cost": st.column_config.TextColumn("cost", help=analytics.DEFINITIONS["cost"]),
    "cache saving": st.column_config.TextColumn(
        "cache saving", help=analytics.DEFINITIONS["cache saving"]
    ),
    "cache hit rate": st.column_config.NumberColumn(
        "cache hit rate", help=analytics.DEFINITIONS["cache hit rate"], format="percent"
    ),
    "cached requests": st.column_config.NumberColumn(
        "cached requests", help=analytics.DEFINITIONS["cached requests"], format="%d"
    ),
    "cache write cost": st.column_config.TextColumn(
        "cache write cost", help=analytics.DEFINITIONS["cache writes"]
    ),
    "cache figures": st.column_config.TextColumn(
        "cache figures", help=analytics.DEFINITIONS["cache under-reported"]
    ),
}


def _budgets(batches: list[dict[str, Any]], frame: pl.DataFrame) -> None:
    st.subheader("Budget caps")
    states = caps.states(batches, frame)
    if states.is_empty():
        st.caption("No batch has a budget cap. Set one with `batchrun run ... --max-cost USD`.")
        return
    caps.show(states)
    st.caption(
        "A batch stopped at its cap has requests pending and at least "
        f"{analytics.CAP_NEAR:.0%} of its cap spent: its run stopped because the next request's "
        "worst case would pass the cap. Spend past the cap (an overrun) is shown in red."
    )


def _period_budgets(sums: pl.DataFrame) -> None:
    """The budgets per UTC day and month, per model or all, from the budgets file, against the
    sums of every batch (a day's or a month's budget: not the "Sent between" range's)."""
    st.subheader("Budgets per day and month")
    path = budgets.budgets_file()
    try:
        chosen = budgets.load_budgets(path)
    except ConfigError as exc:
        st.error(f"The budgets file is wrong: {exc}")
        return
    if not chosen:
        st.caption(
            f"No budgets file ({path}). Budgets per UTC day or month, per model or for all, "
            "are set there (`[[budget]]` tables with `period`, `usd`, optionally `model` and "
            "`warn_at`; set $BATCHRUN_BUDGETS to use another file)."
        )
        return
    is_real = data.memo(_has_real, sums)
    spend = analytics.real(sums) if is_real else analytics.simulated(sums)
    use = budgets.budget_use(chosen, spend, time.time())
    for row in use.iter_rows(named=True):
        text = budget_line(row) + ("" if is_real else " (simulated cost, not billed)")
        if row["state"] == "over":
            st.error(text, icon=":material/block:")
        elif row["state"] == "warn":
            st.warning(text, icon=":material/warning:")
        else:
            st.progress(min(1.0, row["used"]), text=text)
    st.caption(
        f"From {path}. A budget is watched, not enforced (a batch's hard cap is `--max-cost`): "
        "amber past its threshold, red past the budget. Days and months are UTC."
    )


def budget_line(row: dict[str, Any]) -> str:
    """One period budget in words."""
    when = "today" if row["period"] == "day" else f"this month (since {row['since']})"
    who = shown(row["model"]) if row["model"] else "all models"
    nothing = row["cost_nanos"] is None and not row["unpriced"]  # nothing sent: truly $0
    spent = tables.money(0 if nothing else row["cost_nanos"], row["unpriced"])
    text = f"{who}, {when}: {spent} of {tables.money(row['cap_nanos'])} ({row['used']:.0%})"
    if row["state"] == "over":
        return text + f", {tables.money((row['cost_nanos'] or 0) - row['cap_nanos'])} over"
    if row["state"] == "warn":
        return text + f", past the {row['warn_at']:.0%} warning threshold"
    return text


def _estimate(source: data.Source, batches: list[dict[str, Any]]) -> None:
    st.subheader("Estimate against actual")
    batch = pick_batch(batches, key="spend_batch", shows=False)  # the page shows every batch
    estimates = batch["settings"].get("estimate")
    if not estimates:
        st.caption(
            "This batch has no stored estimate (it was made before estimates were kept, or "
            "with --yes and no pre-check)."
        )
        return
    metrics = data.memo(analytics.model_sums, data.sums(source.url, (batch["id"],)))
    prompts = dict(metrics.select("model", "prompt_tokens").iter_rows())
    compared = analytics.estimate_vs_actual(estimates, metrics)
    rows = [
        {
            "model": r["model"],
            "requests estimated": r["estimated_requests"],
            "results": r["actual_results"],
            "input tokens estimated": r["estimated_input_tokens"],
            "input tokens actual": r["actual_input_tokens"],
            "prompt tokens actual": prompts.get(r["model"]),
            "cost estimated (min-max)": f"{tables.money(r['cost_min_nanos'])} - "
            f"{tables.money(r['cost_max_nanos'])}",
            "cost expected": tables.money(r["cost_expected_nanos"]),
            "cost actual": tables.money(r["actual_cost_nanos"]),
            "actual / expected": r["actual_over_expected"],
        }
        for r in compared.iter_rows(named=True)
    ]
    st.dataframe(
        pl.DataFrame(rows),
        hide_index=True,
        column_config={"actual / expected": st.column_config.NumberColumn(format="%.2f")},
    )
    st.caption(
        "The estimate is the one shown before the batch ran: input tokens from count_tokens, "
        "output from 0 to max_tokens, expected output from the model's past results. Input "
        "tokens actual leave out what was read from or written to the prompt cache; prompt "
        "tokens actual count them, as count_tokens does."
    )

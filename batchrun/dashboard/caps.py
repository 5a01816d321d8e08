"""Capped batches for people: one line each, on the Spend page and (those that stopped at their
cap or went over it) on Overview. A batch stopped at its cap says so, with its pending requests,
its spend against the cap and the command that goes on; an overrun is red with its percentage.

Why a batch stopped is read from its stored stop reason (migration 0012); batches from before it
have none, and for them it is inferred from the spend, as analytics.cap_states does."""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from batchrun import analytics
from batchrun.dashboard import tables
from batchrun.dashboard.text import shown
from batchrun.run.report import STOP_TEXT, StopReason

NOTICED = ("over its cap", "stopped at its cap")  # what Overview shows


def line(row: dict[str, Any]) -> str:
    """One capped batch in words (its name as typed: callers set it as plain text)."""
    spent = tables.money(row["cost_nanos"], row["unpriced"])
    cap = tables.money(row["cap_nanos"])
    share = f"{row['used']:.0%} of the cap"
    left = f"{row['pending']:,} requests pending"
    state = row["state"]
    if state == "over its cap":
        over = tables.money(-row["left_nanos"])
        text = f"over its cap: {spent} of {cap} ({share}, {over} over)"
        return text + (f"; {left}" if row["pending"] else "")
    if state == "stopped at its cap":
        return f"stopped at its cap: {left}; {spent} of {cap} ({share})"
    if state == "stopped":
        why = _why(row.get("stop_reason"))
        return f"stopped{why} with {left}; {spent} of {cap} ({share})"
    return f"{spent} of {cap} ({share})"  # running or within its cap: the bar says the rest


def resume_command(row: dict[str, Any]) -> str:
    """What goes on with a stopped batch: at (or over) its cap, only with a higher one."""
    raise_cap = row["state"] in NOTICED
    return f"batchrun resume {row['batch']}" + (" --max-cost USD" if raise_cap else "")


def show(states: pl.DataFrame, *, only: tuple[str, ...] | None = None) -> int:
    """Write each capped batch (or those in ``only``): red when over, amber when stopped at the
    cap, a bar otherwise. Returns how many were written."""
    rows = [r for r in states.iter_rows(named=True) if only is None or r["state"] in only]
    for row in rows:
        name = shown(row["batch"])
        text = f"{name}: {line(row)}"
        if row["state"] == "over its cap":
            st.error(text, icon=":material/block:")
        elif row["state"] == "stopped at its cap":
            st.warning(text, icon=":material/pause_circle:")
        else:
            st.progress(min(1.0, row["used"]), text=text)
        if row["pending"] and row["state"] not in ("running", "within its cap"):
            st.code(resume_command(row), language="bash")
    return len(rows)


def _why(reason: str | None) -> str:
    """`` (interrupted)``: the stored reason in words, when there is one worth saying."""
    if reason is None or reason in (StopReason.BUDGET, StopReason.FINISHED):
        return ""
    return f" ({STOP_TEXT[StopReason(reason)].removeprefix('stopped: ')})"


def states(batches: list[dict[str, Any]], frame: pl.DataFrame) -> pl.DataFrame:
    """analytics.cap_states over the page's frame, corrected by each batch's stored stop reason:
    a batch that stopped for another reason is not shown as stopped at its cap, and one that
    stopped at it is, however far from the cap its spend is (its next request's worst case)."""
    found = analytics.cap_states(batches, frame)
    reasons = pl.DataFrame(
        [{"batch_id": b["id"], "stop_reason": b.get("stop_reason")} for b in batches],
        schema={"batch_id": pl.String, "stop_reason": pl.String},
    )
    reason = pl.col("stop_reason")
    inferred = pl.col("state").is_in(["stopped at its cap", "stopped"])
    return found.join(reasons, on="batch_id", how="left").with_columns(
        state=pl.when(inferred & (reason == StopReason.BUDGET))
        .then(pl.lit("stopped at its cap"))
        .when(inferred & reason.is_not_null())
        .then(pl.lit("stopped"))
        .otherwise(pl.col("state"))
    )

"""Pieces several pages share: choosing batches and models, the "Sent between" date range (kept
in the address as ``?since=&until=``), and the simulated-data notice."""

from __future__ import annotations

from datetime import date
from typing import Any, cast

import polars as pl
import streamlit as st

from batchrun.dashboard import data

SIMULATED = (
    "**Simulated data.** Some of these results were answered by batchrun's built-in MiniMax "
    "simulator, not by MiniMax: their latency, speed, answers and cost are illustrations of "
    "the tool, not measurements of MiniMax. Such rows are marked *simulated*."
)


RUNNING = ("running", "loading", "queued")


def _shown_key() -> str:
    """Where session state keeps the batches the page (of the address) picked last run."""
    return f"shown_batches:{st.query_params.get('page', 'overview')}"


def shows_running(batches: list[dict[str, Any]]) -> bool:
    """Whether a batch the page shows is running: the batches it picked, else (a page over every
    batch) any."""
    shown = st.session_state.get(_shown_key())
    return any(b["status"] in RUNNING for b in batches if shown is None or b["id"] in shown)


def showing(batch_ids: list[str]) -> None:
    """Say which batches the page shows, for ``shows_running``."""
    st.session_state[_shown_key()] = list(batch_ids)


def batch_label(batch: dict[str, Any]) -> str:
    """How a batch is named in pickers: name, status, and a mark when simulated."""
    mark = ", simulated" if batch["simulated"] else ""
    if batch["settings"].get("judge_of"):
        mark += ", judge calls"
    return f"{batch['name']} ({batch['status']}{mark})"


def linked_batch(batches: list[dict[str, Any]]) -> dict[str, Any]:
    """The batch named by ``?batch=NAME`` (or id) in the address, else the newest."""
    asked = st.query_params.get("batch")
    return next((b for b in batches if asked in (b["id"], b["name"])), batches[0])


def pick_batches(batches: list[dict[str, Any]], key: str) -> list[str]:
    """A multiselect of batches (newest first; the linked or newest one chosen); their ids."""
    by_id = {b["id"]: b for b in batches}
    chosen = st.multiselect(
        "Batches",
        list(by_id),
        default=[linked_batch(batches)["id"]],
        format_func=lambda bid: batch_label(by_id[bid]),
        key=key,
    )
    showing(chosen)
    return chosen


def pick_batch(batches: list[dict[str, Any]], key: str, *, shows: bool = True) -> dict[str, Any]:
    """A selectbox of batches (newest first; the linked one first chosen); the chosen batch.
    ``shows``: the page shows only this batch (its running keeps the page live)."""
    by_id = {b["id"]: b for b in batches}
    ids = list(by_id)
    chosen = st.selectbox(
        "Batch",
        ids,
        index=ids.index(linked_batch(batches)["id"]),
        format_func=lambda bid: batch_label(by_id[bid]),
        key=key,
    )
    picked = by_id[chosen or batches[0]["id"]]
    if shows:
        showing([picked["id"]])
    return picked


def pick_models(frame: pl.DataFrame, key: str) -> list[str]:
    """A multiselect of the models present in a frame (all chosen)."""
    models = sorted(frame.get_column("model").unique().to_list())
    return st.multiselect("Models", models, default=models, key=key)


RANGE_LABEL = "Sent between (UTC days)"
RANGE_HELP = "The page's figures cover the requests sent on these days, and those not sent yet."


def sent_between(frame: pl.DataFrame, key: str, help: str = RANGE_HELP) -> pl.DataFrame:
    """The requests sent in the chosen UTC days (every day of the frame by default, or the
    address's ``since`` and ``until``); requests not sent yet stay (they have no day)."""
    days = frame.get_column("day").drop_nulls()
    if days.is_empty():
        return frame
    first, last = cast(date, days.min()), cast(date, days.max())
    chosen = st.date_input(
        RANGE_LABEL,
        value=_linked_range(first, last),
        min_value=first,
        max_value=last,
        key=key,
        help=help,
    )
    picked = tuple(chosen) if isinstance(chosen, (tuple, list)) else (chosen,)
    if len(picked) != 2:  # a range half chosen: the whole frame until it is whole
        return frame
    since, until = picked
    _link_range(since, until, whole=(since, until) == (first, last))
    if (since, until) == (first, last):
        return frame
    # Through data.memo: the same frame object on every rerun, so the figures over it are too.
    return data.memo(_sent_in, frame, since, until)


def _sent_in(frame: pl.DataFrame, since: date, until: date) -> pl.DataFrame:
    """The requests sent from ``since`` to ``until`` (UTC days), and those not sent yet."""
    sent = pl.col("day")
    return frame.filter(sent.is_null() | sent.is_between(since, until))


def _linked_range(first: date, last: date) -> tuple[date, date]:
    """The range the address names, kept within the frame's days; all of them by default."""
    asked = [_day(st.query_params.get(name)) for name in ("since", "until")]
    since = min(max(asked[0] or first, first), last)
    until = max(min(asked[1] or last, last), since)
    return since, until


def _link_range(since: date, until: date, *, whole: bool) -> None:
    """Keep the chosen range in the address (none when it is every day)."""
    for name, day in (("since", since), ("until", until)):
        if whole:
            st.query_params.pop(name, None)
        elif st.query_params.get(name) != day.isoformat():
            st.query_params[name] = day.isoformat()


def _day(text: str | None) -> date | None:
    """A day from the address, None when it is missing or not a date."""
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def simulated_notice(frame: pl.DataFrame) -> None:
    """Say so when any row of the frame is simulated."""
    if frame.height and frame.get_column("simulated").any():
        st.warning(SIMULATED)

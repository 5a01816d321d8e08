"""Pieces several pages share: choosing batches and models, and the simulated-data notice."""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

SIMULATED = (
    "**Simulated data.** Some of these results were answered by batchrun's built-in MiniMax "
    "simulator, not by MiniMax: their latency, speed, answers and cost are illustrations of "
    "the tool, not measurements of MiniMax. Such rows are marked *simulated*."
)


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
    return st.multiselect(
        "Batches",
        list(by_id),
        default=[linked_batch(batches)["id"]],
        format_func=lambda bid: batch_label(by_id[bid]),
        key=key,
    )


def pick_batch(batches: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """A selectbox of batches (newest first; the linked one first chosen); the chosen batch."""
    by_id = {b["id"]: b for b in batches}
    ids = list(by_id)
    chosen = st.selectbox(
        "Batch",
        ids,
        index=ids.index(linked_batch(batches)["id"]),
        format_func=lambda bid: batch_label(by_id[bid]),
        key=key,
    )
    return by_id[chosen or batches[0]["id"]]


def pick_models(frame: pl.DataFrame, key: str) -> list[str]:
    """A multiselect of the models present in a frame (all chosen)."""
    models = sorted(frame.get_column("model").unique().to_list())
    return st.multiselect("Models", models, default=models, key=key)


def simulated_notice(frame: pl.DataFrame) -> None:
    """Say so when any row of the frame is simulated."""
    if frame.height and frame.get_column("simulated").any():
        st.warning(SIMULATED)

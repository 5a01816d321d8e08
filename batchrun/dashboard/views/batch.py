"""Batch detail: every request of one batch with status, attempts and error; filters; downloads."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import polars as pl
import streamlit as st

from batchrun.dashboard import data
from batchrun.dashboard.text import joined, literal, shown
from batchrun.dashboard.views.common import pick_batch, sent_between
from batchrun.export import defuse_formulas, verdict

SHOWN_ROWS = 1000
COLUMNS = (
    "custom_id", "model", "status", "attempts", "error_type", "error_message", "latency_s",
    "ttft_s", "output_tps", "input_tokens", "output_tokens", "cost_nanos",
)  # fmt: skip


def render(source: data.Source) -> None:
    """The batch detail page."""
    st.title("Batch detail")
    batch = pick_batch(data.batches(source.url), key="detail_batch")
    _header(batch)
    requests = data.requests(source.url, (batch["id"],))
    # Each step through data.memo: the same frames on every rerun, so a warm page sorts and
    # filters a quarter of a million rows once per choice, not on every visit.
    frame = data.memo(_columns, sent_between(requests, key="detail_range"))
    rows = _filtered(frame)
    st.caption(
        f"{rows.height:,} of {frame.height:,} requests match"
        + (f"; the first {SHOWN_ROWS:,} are shown" if rows.height > SHOWN_ROWS else "")
        + ". cost_nanos is in nano-dollars (1e-9 USD); empty means unpriced or no result."
    )
    st.dataframe(rows.head(SHOWN_ROWS).drop("request_id"), hide_index=True)
    _downloads(batch, with_ratings(rows, data.ratings(source.url, batch["id"])))
    errors = data.store(source.url).line_error_rows(batch["id"])
    if errors:
        st.subheader(f"Invalid lines in the file ({len(errors):,})")
        st.dataframe(
            pl.DataFrame([{k: e[k] for k in ("line_no", "custom_id", "field", "message")}
                          for e in errors]),
            hide_index=True,
        )  # fmt: skip


def _header(batch: dict[str, Any]) -> None:
    created = datetime.fromtimestamp(batch["created_at"], UTC).strftime("%Y-%m-%d %H:%M UTC")
    simulated = " · **simulated** (answered by batchrun's simulator, not MiniMax)"
    st.markdown(
        f"{literal(batch['source_path'])} · {shown(batch['status'])} · created {created} · "
        + "models: "
        + (joined(batch["models"]) if batch["models"] else "named per line")
        + (simulated if batch["simulated"] else "")
    )


def _columns(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select("request_id", *COLUMNS)


def _choices(frame: pl.DataFrame, column: str) -> list[str]:
    return sorted(frame.get_column(column).unique().to_list())


def _filtered(frame: pl.DataFrame) -> pl.DataFrame:
    left, middle, right = st.columns(3)
    statuses = data.memo(_choices, frame, "status")
    chosen = left.multiselect("Status", statuses, default=statuses, key="detail_status")
    models = data.memo(_choices, frame, "model")
    picked = middle.multiselect("Model", models, default=models, key="detail_models")
    search = right.text_input("custom_id contains", key="detail_search")
    return data.memo(_matching, frame, tuple(chosen), tuple(picked), search)


def _matching(
    frame: pl.DataFrame, statuses: tuple[str, ...], models: tuple[str, ...], search: str
) -> pl.DataFrame:
    """The rows of these statuses and models whose custom_id contains ``search``, in order."""
    rows = frame.filter(pl.col("status").is_in(statuses) & pl.col("model").is_in(models))
    if search:
        rows = rows.filter(pl.col("custom_id").str.contains(search, literal=True))
    return rows.sort("custom_id", "model")


def with_ratings(rows: pl.DataFrame, rated: list[dict[str, Any]]) -> pl.DataFrame:
    """The rows with each answer's rating (good, bad or empty) and comment, in place of the
    request id."""
    ratings = pl.DataFrame(
        [
            {"request_id": r["request_id"], "rating": verdict(r["rating"]), "comment": r["comment"]}
            for r in rated
        ],
        schema={"request_id": pl.Int64, "rating": pl.String, "comment": pl.String},
    ).rename({"comment": "rating_comment"})
    return rows.join(ratings, on="request_id", how="left", maintain_order="left").drop("request_id")


def _downloads(batch: dict[str, Any], rows: pl.DataFrame) -> None:
    if not st.button("Prepare downloads of these rows", key="detail_prepare"):
        return
    csv, parquet = st.columns(2)
    csv.download_button(
        "Download CSV",
        defuse_formulas(rows).write_csv(),
        file_name=f"{batch['name']}.csv",
        mime="text/csv",
    )
    buffer = io.BytesIO()
    rows.write_parquet(buffer)
    parquet.download_button(
        "Download Parquet",
        buffer.getvalue(),
        file_name=f"{batch['name']}.parquet",
        mime="application/octet-stream",
    )

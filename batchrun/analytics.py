"""Pure polars functions over frames read from the store: the numbers summaries and the
dashboard show.

Definitions (stated wherever a number is shown):
- latency: done - sent, the whole call;
- TTFT: first content token (thinking, text or tool input) - sent; TTFT (text): first text token;
- output tps: output_tokens / (last token - first token), MiniMax's own definition, which leaves
  out the time to first token;
- end-to-end tps: output_tokens / (done - sent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

RESULT_SCHEMA: dict[str, Any] = {
    "model": pl.String,
    "batch_id": pl.String,
    "batch_name": pl.String,
    "sent_at": pl.Float64,
    "first_token_s": pl.Float64,
    "first_text_s": pl.Float64,
    "last_token_s": pl.Float64,
    "done_s": pl.Float64,
    "input_tokens": pl.Int64,
    "output_tokens": pl.Int64,
    "cache_read_tokens": pl.Int64,
    "cache_creation_tokens": pl.Int64,
    "cost_nanos": pl.Int64,
}


def results_frame(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Result rows (as the store returns them) as a frame with the metric columns added."""
    frame = pl.DataFrame(
        [{key: row.get(key) for key in RESULT_SCHEMA} for row in rows], schema=RESULT_SCHEMA
    )
    return with_metrics(frame)


def with_metrics(frame: pl.DataFrame) -> pl.DataFrame:
    """Add latency, TTFT, output tps and end-to-end tps columns."""
    generating = pl.col("last_token_s") - pl.col("first_token_s")
    return frame.with_columns(
        latency_s=pl.col("done_s"),
        ttft_s=pl.col("first_token_s"),
        ttft_text_s=pl.col("first_text_s"),
        output_tps=pl.when(generating > 0).then(pl.col("output_tokens") / generating),
        e2e_tps=pl.when(pl.col("done_s") > 0).then(pl.col("output_tokens") / pl.col("done_s")),
    )


def priced_sum() -> pl.Expr:
    """The sum of the priced costs, null (not 0) when none of them is priced."""
    cost = pl.col("cost_nanos")
    return pl.when(cost.is_not_null().any()).then(cost.sum()).alias("cost_nanos")


def model_summary(results: pl.DataFrame, counts: Mapping[str, Mapping[str, int]]) -> pl.DataFrame:
    """One row per model: requests by status, latency, TTFT, tps, tokens and cost."""
    stats = results.group_by("model").agg(
        pl.col("latency_s").quantile(0.5, "nearest").alias("latency_p50"),
        pl.col("latency_s").quantile(0.95, "nearest").alias("latency_p95"),
        pl.col("ttft_s").quantile(0.5, "nearest").alias("ttft_p50"),
        pl.col("output_tps").median().alias("output_tps_p50"),
        pl.col("input_tokens").sum(),
        pl.col("output_tokens").sum(),
        priced_sum(),
        pl.col("cost_nanos").is_null().sum().alias("unpriced"),
    )
    status = pl.DataFrame(
        [
            {
                "model": model,
                "requests": sum(by_status.values()),
                "succeeded": by_status.get("succeeded", 0),
                "errored": by_status.get("errored", 0),
                "invalid": by_status.get("invalid", 0),
                "pending": by_status.get("pending", 0),
            }
            for model, by_status in counts.items()
        ],
        schema={
            "model": pl.String,
            "requests": pl.Int64,
            "succeeded": pl.Int64,
            "errored": pl.Int64,
            "invalid": pl.Int64,
            "pending": pl.Int64,
        },
    )
    return status.join(stats, on="model", how="left").with_columns(
        success_rate=pl.when(pl.col("requests") > 0).then(pl.col("succeeded") / pl.col("requests"))
    )


SPEND_KEYS = {"model": "model", "batch": "batch_name", "day": "day"}


def spend(results: pl.DataFrame, by: str) -> pl.DataFrame:
    """Spend grouped by model, batch or UTC day: requests, tokens, priced cost, unpriced count.

    ``cost_nanos`` sums only priced requests; ``unpriced`` counts the others, which are never
    added as zero.
    """
    key = SPEND_KEYS[by]
    frame = results.with_columns(
        day=pl.from_epoch(pl.col("sent_at"), time_unit="s").dt.date().cast(pl.String)
    )
    return (
        frame.group_by(key)
        .agg(
            pl.len().alias("requests"),
            pl.col("input_tokens").sum(),
            pl.col("output_tokens").sum(),
            pl.col("cache_read_tokens").sum(),
            pl.col("cache_creation_tokens").sum(),
            priced_sum(),
            pl.col("cost_nanos").is_null().sum().alias("unpriced"),
        )
        .sort(key)
        .rename({key: by})
    )

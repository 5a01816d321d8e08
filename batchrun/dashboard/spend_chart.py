"""The Spend page's chart: priced spend per day or hour, and each model's running total.

Unpriced results are never drawn as $0: a period whose results were all unpriced has no bar and
breaks the running-total line (each unbroken run of priced periods is its own line segment), and
every period with unpriced results is marked with a red cross at the top of the chart, its count
in the tooltip. What goes to the browser is a few rows per model and period.
"""

from __future__ import annotations

import altair as alt
import polars as pl

from batchrun.dashboard.charts import DAY_TICKS

NANOS_PER_USD = 1e9
UNPRICED_MARK = "#d62728"

Chart = alt.Chart | alt.LayerChart | alt.FacetChart | alt.HConcatChart

LEGEND = alt.Legend(orient="bottom", labelLimit=0, title=None)  # whole model names

CAPTION = (
    "Priced spend only. Unpriced results are never drawn as $0: a period whose results were all "
    "unpriced has no bar and breaks its model's running-total line; a red ✕ at the top marks "
    "every period with unpriced results (hover it for the count)."
)


def segments(spend: pl.DataFrame) -> pl.DataFrame:
    """``spend_over_time`` rows with a ``segment`` number per model that changes after each
    all-unpriced period, so the running-total line is drawn in pieces, never across a gap."""
    return spend.sort("model", "period").with_columns(
        segment=pl.col("cumulative_nanos").is_null().cum_sum().over("model"),
        USD=pl.col("cost_nanos") / NANOS_PER_USD,
        running_USD=pl.col("cumulative_nanos") / NANOS_PER_USD,
    )


def spend_chart(spend: pl.DataFrame, every: str) -> Chart:
    """Bars of priced spend per period stacked by model, beside each model's running total."""
    frame = segments(spend)
    unit = "yearmonthdatehours" if every == "hour" else "yearmonthdate"
    axis = alt.Undefined if every == "hour" else alt.Axis(tickCount=DAY_TICKS, format="%b %d")
    x = alt.X(f"{unit}(period):T", title=f"{every} (UTC)", axis=axis)
    priced = frame.filter(pl.col("cost_nanos").is_not_null())
    unpriced = frame.filter(pl.col("unpriced") > 0)
    marks = (
        alt.Chart(unpriced)
        .mark_point(shape="cross", color=UNPRICED_MARK, size=90, filled=True)
        .encode(
            x=x,
            y=alt.value(8),
            tooltip=[
                alt.Tooltip("period:T", title=every),
                "model",
                alt.Tooltip("unpriced:Q", title="unpriced results (not in the figures)"),
            ],
        )
    )
    bars = (
        alt.Chart(priced)
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y("sum(USD):Q", title="USD", stack="zero"),
            color=alt.Color("model:N", legend=LEGEND),
            tooltip=[
                alt.Tooltip("period:T", title=every),
                "model",
                alt.Tooltip("USD:Q", format="$,.4f"),
                "results",
                "unpriced",
            ],
        )
    )
    line = (
        alt.Chart(priced)
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("running_USD:Q", title="USD (running total, priced)"),
            color=alt.Color("model:N", legend=LEGEND),
            detail="segment:N",
            tooltip=[
                alt.Tooltip("period:T", title=every),
                "model",
                alt.Tooltip("running_USD:Q", format="$,.4f", title="running total"),
                alt.Tooltip("cumulative_unpriced:Q", title="unpriced so far (left out)"),
            ],
        )
    )
    per_period = alt.layer(bars, marks).properties(title=f"Spend per {every} by model (USD)")
    running = alt.layer(line, marks).properties(title="Running total by model (USD, priced)")
    return alt.hconcat(per_period, running)

"""Altair charts over frames that ``batchrun.analytics`` has already aggregated, so what goes to
the browser is a few rows per model however many results the store holds."""

from __future__ import annotations

import altair as alt
import polars as pl

NANOS_PER_USD = 1e9

# What the functions return: something st.altair_chart draws.
Chart = alt.Chart | alt.LayerChart | alt.FacetChart

# Model names in full on axes and legends: Streamlit's theme cuts axis labels at 100 px
# ("MiniMax-M2.7-hig…"); 0 is no limit.
MODEL_AXIS = alt.Axis(labelLimit=0)
MODEL_LEGEND = alt.Legend(labelLimit=0)
# A per-day axis ticks once a day: left to itself, Vega ticks a one-day chart every few hours,
# each labelled with the same day.
DAY_TICKS = alt.TimeIntervalStep(interval="day", step=1)


def utc(frame: pl.DataFrame, column: str = "period") -> pl.DataFrame:
    """``column`` as UTC instants: the store's times are naive UTC, which the browser would read
    as its local time (and a date as UTC midnight), so the axis labels said the wrong hour."""
    dtype = frame.schema[column]
    if dtype == pl.Date:
        return frame.with_columns(
            pl.col(column).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        )
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        return frame.with_columns(pl.col(column).dt.replace_time_zone("UTC"))
    return frame


def box(distribution: pl.DataFrame, title: str, unit: str) -> Chart:
    """One horizontal box per model: whiskers p5-p95, box p25-p75, a tick at the median."""
    base = alt.Chart(distribution, title=title).encode(
        y=alt.Y("model:N", title=None, axis=MODEL_AXIS),
        color=alt.Color("model:N", legend=None),
        tooltip=["model", "p5", "p25", "p50", "p75", "p95", "mean", "count"],
    )
    whiskers = base.mark_rule().encode(x=alt.X("p5:Q", title=unit), x2="p95:Q")
    boxes = base.mark_bar(size=18, opacity=0.6).encode(x="p25:Q", x2="p75:Q")
    median = base.mark_tick(color="black", size=22, thickness=2).encode(x="p50:Q")
    return alt.layer(whiskers, boxes, median)


def bars(frame: pl.DataFrame, value: str, title: str, unit: str) -> Chart:
    """One bar per model."""
    chart: Chart = (
        alt.Chart(frame, title=title)
        .mark_bar()
        .encode(
            x=alt.X(f"{value}:Q", title=unit),
            y=alt.Y("model:N", title=None, axis=MODEL_AXIS),
            color=alt.Color("model:N", legend=None),
            tooltip=["model", alt.Tooltip(f"{value}:Q", format=",.4f")],
        )
    )
    return chart


def cost_vs_speed(metrics: pl.DataFrame) -> Chart:
    """Each priced model one point: median output tps against cost per 1,000 requests."""
    points = metrics.filter(pl.col("cost_per_1k_nanos").is_not_null()).select(
        "model",
        pl.col("output_tps_p50").alias("output tps p50"),
        (pl.col("cost_per_1k_nanos") / NANOS_PER_USD).alias("USD per 1k requests"),
    )
    base = alt.Chart(points, title="Cost against speed (right and low is better)").encode(
        x=alt.X("output tps p50:Q", scale=alt.Scale(zero=False)),
        y=alt.Y("USD per 1k requests:Q", scale=alt.Scale(zero=False)),
        tooltip=["model", "output tps p50", alt.Tooltip("USD per 1k requests:Q", format="$,.4f")],
    )
    dots = base.mark_circle(size=160).encode(color=alt.Color("model:N", legend=None))
    labels = base.mark_text(align="left", dx=10).encode(text="model:N")
    return alt.layer(dots, labels)


def spend_over_time(spend: pl.DataFrame, every: str) -> Chart:
    """Priced spend per period, stacked by model (unpriced results are not drawn as $0)."""
    # Only the columns drawn: the data goes to the browser inside the chart (per hour, a few
    # days of three models were 860 rows, and the unused columns half the bytes).
    frame = utc(spend.filter(pl.col("cost_nanos").is_not_null())).select(
        "period", "model", (pl.col("cost_nanos") / NANOS_PER_USD).alias("USD"), "results"
    )
    # UTC time units: labels and tooltips in UTC, as the title says, whatever the browser's zone.
    hourly = every == "hour"
    unit = "utcyearmonthdatehours" if hourly else "utcyearmonthdate"
    shown = "%b %d %H:00" if hourly else "%b %d"
    chart: Chart = (
        alt.Chart(frame, title=f"Spend per {every} by model (USD)")
        .mark_bar()
        .encode(
            x=alt.X(
                f"{unit}(period):T",
                title=f"{every} (UTC)",
                axis=alt.Axis(
                    format=shown,
                    labelAngle=-45 if hourly else 0,
                    tickCount=alt.Undefined if hourly else DAY_TICKS,
                ),
            ),
            y=alt.Y("sum(USD):Q", title="USD", stack="zero"),
            color=alt.Color("model:N", legend=MODEL_LEGEND),
            tooltip=[
                alt.Tooltip(f"{unit}(period):T", title=f"{every} (UTC)", format=shown),
                "model",
                alt.Tooltip("USD:Q", format="$,.4f"),
                "results",
            ],
        )
    )
    return chart


def cumulative(spend: pl.DataFrame) -> Chart:
    """Each model's running total of priced spend."""
    frame = utc(spend).select(
        "period", "model", (pl.col("cumulative_nanos") / NANOS_PER_USD).alias("USD")
    )
    when = "%b %d %H:%M"
    chart: Chart = (
        alt.Chart(frame, title="Cumulative spend by model (USD)")
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "period:T", title="UTC", scale=alt.Scale(type="utc"), axis=alt.Axis(format=when)
            ),
            y=alt.Y("USD:Q"),
            color=alt.Color("model:N", legend=MODEL_LEGEND),
            tooltip=[
                alt.Tooltip("utcyearmonthdatehoursminutes(period):T", title="UTC", format=when),
                "model",
                alt.Tooltip("USD:Q", format="$,.4f"),
            ],
        )
    )
    return chart


def pareto(quality: pl.DataFrame, x: str, x_title: str, title: str) -> Chart:
    """Quality against one other figure, each model one point with its 95% interval as a bar."""
    base = alt.Chart(quality, title=title).encode(
        x=alt.X(f"{x}:Q", title=x_title, scale=alt.Scale(zero=False)),
        color=alt.Color("model:N", legend=None),
        tooltip=[
            "model",
            alt.Tooltip("pass_rate:Q", format=".1%", title="pass rate"),
            alt.Tooltip("ci_low:Q", format=".1%", title="95% low"),
            alt.Tooltip("ci_high:Q", format=".1%", title="95% high"),
            alt.Tooltip(f"{x}:Q", format=",.4f", title=x_title),
            "graded",
        ],
    )
    interval = base.mark_rule(strokeWidth=2).encode(
        y=alt.Y("ci_low:Q", title="pass rate (95% interval)", scale=alt.Scale(domain=[0, 1])),
        y2="ci_high:Q",
    )
    dots = base.mark_circle(size=160).encode(y="pass_rate:Q")
    labels = base.mark_text(align="left", dx=10).encode(y="pass_rate:Q", text="model:N")
    return alt.layer(interval, dots, labels)

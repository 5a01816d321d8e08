"""Compare models: a scorecard per model, the full metrics table behind it, latency, TTFT and
tps distributions, cost, and cost against speed, for chosen batches and models."""

from __future__ import annotations

import polars as pl
import streamlit as st

from batchrun import analytics
from batchrun.dashboard import charts, data, tables
from batchrun.dashboard.text import joined, literal, shown
from batchrun.dashboard.views.common import (
    pick_batches,
    pick_models,
    sent_between,
    simulated_notice,
)
from batchrun.grading.report import pass_rates, quality_frame

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
    frame = sent_between(data.requests(source.url, tuple(sorted(chosen))), key="compare_range")
    models = pick_models(frame, key="compare_models")
    frame = data.memo(data.only_models, frame, tuple(models))
    if frame.is_empty():
        st.info("No requests for this choice of batches and models.")
        return
    simulated_notice(frame)
    per_model = data.memo(
        analytics.model_metrics, frame
    )  # computed once: the table, flags, cost, caching
    batch_ids = tuple(sorted(chosen))
    graded = data.grades(source.url, batch_ids).filter(pl.col("model").is_in(models))
    _scorecard(frame, per_model, graded)
    group = st.segmented_control("Per", list(GROUPS), default="model", key="compare_group")
    keys = GROUPS[group or "model"]
    metrics = per_model if keys == ("model",) else data.memo(analytics.model_metrics, frame, keys)
    _table(frame, metrics, per_model, keys)
    _caching(metrics, per_model, keys)
    chosen_charts = _charts_chosen(graded)
    if chosen_charts == "distributions":
        _distributions(frame)
    elif chosen_charts == "quality":
        _quality(graded)
    else:
        _cost(per_model)


# One set of charts at a time: each chart is its own Vega view, and drawing all eight made the
# browser, not the server, most of a warm Compare page's time (bench/dashboard_profile.py).
CHARTS = {"cost": "Cost", "distributions": "Distributions", "quality": "Quality"}


def _charts_chosen(graded: pl.DataFrame) -> str:
    """Which charts to draw: the address's ``?charts=``, else quality where answers are graded,
    else cost; kept in the address when not the default, so a link shows the same charts."""
    default = "cost" if graded.is_empty() else "quality"
    asked = st.query_params.get("charts")
    chosen = st.segmented_control(
        "Charts",
        list(CHARTS),
        format_func=CHARTS.__getitem__,
        default=asked if asked in CHARTS else default,
        key="compare_charts",
        help="Cost: cost per 1,000 requests and cost against speed. Distributions: latency, "
        "TTFT and tps per model. Quality: pass rates against cost and speed (graded answers).",
    )
    chosen = chosen or default
    if chosen == default:
        st.query_params.pop("charts", None)
    elif st.query_params.get("charts") != chosen:
        st.query_params["charts"] = chosen
    return chosen


def _grader(graded: pl.DataFrame) -> str | None:
    """The grader the page's figures use: the one chosen under Quality (kept across reruns),
    else the first by name; None when nothing is graded."""
    graders = sorted(graded.get_column("grader").unique().to_list())
    chosen = st.session_state.get("compare_grader")
    return chosen if chosen in graders else (graders[0] if graders else None)


def _scorecard(frame: pl.DataFrame, per_model: pl.DataFrame, graded: pl.DataFrame) -> None:
    """One compact row per model: success, the medians with their sample counts, cost per 1k
    requests, pass rate where graded, cache saving."""
    st.subheader("Scorecard")
    grader = _grader(graded)
    passes = None if grader is None else pass_rates(graded.filter(pl.col("grader") == grader))
    samples = data.memo(analytics.sample_figures, frame)
    st.table(tables.scorecard(per_model, samples, passes))
    graded_by = f"pass rate by grader {literal(grader)}" if grader else "nothing graded"
    st.caption(
        f"Medians, each with the number of results it is taken over (n); {graded_by}. "
        "Every figure, its percentiles and the tokens are in the full table below."
    )
    with st.expander("What the scorecard shows"):
        for name, meaning in tables.SCORECARD_HELP.items():
            st.markdown(f"**{name}**: {meaning}")


def _table(
    frame: pl.DataFrame, metrics: pl.DataFrame, per_model: pl.DataFrame, keys: tuple[str, ...]
) -> None:
    samples = data.memo(analytics.sample_figures, frame, keys)
    figures = metrics.join(samples, on=list(keys), how="left", nulls_equal=True)
    shown = tables.metrics_table(figures, keys=keys)
    with st.expander("Full table: every figure", expanded=False):
        st.dataframe(shown, hide_index=True, column_config=tables.metric_config())
    _flagged(per_model)
    st.caption(
        f"**n**: {analytics.DEFINITIONS['n']} **output tps p10 / p1 (slow tail)**: "
        f"{analytics.DEFINITIONS['output tps slow tail']}"
    )
    tables.definitions()
    errors = data.memo(analytics.error_breakdown, frame)
    if not errors.is_empty():
        st.subheader("Errors by type")
        st.dataframe(
            errors.select("model", "error_type", "requests", "finished", "share"),
            hide_index=True,
            column_config={"share": st.column_config.NumberColumn(format="percent")},
        )


def _caching(metrics: pl.DataFrame, per_model: pl.DataFrame, keys: tuple[str, ...]) -> None:
    """Prompt caching per group: hit rate, cached requests, writes and their cost, the saving;
    a warning for each model whose streamed usage seems to under-report cache reads."""
    st.subheader("Prompt caching")
    tables.cache_warnings(per_model)
    st.table(tables.cache_table(metrics, keys=keys))
    st.caption(tables.cache_captions())
    if not per_model.get_column("cached_requests").sum():
        st.caption(
            "No result read its prompt from the cache. MiniMax caches a prompt of 512 tokens or "
            "more by its prefix (tools, system, then messages) for about 5 minutes: lines that "
            "share a long system prompt read it from the cache (see jobs/cache-demo.jsonl)."
        )
    if per_model.get_column("saving_unknown").sum():
        st.caption(
            "**unknown**: priced results stored before batchrun kept what they would have cost "
            "uncached; `batchrun reprice` fills it in."
        )


def _flagged(metrics: pl.DataFrame) -> None:
    """Under the table: which models' answers leaked reasoning or were empty, and what that is."""
    flagged = metrics.filter((pl.col("think_leaked") > 0) | (pl.col("empty_replies") > 0))
    if flagged.is_empty():
        return
    counts = "; ".join(
        f"{shown(row['model'])}: {row['think_leaked']:,} think leaked, "
        f"{row['empty_replies']:,} empty"
        for row in flagged.iter_rows(named=True)
    )
    st.caption(
        f"Flagged answers ({counts}). **think leaked**: {analytics.DEFINITIONS['think leaked']} "
        f"**empty replies**: {analytics.DEFINITIONS['empty replies']}"
    )


def _distributions(frame: pl.DataFrame) -> None:
    st.subheader("Distributions")
    left, right = st.columns(2)
    boxes = (
        (left, "latency_s", "Latency", "s", "latency"),
        (right, "ttft_s", "TTFT", "s", "TTFT"),
        (left, "output_tps", "Output tps", "tokens/s", "output tps"),
        (right, "ttft_text_s", "TTFT (text)", "s", "TTFT (text)"),
    )
    for column, metric, title, unit, definition in boxes:
        distribution = data.memo(analytics.distribution, frame, metric)
        column.altair_chart(data.memo(_box_chart, distribution, title, unit))
        column.caption(analytics.DEFINITIONS[definition])


def _box_chart(distribution: pl.DataFrame, title: str, unit: str) -> charts.Chart:
    return charts.box(distribution, title, unit)


def _cost(metrics: pl.DataFrame) -> None:
    st.subheader("Cost")
    priced = metrics.filter(pl.col("cost_per_1k_nanos").is_not_null()).with_columns(
        usd_per_1k=pl.col("cost_per_1k_nanos") / charts.NANOS_PER_USD
    )
    unpriced = metrics.filter(pl.col("cost_per_1k_nanos").is_null()).get_column("model")
    if unpriced.len():
        st.warning(
            "No price is known for "
            + joined(unpriced.to_list())
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


def _quality(graded: pl.DataFrame) -> None:
    st.subheader("Quality against cost and speed")
    if graded.is_empty():
        st.caption(
            "No graded answers in these batches. Give jobs an `expect` and run "
            "`batchrun grade BATCH` (or add `--judge MODEL --rubric FILE`); see README, Grading."
        )
        return
    graders = sorted(graded.get_column("grader").unique().to_list())
    grader = st.selectbox("Grader", graders, key="compare_grader") or graders[0]
    quality = quality_frame(graded.filter(pl.col("grader") == grader)).with_columns(
        usd_per_answer=pl.col("cost_per_answer_nanos") / charts.NANOS_PER_USD,
        usd_per_correct=pl.col("cost_per_correct_nanos") / charts.NANOS_PER_USD,
    )
    left, right = st.columns(2)
    left.altair_chart(
        charts.pareto(quality, "usd_per_answer", "USD per answer", "Quality against cost")
    )
    right.altair_chart(
        charts.pareto(quality, "output_tps_p50", "output tps p50", "Quality against speed")
    )
    st.caption(
        "Each model one point: its pass rate with the 95% Wilson interval as a bar; up and left "
        "(cheaper) or up and right (faster) is better. Answers whose grading failed are left out."
    )
    st.dataframe(
        _quality_table(quality),
        hide_index=True,
        column_config={
            "pass rate": st.column_config.NumberColumn(format="percent"),
            "95% low": st.column_config.NumberColumn(format="percent"),
            "95% high": st.column_config.NumberColumn(format="percent"),
        },
    )


def _quality_table(quality: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "model": r["model"],
                "graded": r["graded"],
                "passed": r["passed"],
                "pass rate": r["pass_rate"],
                "95% low": r["ci_low"],
                "95% high": r["ci_high"],
                "cost per correct answer": tables.money(r["cost_per_correct_nanos"]),
                "judge cost (apart)": tables.money(r["judge_cost_nanos"])
                if r["judge_cost_nanos"] is not None
                else "-",
                "grading errors": r["errors"],
            }
            for r in quality.iter_rows(named=True)
        ]
    )

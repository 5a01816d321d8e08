"""Compare's scorecard (issue 17, Deliver 2): one compact row per model, each figure checked
against what the store's rows give, computed here from them with SQL and plain Python."""

from __future__ import annotations

import json
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from batchrun.dashboard import tables
from batchrun.pricing import usd
from tests.dashboardfixtures import MODELS, seeded_copy
from tests.helpers import db_rows
from tests.test_dashboard import fresh_caches, open_page, rerun  # noqa: F401 - a fixture


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A little simulated time, so that output tps (tokens over generating time) has values.
    return seeded_copy(tmp_path_factory, "scorecard", time_scale=0.02)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def expected(db: Path, model: str) -> dict[str, str]:
    """The scorecard row of ``model`` over every batch of the store, from its rows."""
    [(requests, succeeded)] = db_rows(
        db,
        f"SELECT count(*), sum(status = 'succeeded') FROM requests WHERE model = '{model}'",
    )
    rows = db_rows(
        db,
        "SELECT done_s, first_token_s, last_token_s, output_tokens, cost_nanos, "
        f"uncached_cost_nanos FROM results WHERE model = '{model}'",
    )
    latency = [float(str(r[0])) for r in rows]
    ttft = [float(str(r[1])) for r in rows if r[1] is not None]
    tps = [
        int(str(r[3])) / (float(str(r[2])) - float(str(r[1])))
        for r in rows
        if r[1] is not None and r[2] is not None and float(str(r[2])) > float(str(r[1]))
    ]
    costs = [int(str(r[4])) for r in rows if r[4] is not None]
    savings = [int(str(r[5])) - int(str(r[4])) for r in rows if None not in (r[4], r[5])]
    [(graded, passed)] = db_rows(
        db,
        "SELECT count(g.score), sum(g.score IS NOT NULL AND g.passed) FROM grades g "
        f"JOIN results r ON r.request_id = g.request_id WHERE r.model = '{model}' "
        "AND g.grader = 'expect'",
    )
    n_graded = int(str(graded))
    return {
        "requests": f"{int(str(requests)):,}",
        "success rate": f"{int(str(succeeded)) / int(str(requests)):.1%}",
        "latency p50": tables.sampled(median(latency), len(latency), " s"),
        "TTFT p50": tables.sampled(median(ttft), len(ttft), " s"),
        "output tps p50": tables.sampled(median(tps), len(tps), "", 1),
        "cost / 1k requests": usd(round(sum(costs) * 1000 / len(costs))),
        "pass rate": f"{int(str(passed)) / n_graded:.1%} of {n_graded:,}" if n_graded else "-",
        "cache saving": usd(sum(savings)),
    }


def test_the_scorecard_shows_each_models_figures_from_the_store(seeded: Path) -> None:
    app = open_page(seeded, "compare")
    assert "Scorecard" in [h.value for h in app.subheader]
    app.multiselect(key="compare_batches").set_value(app.multiselect(key="compare_batches").options)
    card = rerun(app).table[0].value
    assert list(card.columns) == ["model", *tables.SCORECARD_HELP]
    card = card.set_index("model")
    assert sorted(card.index) == sorted(MODELS)
    for model in MODELS:
        want = expected(seeded, model)
        for label, value in want.items():
            assert card.loc[model, label] == value, (model, label)
    # The faulty batch failed every M3 request: a success rate below 100%; the graded batch's
    # answers give a pass rate; each median says how many results it is over.
    assert card.loc["MiniMax-M3", "success rate"] != "100.0%"
    assert all(card["pass rate"] != "-")
    assert all("(n=" in v for v in card["latency p50"])
    assert not [v for v in card["output tps p50"] if v.startswith("-")]  # timed answers
    assert "pass rate by grader ` expect `" in " ".join(c.value for c in app.caption)
    # The full table is behind an expander, under the scorecard.
    assert "Full table: every figure" in [e.label for e in app.expander]


def test_the_scorecard_follows_the_model_choice(seeded: Path) -> None:
    app = open_page(seeded, "compare")  # the newest batch: the demo, not graded
    card = app.table[0].value.set_index("model")
    assert set(card["pass rate"]) == {"-"}
    app.multiselect(key="compare_models").set_value(["MiniMax-M2.7-highspeed"])
    card = rerun(app).table[0].value
    assert list(card["model"]) == ["MiniMax-M2.7-highspeed"]


def linear_quantile(values: list[float], q: float) -> float:
    """The quantile with linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def test_the_full_table_counts_each_percentiles_samples_and_the_slow_tail_of_tps(
    seeded: Path,
) -> None:
    app = open_page(seeded, "compare")  # the demo batch
    table = app.dataframe[0].value.set_index("model")
    assert "output tps p90" not in table.columns  # the fast end, not shown as if it were a tail
    assert "output tps p99" not in table.columns
    for model in MODELS:
        rows = db_rows(
            seeded,
            "SELECT r.done_s, r.first_token_s, r.first_text_s, r.last_token_s, r.output_tokens "
            "FROM results r JOIN batches b ON b.id = r.batch_id "
            f"WHERE b.name = 'demo' AND r.model = '{model}'",
        )
        firsts = [r for r in rows if r[1] is not None]
        tps = [
            int(str(r[4])) / (float(str(r[3])) - float(str(r[1])))
            for r in firsts
            if r[3] is not None and float(str(r[3])) > float(str(r[1]))
        ]
        assert table.loc[model, "latency n"] == len(rows)
        assert table.loc[model, "TTFT n"] == len(firsts)
        assert table.loc[model, "TTFT text n"] == len([r for r in rows if r[2] is not None])
        assert table.loc[model, "output tps n"] == len(tps)
        for label, q in (("p10", 0.1), ("p1", 0.01)):
            shown = table.loc[model, f"output tps {label} (slow tail)"]
            assert shown == pytest.approx(linear_quantile(tps, q)), (model, label)
        assert table.loc[model, "output tps p1 (slow tail)"] <= table.loc[model, "output tps p50"]
    captions = " ".join(c.value for c in app.caption)
    assert "**output tps p10 / p1 (slow tail)**" in captions
    assert "**n**:" in captions


def chart_specs(app: AppTest) -> list[tuple[dict[str, Any], list[pa.Table]]]:
    """The Vega-Lite spec of each of the page's charts, with its data (Arrow tables)."""
    return [
        (
            json.loads(chart.proto.spec),
            [pa.ipc.open_stream(d.data.data).read_all() for d in chart.proto.datasets],
        )
        for chart in app.get("vega_lite_chart")
    ]


def test_charts_show_model_names_in_full_and_hours_in_utc(seeded: Path) -> None:
    app = open_page(seeded, "compare")
    app.segmented_control(key="compare_charts").set_value("distributions")
    compare = chart_specs(rerun(app))
    axes = [
        layer["encoding"]["y"]
        for spec, _ in compare
        for layer in spec.get("layer", [spec])
        if layer["encoding"].get("y", {}).get("field") == "model"
    ]
    assert len(axes) >= 4  # the latency, TTFT, tps and TTFT (text) boxes
    for axis in axes:  # Streamlit's theme would cut a name at 100 px ("MiniMax-M2.7-hig...")
        assert axis["axis"]["labelLimit"] == 0
    overview = open_page(seeded, "overview")
    overview.segmented_control(key="overview_every").set_value("hour")
    [chart] = rerun(overview).get("vega_lite_chart")  # both charts in one view, side by side
    spend, cumulative = json.loads(chart.proto.spec)["hconcat"]
    periods = next(
        pa.ipc.open_stream(d.data.data).read_all()
        for d in chart.proto.datasets
        if d.name == spend["data"]["name"]
    )
    assert spend["encoding"]["x"]["timeUnit"] == "utcyearmonthdatehours"
    assert spend["encoding"]["x"]["axis"]["format"] == "%b %d %H:00"
    assert cumulative["encoding"]["x"]["scale"]["type"] == "utc"
    # The periods are UTC instants: the first is the hour of the first real result, in UTC.
    [(first,)] = db_rows(seeded, "SELECT min(sent_at) FROM results WHERE NOT simulated")
    sent = datetime.fromtimestamp(float(str(first)), tz=UTC)
    column = periods.column("period")
    assert str(column.type.tz) == "UTC"
    assert column[0].as_py() == sent.replace(minute=0, second=0, microsecond=0)


def test_requests_means_every_request_and_results_the_answered_ones_on_every_page(
    seeded: Path,
) -> None:
    [(requests,)] = db_rows(seeded, "SELECT count(*) FROM requests")
    [(results,)] = db_rows(seeded, "SELECT count(*) FROM results")
    assert int(str(results)) < int(str(requests))  # M3 failed the faulty batch: no results
    overview = open_page(seeded, "overview")
    assert {m.label: m.value for m in overview.metric}["Requests"] == f"{int(str(requests)):,}"
    compare = open_page(seeded, "compare")
    compare.multiselect(key="compare_batches").set_value(
        compare.multiselect(key="compare_batches").options
    )
    card = rerun(compare).table[0].value
    assert sum(int(n.replace(",", "")) for n in card["requests"]) == int(str(requests))
    spend = open_page(seeded, "spend")
    spend.segmented_control(key="spend_by").set_value("model")
    table = rerun(spend).dataframe[0].value
    assert "requests" not in table.columns  # it counted results: now named so
    assert int(table["results"].sum()) == int(str(results))

"""Every dashboard page through streamlit's AppTest, over stores made by real runs."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from batchrun import analytics
from batchrun.dashboard import data, tables, text
from batchrun.pricing import usd
from batchrun.store import Store, database_url
from batchrun.teams.claims import claim, register
from bench.synthetic_store import build
from tests.dashboardfixtures import (
    MODELS,
    cache_figures,
    hostile_store,
    hostile_texts,
    seeded_copy,
    under_reported_store,
)
from tests.dbfixtures import postgres_server, postgres_url  # noqa: F401 - fixtures
from tests.helpers import db_rows
from tests.thinkserver import run_think_jobs, think_api

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seeded_copy(tmp_path_factory, "dash")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated store: errors, retries, pending requests, an unpriced model, a capped batch."""
    path = tmp_path_factory.mktemp("synthetic") / "synthetic.db"
    build(database_url(str(path)), 2400)
    return path


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test reads its own store: streamlit's caches live as long as the process."""
    monkeypatch.setenv("BATCHRUN_DB", "")  # restored after the test; open_page sets it
    st.cache_data.clear()
    st.cache_resource.clear()


def open_page(db: Path | str, page: str) -> AppTest:
    """Run the dashboard on ``page`` reading ``db`` (as `batchrun dashboard --db` passes it)."""
    os.environ["BATCHRUN_DB"] = str(db)
    app = AppTest.from_file(APP, default_timeout=60)
    app.query_params["page"] = page
    return rerun(app)


def rerun(app: AppTest) -> AppTest:
    """Run (again, after changing a control) and check nothing raised."""
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def texts(app: AppTest) -> str:
    """Everything written on the page as text: markdown, captions, alerts, metrics, tables
    (interactive and static)."""
    parts = [e.value for e in app.markdown] + [e.value for e in app.caption]
    parts += [e.value for e in (*app.warning, *app.info, *app.error, *app.success)]
    parts += [f"{m.label}: {m.value}" for m in app.metric]
    parts += [frame.value.to_csv() for frame in (*app.dataframe, *app.table)]
    parts += [e.value for e in (*app.title, *app.subheader, *app.text)]
    return "\n".join(str(p) for p in parts)


def test_every_page_renders_and_names_the_models(seeded: Path) -> None:
    for page in ("overview", "compare", "outputs", "spend", "batch"):
        app = open_page(seeded, page)
        shown = texts(app)
        assert "simulated" in shown.lower(), page
        if page != "overview":  # spend names them in its estimate-against-actual table
            for model in MODELS:
                assert model in shown, (page, model)


def test_overview_shows_spend_requests_and_error_rate(seeded: Path) -> None:
    app = open_page(seeded, "overview")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Requests"] == f"{12 * 3 + 6 * 3 + 11 * 3:,}"
    assert metrics["Spend"].startswith("$")
    assert metrics["Error rate"].endswith("%")
    assert float(metrics["Error rate"].rstrip("%")) > 0  # the faulty batch's M3 requests
    assert "No batch is running" in texts(app)
    daily = [chart.proto.spec for chart in app.get("vega_lite_chart")]
    assert len(daily) == 1  # spend per period and the running total, one view side by side
    assert "Spend per day by model" in daily[0]
    assert "Cumulative spend by model" in daily[0]
    assert json.loads(daily[0])["hconcat"][0]["encoding"]["x"]["timeUnit"] == "utcyearmonthdate"
    app.segmented_control(key="overview_every").set_value("hour")
    [hourly] = [chart.proto.spec for chart in rerun(app).get("vega_lite_chart")]
    assert json.loads(hourly)["hconcat"][0]["encoding"]["x"]["timeUnit"] == (
        "utcyearmonthdatehours"
    )


def test_compare_table_follows_the_batch_model_and_grouping_choices(seeded: Path) -> None:
    app = open_page(seeded, "compare")
    table = app.dataframe[0].value
    assert sorted(table["model"]) == sorted(MODELS)
    assert {"latency p50 (s)", "TTFT p90 (s)", "output tps p50", "cost / 1k requests"} <= set(
        table.columns
    )
    assert "What these numbers mean" in [e.label for e in app.expander]
    app.multiselect(key="compare_models").set_value(["MiniMax-M3"])
    narrowed = rerun(app).dataframe[0].value
    assert list(narrowed["model"]) == ["MiniMax-M3"]
    faulty = next(o for o in app.multiselect(key="compare_batches").options if "faulty" in o)
    both = app.multiselect(key="compare_batches").options
    app.multiselect(key="compare_batches").set_value(both)
    app.segmented_control(key="compare_group").set_value("batch and model")
    grouped = rerun(app).dataframe[0].value
    assert sorted(set(grouped["batch_name"])) == ["demo", "faulty", "graded"], faulty
    # One set of charts at a time: cost per 1k and cost against speed; latency, TTFT, tps and
    # TTFT (text); and, since the graded batch is among those chosen, quality against cost and
    # against speed.
    drawn = {}
    for chosen in ("cost", "distributions", "quality"):
        app.segmented_control(key="compare_charts").set_value(chosen)
        drawn[chosen] = [chart.proto.spec for chart in rerun(app).get("vega_lite_chart")]
    assert {name: len(specs) for name, specs in drawn.items()} == {
        "cost": 2,
        "distributions": 4,
        "quality": 2,
    }
    assert "Cost against speed" in drawn["cost"][1]
    assert "Latency" in drawn["distributions"][0]
    assert "Quality against speed" in drawn["quality"][1]
    errors = texts(app)
    assert "Errors by type" in errors
    assert "api_error" in errors


# The catalog's prices (data/catalog.toml) in nano-dollars per token: input, cache read, cache
# write (MiniMax lists no cache-write price for M3, which never reports cache writes).
RATES = {
    "MiniMax-M2.7": (300, 60, 375),
    "MiniMax-M2.7-highspeed": (600, 60, 375),
    "MiniMax-M3": (300, 60, 0),
}
UNDER_REPORTED = "possibly under-reported"


def demo_tokens(db: Path) -> dict[str, tuple[int, ...]]:
    """Per model of the demo batch: results, results with a cache read, tokens read and written."""
    rows = db_rows(
        db,
        "SELECT r.model, count(*), sum(r.cache_read_tokens > 0), sum(r.cache_read_tokens), "
        "sum(r.cache_creation_tokens) FROM results r JOIN batches b ON b.id = r.batch_id "
        "WHERE b.name = 'demo' GROUP BY r.model",
    )
    return {str(row[0]): tuple(int(str(n)) for n in row[1:]) for row in rows}


def test_compare_shows_each_models_cache_figures(seeded: Path) -> None:
    app = open_page(seeded, "compare")  # the newest batch: the demo, whose lines share a prompt
    assert "Prompt caching" in [h.value for h in app.subheader]
    table = app.table[1].value.set_index("model")  # after the scorecard
    for model, figures in cache_figures(seeded, "demo").items():
        for label, value in figures.items():
            assert table.loc[model, label] == value, (model, label)
        assert table.loc[model, "cache figures"] == "ok"
    for model, (results, cached, read, written) in demo_tokens(seeded).items():
        assert (results, cached) == (12, 11), model  # each line after the first reads the prompt
        assert table.loc[model, "cached requests"] == "11 of 12"
        # The saving by hand: each token read from the cache costs the cache-read rate instead of
        # the input rate, each written one the cache-write rate instead.
        input_rate, read_rate, write_rate = RATES[model]
        saving = read * (input_rate - read_rate) + written * (input_rate - write_rate)
        assert table.loc[model, "cache saving"] == usd(saving), model
        assert (written > 0) == (model != "MiniMax-M3")  # the mark writes; M3 never reports it
    shown = texts(app)
    for name in ("cache hit rate", "cached requests", "cache writes", "cache saving"):
        assert f"**{name}**: {analytics.DEFINITIONS[name]}" in shown
    assert UNDER_REPORTED not in shown
    assert not [w for w in app.warning if "under-reported" in w.value]

    app.multiselect(key="compare_batches").set_value(app.multiselect(key="compare_batches").options)
    app.segmented_control(key="compare_group").set_value("batch and model")
    grouped = rerun(app).table[1].value
    faulty = grouped[grouped["batch_name"] == "faulty"].set_index("model")
    # Short prompts: nothing to cache; M3 failed every line of it: no prompt, no rate.
    assert dict(faulty["cache hit rate"]) == {
        "MiniMax-M2.7": "0.0%",
        "MiniMax-M2.7-highspeed": "0.0%",
        "MiniMax-M3": "-",
    }
    demo = grouped[grouped["batch_name"] == "demo"].set_index("model")
    assert list(demo["cache saving"]) == list(table["cache saving"])


def test_spend_shows_the_cache_figures_beside_the_spend(seeded: Path) -> None:
    app = open_page(seeded, "spend")
    headline = {m.label: m.value for m in app.metric}
    # Real spend (the batch run with a key) and the simulated batches' cost apart (issue 18).
    [(cost, saving, read, prompt)] = db_rows(
        seeded,
        "SELECT sum(cost_nanos), sum(uncached_cost_nanos - cost_nanos), sum(cache_read_tokens), "
        "sum(input_tokens + cache_read_tokens + cache_creation_tokens) FROM results "
        "WHERE NOT simulated",
    )
    [(simulated,)] = db_rows(seeded, "SELECT sum(cost_nanos) FROM results WHERE simulated")
    assert headline["Spend"] == usd(int(str(cost)))
    assert headline["Simulated cost (not billed)"] == usd(int(str(simulated)))
    assert headline["Cache saving"] == usd(int(str(saving)))
    assert headline["Cache hit rate"] == f"{int(str(read)) / int(str(prompt)):.1%}"
    app.segmented_control(key="spend_by").set_value("model")
    by_model = rerun(app).dataframe[0].value
    by_model = by_model[by_model["data"] == "MiniMax"].set_index("model")  # real rows only
    columns = list(by_model.columns)
    assert columns.index("cache saving") == columns.index("cost") + 1
    for model, figures in cache_figures(seeded, "faulty").items():  # the one real batch
        row = by_model.loc[model]
        assert f"{row['cache hit rate']:.1%}" == figures["cache hit rate"], model
        assert f"{row['cached requests']} of {row['results']}" == figures["cached requests"]
        assert row["cache saving"] == figures["cache saving"], model
        assert row["cache write cost"] == figures["cache write cost"], model
        assert row["cache figures"] == "ok"
    app.segmented_control(key="spend_by").set_value("batch")
    by_batch = rerun(app).dataframe[0].value.set_index("batch")
    saved = db_rows(
        seeded,
        "SELECT sum(r.uncached_cost_nanos - r.cost_nanos) FROM results r JOIN batches b "
        "ON b.id = r.batch_id WHERE b.name = 'demo'",
    )
    assert by_batch.loc["demo", "cache saving"] == usd(int(str(saved[0][0])))
    assert by_batch.loc["graded", "cache hit rate"] == 0.0
    assert f"**cache saving**: {analytics.DEFINITIONS['cache saving']}" in texts(app)


def test_under_reported_cache_reads_are_flagged_where_they_are(tmp_path: Path) -> None:
    db = under_reported_store(tmp_path)
    expected = db_rows(
        db, "SELECT model, count(*) FROM results WHERE expected_cache_tokens > 0 GROUP BY model"
    )
    assert expected == [("MiniMax-M2.7", 7)]  # M2.7's seven lines after its first
    assert db_rows(db, "SELECT sum(cache_read_tokens) FROM results") == [(0,)]  # the quirk
    reason = analytics.cache_trust_note(7, 7)
    assert reason
    for page in ("compare", "spend"):
        app = open_page(db, page)
        warned = [w.value for w in app.warning if "under-reported" in w.value]
        assert len(warned) == 1, page
        assert "MiniMax-M2.7" in warned[0]
        assert "MiniMax-M3" not in warned[0]
        assert reason in warned[0]
    table = app.dataframe[0].value  # the spend page, per day: the one day is flagged
    assert list(table["cache figures"]) == [UNDER_REPORTED]
    compare = open_page(db, "compare").table[1].value.set_index("model")
    assert compare.loc["MiniMax-M2.7", "cache figures"] == UNDER_REPORTED
    assert compare.loc["MiniMax-M3", "cache figures"] == "ok"
    assert compare.loc["MiniMax-M2.7", "cache hit rate"] == "0.0%"


def test_names_in_markdown_are_set_as_typed() -> None:
    # A model or batch name in a warning is Markdown's inline code: no emphasis, colours, links.
    assert tables.literal("M*2* :red[x] $y$") == "` M*2* :red[x] $y$ `"
    assert tables.literal("a`b") == "`` a`b ``"  # a longer fence than any run inside
    assert tables.literal("two\n\nlines") == "` two lines `"  # a blank line would end it


def test_shown_names_stay_plain_unless_markdown_could_act_on_them() -> None:
    for plain in ("MiniMax-M2.7", "job-0003", "2026-12-01", "my batch", "a_b_c"):
        assert text.shown(plain) == plain
    for marked in ("**b**", "1.", "12. x", "a--b", "www.x.com", "a  b", "_x_", ":red[x]", "x:y"):
        assert text.shown(marked) == text.literal(marked), marked


def test_rendered_answers_have_no_image_link_or_raw_html() -> None:
    hostile = hostile_texts("http://127.0.0.1:9")
    html = text.rendered_html(hostile["answer"] + "\n\n<script>alert(1)</script> <http://a.b/c>")
    assert "<strong>bold</strong>" in html  # Markdown is drawn...
    tags, attributes = html_tags(html)  # ...but no tag that loads or opens anything
    assert tags <= {"div", "p", "strong", "em", "code", "s"}, tags
    assert attributes <= {"class"}, attributes
    assert "[image: x (http://127.0.0.1:9/leak?a)]" in html
    assert "&lt;img src=http://127.0.0.1:9/leak2&gt;" in html
    assert "ref <code>(http://127.0.0.1:9/leak-ref)</code>" in html  # a link: text, address
    assert "[click](javascript:alert(1))" in html  # not a link at all


def html_tags(html: str) -> tuple[set[str], set[str]]:
    """The tags and the attribute names in some HTML, as a browser's parser reads them."""
    tags: set[str] = set()
    attributes: set[str] = set()

    class Reader(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.add(tag)
            attributes.update(name for name, _ in attrs)

    Reader().feed(html)
    return tags, attributes


def test_text_from_the_store_is_shown_as_typed_on_every_page(tmp_path: Path) -> None:
    """Answers, prompts, thinking, errors, judge reasons, custom ids, batch and model names: never
    given to Markdown as they are (only plain, as code, or in st.text), on every page."""
    origin = "http://127.0.0.1:9"
    hostile = hostile_texts(origin)
    db = hostile_store(tmp_path, origin)
    markdown_everywhere: list[str] = []
    for page in ("overview", "compare", "outputs", "spend", "batch"):
        app = open_page(db, page)
        markdown_everywhere += [str(e.value) for e in (
            *app.markdown, *app.caption, *app.warning, *app.info, *app.error, *app.success,
            *app.title, *app.subheader)]  # fmt: skip
        markdown_everywhere += [str(e.proto.text) for e in app.get("progress")]
        for table in app.table:
            markdown_everywhere += [str(v) for v in table.value.to_numpy().ravel()]
        if page == "outputs":
            outputs = app
    assert any(origin in value for value in markdown_everywhere)  # names are on the pages...
    for value in markdown_everywhere:  # ...but only inside code spans: never an image or link
        assert origin not in re.sub(r"(`+) .*? \1", "", value), value
    plain = [t.value for t in outputs.text]
    assert f"{hostile['prompt_first']}\n{hostile['prompt_second']}" in "\n".join(plain)
    assert hostile["answer"] in plain
    assert hostile["thinking"] in plain
    assert hostile["error"] in plain
    assert hostile["reason"] in plain
    assert hostile["system"] in plain
    assert text.literal(hostile["model"]) in [h.value for h in outputs.subheader]
    assert not outputs.get("html")  # the rendered view is off by default
    outputs.toggle(key="outputs_rendered").set_value(True)
    rerun(outputs)
    [rendered] = outputs.get("html")
    assert "[image: x (http://127.0.0.1:9/leak?a)]" in rendered.proto.body
    assert "<img" not in rendered.proto.body


def test_outputs_side_by_side_search_and_filters(seeded: Path) -> None:
    app = open_page(seeded, "outputs")
    headers = [h.value for h in app.subheader]
    assert "Prompt" in headers
    assert all(model in headers for model in MODELS)
    jobs = app.selectbox(key="outputs_job").options
    assert len(jobs) == 12
    app.text_input(key="outputs_search").input("rivers of Europe")
    searched = rerun(app)
    assert searched.selectbox(key="outputs_job").options == ["job-0003"]
    assert "Name three rivers of Europe." in texts(searched)
    searched.text_input(key="outputs_search").input("")
    batches = searched.selectbox(key="outputs_batch").options
    searched.selectbox(key="outputs_batch").set_value(next(b for b in batches if "faulty" in b))
    searched.checkbox(key="outputs_failed").check()
    failed = rerun(searched)
    assert len(failed.selectbox(key="outputs_job").options) == 6  # M3 failed every job
    assert any("api_error" in e.value for e in failed.error)
    failed.checkbox(key="outputs_failed").uncheck()
    failed.checkbox(key="outputs_spread").check()
    spread = rerun(failed)
    assert sorted(spread.selectbox(key="outputs_job").options) == sorted(jobs[:6])


def test_quality_pareto_and_grades_beside_answers(seeded: Path) -> None:
    app = open_page(seeded, "compare")
    assert app.segmented_control(key="compare_charts").value == "cost"  # nothing graded
    app.segmented_control(key="compare_charts").set_value("quality")
    assert "No graded answers in these batches" in texts(rerun(app))  # the demo has none
    assert app.query_params["charts"] == "quality"  # not the default here: kept in the link
    graded = next(o for o in app.multiselect(key="compare_batches").options if "graded" in o)
    app.multiselect(key="compare_batches").set_value([graded])
    rerun(app)
    specs = [chart.proto.spec for chart in app.get("vega_lite_chart")]
    assert len(specs) == 2  # one set of charts at a time: quality's two
    assert "charts" not in app.query_params  # quality is where answers are graded: the default
    assert any("Quality against cost" in spec for spec in specs)
    assert any("Quality against speed" in spec for spec in specs)
    quality = app.dataframe[-1].value.set_index("model")
    # jobs/graded-sim.jsonl's markers: 10, 8 and 6 of 11 answers right (see test_grading_cli).
    assert quality.loc["MiniMax-M3", "passed"] == 10
    assert quality.loc["MiniMax-M2.7", "passed"] == 8
    assert quality.loc["MiniMax-M2.7-highspeed", "passed"] == 6
    m3 = quality.loc["MiniMax-M3"]
    assert 0 < m3["95% low"] < 10 / 11 < m3["95% high"] < 1

    outputs = open_page(seeded, "outputs")
    batches = outputs.selectbox(key="outputs_batch").options
    outputs.selectbox(key="outputs_batch").set_value(next(b for b in batches if "graded" in b))
    rerun(outputs)
    everything = outputs.selectbox(key="outputs_job").options
    assert len(everything) == 11
    assert "passed" in texts(outputs)
    outputs.checkbox(key="outputs_disagree").check()
    split = rerun(outputs).selectbox(key="outputs_job").options
    assert 0 < len(split) < len(everything)
    shown = texts(outputs)
    assert "failed" in shown
    assert "passed" in shown


def test_spend_page_by_day_model_batch_and_budget(seeded: Path) -> None:
    app = open_page(seeded, "spend")
    shown = texts(app)
    assert "Budget caps" in shown
    bars = [bar.proto.text for bar in app.get("progress")]
    assert len(bars) == 1
    assert bars[0].startswith("demo: $")
    assert "of $5.0000" in bars[0]
    app.segmented_control(key="spend_by").set_value("model")
    by_model = rerun(app).dataframe[0].value
    assert sorted(set(by_model["model"])) == sorted(MODELS)
    app.segmented_control(key="spend_by").set_value("batch")
    by_batch = rerun(app).dataframe[0].value
    assert sorted(by_batch["batch"]) == ["demo", "faulty", "graded"]
    assert all(str(cost).startswith("$") for cost in by_batch["cost"])
    estimate = app.dataframe[-1].value.set_index("model")
    assert "cost expected" in estimate.columns
    # count_tokens counts the whole prompt; the results' input tokens leave the cached part out
    prompt = estimate["prompt tokens actual"]
    assert (estimate["input tokens actual"] < prompt).all()  # the demo read its system prompt
    for model, figures in cache_figures(seeded, "demo").items():
        assert f"{prompt[model]:,}" == figures["prompt tokens"]


def test_batch_detail_filters_and_downloads(seeded: Path) -> None:
    app = open_page(seeded, "batch")
    rows = app.dataframe[0].value
    assert len(rows) == 36
    assert "Invalid lines in the file (1)" in texts(app)
    app.multiselect(key="detail_models").set_value(["MiniMax-M3"])
    assert len(rerun(app).dataframe[0].value) == 12
    app.text_input(key="detail_search").input("job-0001")
    assert list(rerun(app).dataframe[0].value["custom_id"]) == ["job-0001"]
    app.button(key="detail_prepare").click()
    ready = rerun(app)
    labels = [button.proto.label for button in ready.get("download_button")]
    assert labels == ["Download CSV", "Download Parquet"]


def test_overview_shows_running_batches_and_progress(synthetic: Path, tmp_path: Path) -> None:
    copy = tmp_path / "running.db"
    copy.write_bytes(synthetic.read_bytes())
    store = Store(database_url(str(copy)))
    store.set_batch("synthetic0001", status="running")
    register(store, "worker-a")
    held = claim(store, "synthetic0001", "MiniMax-M3", owner="worker-a", limit=3, lease_s=60)
    vitals = {"sent": 42, "sent_per_min": 40.5, "stall_s": 0.01, "stall_max_s": 0.25}
    store.claims.record_vitals("worker-a", vitals)
    store.close()
    app = open_page(copy, "overview")
    bars = [bar.proto.text for bar in app.get("progress")]
    assert len(bars) == 1
    assert bars[0].startswith("synthetic-1 (simulated): ")
    assert "of 600 requests finished" in bars[0]
    workers = app.dataframe[0].value
    assert list(workers["worker"]) == ["worker-a"]
    assert list(workers["claims held"]) == [len(held)]
    assert list(workers["rate (req/min)"]) == [40.5]
    assert list(workers["longest loop stall (s)"]) == [0.25]
    assert len(held) > 0


def test_unpriced_models_are_flagged_never_zero(synthetic: Path) -> None:
    spend_page = open_page(synthetic, "spend")
    spend = texts(spend_page)
    assert "have no price" in spend
    assert "$0.000000" not in spend
    headline = {m.label: m.value for m in spend_page.metric}
    assert headline["Spend"] == "none"  # all simulated: short, so a narrow column never cuts it
    assert tables.NO_REAL_NOTE in texts(spend_page)
    overview = open_page(synthetic, "overview")
    assert {m.label: m.value for m in overview.metric}["Spend"] == "none"
    assert tables.NO_REAL_NOTE in texts(overview)
    simulated = headline["Simulated cost (not billed)"]
    assert simulated.startswith("$")
    assert simulated.endswith(" unpriced")  # M3's results, beside the priced cost
    assert headline["Cache saving"].startswith("unknown (")  # no uncached cost stored
    assert headline["Cache hit rate"] == "0.0%"
    compare = open_page(synthetic, "compare")
    table = compare.dataframe[0].value
    m3 = table[table["model"] == "MiniMax-M3"].iloc[0]
    assert m3["cost"].startswith("unpriced")
    assert "No price is known for MiniMax-M3" in texts(compare)
    caching = compare.table[1].value.set_index("model")
    assert caching.loc["MiniMax-M3", "cache saving"] == m3["cost"]  # "unpriced (N)", not $0
    assert caching.loc["MiniMax-M3", "cache write cost"] == "unpriced"
    # The generator stores no uncached cost (as rows from before batchrun kept it): the saving
    # of the priced models is unknown, not $0, and says for how many results.
    priced = caching.loc["MiniMax-M2.7"]
    succeeded = table[table["model"] == "MiniMax-M2.7"].iloc[0]["succeeded"]
    assert priced["cache saving"] == f"unknown ({succeeded:,})"
    assert "batchrun reprice" in texts(compare)
    assert "No result read its prompt from the cache" in texts(compare)
    assert "$0.000000" not in texts(compare)


def test_compare_counts_leaked_reasoning_and_empty_replies(tmp_path: Path) -> None:
    with think_api() as served:
        run_think_jobs(tmp_path, served).store.close()
    app = open_page(tmp_path / "batchrun.db", "compare")
    table = app.dataframe[0].value
    row = table[table["model"] == "MiniMax-M3"].iloc[0]
    assert (row["think leaked"], row["empty replies"]) == (2, 1)
    shown = texts(app)
    assert "MiniMax-M3: 2 think leaked, 1 empty" in shown
    assert "sent its reasoning as visible text" in shown  # the caption says what it means
    outputs = open_page(tmp_path / "batchrun.db", "outputs")
    outputs.selectbox(key="outputs_job").set_value("empty")
    assert "empty reply" in texts(rerun(outputs))
    outputs.selectbox(key="outputs_job").set_value("leak")
    thinking = [t.value for e in rerun(outputs).expander for t in e.text]
    answers = [t.value for t in outputs.text if t.value not in thinking]  # and the prompt
    assert "42" in answers  # the visible answer, alone
    assert not [a for a in answers if "<think>" in a or "six times seven is 42" in a]
    assert "six times seven is 42" in thinking  # under Thinking


@pytest.mark.postgres
def test_every_page_reads_postgresql(request: pytest.FixtureRequest) -> None:
    url = str(request.getfixturevalue("postgres_url"))
    build(url, 600)
    try:
        for page in ("overview", "compare", "outputs", "spend", "batch"):
            app = open_page(url, page)
            where = "\n".join(e.value for e in app.sidebar.caption)
            assert "postgresql+psycopg://postgres@127.0.0.1:5432/" in where
            shown = texts(app)
            if page in ("compare", "batch"):
                assert "MiniMax-M2.7-highspeed" in shown
    finally:
        data.store(url).close()  # let the database be dropped


def test_an_empty_or_missing_store_says_how_to_start(tmp_path: Path) -> None:
    missing = open_page(tmp_path / "nothing-here.db", "overview")
    assert "batchrun run jobs/demo.jsonl" in texts(missing)
    assert not (tmp_path / "nothing-here.db").exists()  # looking does not create it
    Store(database_url(str(tmp_path / "empty.db"))).close()
    for page in ("overview", "compare", "batch"):
        assert "No batches" in texts(open_page(tmp_path / "empty.db", page))


def test_every_click_in_the_sidebar_opens_its_page(seeded: Path) -> None:
    """Page after page in one session, as a person clicks: none of the clicks is lost (a radio
    whose default followed the address was a new widget after each move, back on its default)."""
    app = open_page(seeded, "batch")
    for slug, title in (("overview", "Overview"), ("compare", "Compare models"),
                        ("spend", "Spend"), ("outputs", "Outputs side by side"),
                        ("batch", "Batch detail"), ("spend", "Spend")):  # fmt: skip
        app.sidebar.radio[0].set_value(slug)
        rerun(app)
        assert app.title[0].value == title, slug
        assert app.query_params["page"] == slug

"""The Spend page (and Overview's capped batches) through AppTest, over a synthetic store with a
batch stopped at its cap, an overrun and an unpriced model; every figure is checked against
what the store's rows give, computed here in SQL."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal
from streamlit.testing.v1 import AppTest

from batchrun import analytics
from batchrun.dashboard import charts, data, spend_chart, tables
from batchrun.store import Store, database_url
from bench.synthetic_store import build
from tests.dashboardfixtures import seeded_copy, under_reported_store
from tests.helpers import db_rows
from tests.test_dashboard import (  # noqa: F401 - fixture
    APP,
    fresh_caches,
    open_page,
    rerun,
    texts,
)

AT_CAP = "synthetic0000"  # 97% of its cap spent, requests pending: stopped at its cap
OVER = "synthetic0002"  # 269% of its cap
NEWEST = "synthetic0003"  # the batch Compare shows first
UNPRICED = "MiniMax-M3"


def spent(db: Path, batch_id: str) -> int:
    """The batch's priced spend, from the results table."""
    row = db_rows(db, f"select sum(cost_nanos) from results where batch_id = '{batch_id}'")
    return int(str(row[0][0]))


def scalar(db: Path, query: str) -> int:
    return int(str(db_rows(db, query)[0][0]))


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return capped_store(tmp_path_factory.mktemp("spend"))


def capped_store(directory: Path) -> Path:
    """A synthetic store made real (not simulated) with one batch at 97% of its cap and
    requests pending, and one at 269% of its cap."""
    path = directory / "spend.db"
    build(database_url(str(path)), 2400)
    with sqlite3.connect(path) as connection:
        connection.execute("update results set simulated = 0")
        connection.execute("update batches set simulated = 0, status = 'paused'")
        for batch_id, share in ((AT_CAP, 0.97), (OVER, 2.69)):
            cost = connection.execute(
                "select sum(cost_nanos) from results where batch_id = ?", (batch_id,)
            ).fetchone()[0]
            connection.execute(
                "update batches set max_cost_nanos = ? where id = ?",
                (round(cost / share), batch_id),
            )
    resummed(path)
    return path


def resummed(path: Path) -> None:
    """The store's aggregates worked out again after its results were changed in SQL."""
    store = Store(database_url(str(path)))
    store.rebuild_aggregates()
    store.close()


def cap_of(db: Path, batch_id: str) -> int:
    return scalar(db, f"select max_cost_nanos from batches where id = '{batch_id}'")


def pending(db: Path, batch_id: str) -> int:
    query = f"select count(*) from requests where batch_id = '{batch_id}' and status = 'pending'"
    return scalar(db, query)


def test_a_batch_at_its_cap_says_so_with_what_is_left_and_the_resume_command(
    capped: Path,
) -> None:
    for page in ("spend", "overview"):
        app = open_page(capped, page)
        warnings = [w.value for w in app.warning]
        at_cap = [w for w in warnings if w.startswith("synthetic-0: stopped at its cap")]
        assert len(at_cap) == 1, (page, warnings)
        left = pending(capped, AT_CAP)
        assert left > 0
        cap = cap_of(capped, AT_CAP)
        share = spent(capped, AT_CAP) / cap
        unpriced = scalar(
            capped,
            f"select count(*) from results where cost_nanos is null and batch_id = '{AT_CAP}'",
        )
        money = tables.money(spent(capped, AT_CAP), unpriced)
        assert at_cap[0] == (
            f"synthetic-0: stopped at its cap: {left:,} requests pending; "
            f"{money} of {tables.money(cap)} ({share:.0%} of the cap)"
        )
        commands = [c.value for c in app.code]
        assert "batchrun resume synthetic-0 --max-cost USD" in commands


def test_an_overrun_is_red_with_its_percentage(capped: Path) -> None:
    for page in ("spend", "overview"):
        app = open_page(capped, page)
        errors = [e.value for e in app.error]
        over = [e for e in errors if e.startswith("synthetic-2: over its cap")]
        assert len(over) == 1, (page, errors)
        cost, cap = spent(capped, OVER), cap_of(capped, OVER)
        assert f"({cost / cap:.0%} of the cap, {tables.money(cost - cap)} over)" in over[0]
        assert f"{cost / cap:.0%}" == "269%"
    # The batches within their cap stay bars on the Spend page, not on Overview.
    spend = open_page(capped, "spend")
    assert len(spend.get("progress")) == 0  # only two capped batches: both are noticed


def test_the_unpriced_count_is_a_headline_of_its_own(capped: Path) -> None:
    app = open_page(capped, "spend")
    headline = {m.label: m.value for m in app.metric}
    unpriced = scalar(
        capped, "select count(*) from results where cost_nanos is null and simulated = 0"
    )
    priced = scalar(capped, "select sum(cost_nanos) from results where simulated = 0")
    assert unpriced > 0
    assert headline["Unpriced results (not in Spend)"] == f"{unpriced:,}"
    assert headline["Spend"] == tables.money(priced)  # the count beside it, never cut


def _chart_data(app: AppTest, title: str = "Spend per day by model") -> list[dict[str, Any]]:
    """Every row the page's Vega-Lite chart carries (its datasets, as sent to the browser)."""
    charts = app.get("vega_lite_chart")
    assert len(charts) == 1
    spec = json.loads(charts[0].proto.spec)
    assert title in json.dumps(spec)
    rows: list[dict[str, Any]] = []
    for dataset in charts[0].proto.datasets:
        table = pa.ipc.open_stream(dataset.data.data).read_all()
        rows += table.to_pylist()
    return rows


def test_the_chart_never_draws_unpriced_as_zero(capped: Path) -> None:
    daily = analytics.spend_over_time(
        pl.DataFrame(
            db_rows(
                capped,
                "select sent_at, r.model, cost_nanos from results join requests r "
                "on r.id = results.request_id where results.simulated = 0",
            ),
            schema=["sent_at", "model", "cost_nanos"],
            orient="row",
        ).with_columns(
            day=pl.from_epoch("sent_at", time_unit="s").dt.date(),
        ),
        "day",
    )
    unpriced = daily.filter(pl.col("model") == UNPRICED)
    assert unpriced.get_column("cost_nanos").null_count() == unpriced.height  # never $0
    assert unpriced.get_column("cumulative_nanos").null_count() == unpriced.height
    assert unpriced.get_column("cumulative_unpriced").max() == scalar(
        capped, "select count(*) from results where cost_nanos is null and simulated = 0"
    )
    drawn = spend_chart.segments(daily)
    assert drawn.filter(pl.col("USD") == 0).is_empty()
    app = open_page(capped, "spend")
    assert "never drawn as $0" in texts(app)
    rows = _chart_data(app)
    m3 = [r for r in rows if r.get("model") == UNPRICED]
    assert m3, "the unpriced model is marked on the chart"
    assert all(r["cost_nanos"] is None for r in m3)  # none drawn as $0
    priced = [r for r in rows if r.get("USD") is not None]
    assert priced
    assert all(r["model"] != UNPRICED for r in priced)
    assert sum(int(r["unpriced"]) for r in m3) == unpriced.get_column("unpriced").sum()


def test_the_date_range_narrows_the_headline_chart_and_table(capped: Path) -> None:
    app = open_page(capped, "spend")
    days = sorted(
        date.fromisoformat(str(d[0]))
        for d in db_rows(
            capped, "select distinct date(sent_at, 'unixepoch') from results where simulated = 0"
        )
    )
    assert len(days) > 3
    since, until = days[-3], days[-1]
    app.date_input(key="spend_range").set_value((since, until))
    rerun(app)
    start = datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp()
    end = (datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1)).timestamp()
    where = f"simulated = 0 and sent_at >= {start} and sent_at < {end}"
    priced = scalar(capped, f"select sum(cost_nanos) from results where {where}")
    unpriced = scalar(capped, f"select count(*) from results where cost_nanos is null and {where}")
    headline = {m.label: m.value for m in app.metric}
    assert headline["Spend"] == tables.money(priced)
    assert headline["Unpriced results (not in Spend)"] == f"{unpriced:,}"
    table = app.dataframe[0].value
    assert sorted(set(table["day"])) == [str(d) for d in days[-3:]]
    # The caps still count each batch's whole spend.
    assert any(e.value.startswith("synthetic-2: over its cap") for e in app.error)
    app.segmented_control(key="spend_every").set_value("hour")
    rerun(app)
    charts = app.get("vega_lite_chart")
    assert "Spend per hour by model" in charts[0].proto.spec


def test_budgets_per_day_and_month_per_model_with_a_soft_threshold(
    capped: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "today.db"
    db.write_bytes(capped.read_bytes())
    now = datetime.now(UTC)
    with sqlite3.connect(db) as connection:  # the last batch's results were sent a minute ago
        connection.execute(
            "update results set sent_at = ? where batch_id = 'synthetic0003'",
            (now.timestamp() - 60,),
        )
    resummed(db)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp()

    month = datetime(now.year, now.month, 1, tzinfo=UTC).timestamp()

    def today(model: str | None = None, since: float = midnight) -> tuple[int | None, int]:
        where = f"simulated = 0 and sent_at >= {since}"
        where += (
            f" and request_id in (select id from requests where model = '{model}')" if model else ""
        )
        cost, unpriced = db_rows(
            db, f"select sum(cost_nanos), sum(cost_nanos is null) from results where {where}"
        )[0]
        return (None if cost is None else int(str(cost))), int(str(unpriced))

    everything, unpriced_all = today()
    m27, _ = today("MiniMax-M2.7")
    fast, _ = today("MiniMax-M2.7-highspeed", since=month)
    m3, m3_unpriced = today(UNPRICED)
    assert everything
    assert m27
    assert fast
    assert m3 is None
    assert m3_unpriced > 0
    caps_usd = {
        "all": everything / 0.5 / 1e9,  # half used: a bar
        "MiniMax-M2.7": m27 / 0.85 / 1e9,  # past the 80% threshold: amber
        "MiniMax-M2.7-highspeed": fast / 1.5 / 1e9,  # 150%: red
    }
    budgets_toml = tmp_path / "budgets.toml"
    budgets_toml.write_text(
        "warn_at = 0.8\n"
        f'[[budget]]\nperiod = "day"\nusd = "{caps_usd["all"]:.9f}"\n'
        f'[[budget]]\nperiod = "day"\nmodel = "MiniMax-M2.7"\n'
        f'usd = "{caps_usd["MiniMax-M2.7"]:.9f}"\n'
        f'[[budget]]\nperiod = "month"\nmodel = "MiniMax-M2.7-highspeed"\n'
        f'usd = "{caps_usd["MiniMax-M2.7-highspeed"]:.9f}"\n'
        f'[[budget]]\nperiod = "day"\nmodel = "{UNPRICED}"\nusd = 1\n'
    )
    monkeypatch.setenv("BATCHRUN_BUDGETS", str(budgets_toml))
    app = open_page(db, "spend")
    bars = [bar.proto.text for bar in app.get("progress")]

    def cap(usd: float) -> str:
        return tables.money(int(Decimal(f"{usd:.9f}") * 10**9))

    spent_today = tables.money(everything, unpriced_all)
    assert f"all models, today: {spent_today} of {cap(caps_usd['all'])} (50%)" in bars
    warnings = [w.value for w in app.warning]
    assert (
        f"MiniMax-M2.7, today: {tables.money(m27)} of {cap(caps_usd['MiniMax-M2.7'])} (85%), "
        "past the 80% warning threshold"
    ) in warnings
    errors = [e.value for e in app.error]
    over = [e for e in errors if e.startswith("MiniMax-M2.7-highspeed, this month")]
    assert len(over) == 1
    assert "(150%)" in over[0]
    # The unpriced model's budget: its results are counted, never as $0.
    assert f"MiniMax-M3, today: unpriced ({m3_unpriced:,}) of $1.0000 (0%)" in bars
    assert "$0.000000 of" not in texts(app)


def test_a_wrong_budgets_file_is_said_so(
    tmp_path: Path, capped: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = tmp_path / "budgets.toml"
    wrong.write_text('[[budget]]\nperiod = "week"\nusd = 5\n')
    monkeypatch.setenv("BATCHRUN_BUDGETS", str(wrong))
    app = open_page(capped, "spend")
    assert any("period must be 'day' or 'month'" in e.value for e in app.error)


def test_overviews_headline_keeps_the_unpriced_count_whole(capped: Path) -> None:
    app = open_page(capped, "overview")
    headline = {m.label: m.value for m in app.metric}
    where = "simulated = 0"
    priced = scalar(capped, f"select sum(cost_nanos) from results where {where}")
    unpriced = scalar(capped, f"select count(*) from results where cost_nanos is null and {where}")
    assert headline["Spend"] == tables.money(priced)
    assert headline["Unpriced results (not in Spend)"] == f"{unpriced:,}"


def test_the_command_line_reads_the_same_budgets(capped: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from batchrun.cli import app

    db = tmp_path / "today.db"
    db.write_bytes(capped.read_bytes())
    now = datetime.now(UTC)
    with sqlite3.connect(db) as connection:
        connection.execute(
            "update results set sent_at = ? where batch_id = 'synthetic0003'", (now.timestamp(),)
        )
    resummed(db)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp()
    where = f"simulated = 0 and sent_at >= {midnight}"
    today = scalar(db, f"select sum(cost_nanos) from results where {where}")
    unpriced = scalar(db, f"select count(*) from results where cost_nanos is null and {where}")
    file = tmp_path / "budgets.toml"
    file.write_text(f'[[budget]]\nperiod = "day"\nusd = "{today / 0.9 / 1e9:.9f}"\n')
    result = CliRunner().invoke(
        app, ["budgets", "--file", str(file), "--db", str(db), "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)["budgets"]
    assert (row["cost_nanos"], row["unpriced"], row["state"]) == (today, unpriced, "warn")
    assert round(row["used"], 2) == 0.9
    table = CliRunner().invoke(app, ["budgets", "--file", str(file), "--db", str(db)])
    assert "past its threshold" in table.output


def _with_stop_reason(capped: Path, directory: Path, share: float, reason: str) -> Path:
    """A copy of the capped store where the batch at its cap has spent ``share`` of it and its
    last run stored ``reason``."""
    path = directory / "reason.db"
    path.write_bytes(capped.read_bytes())
    with sqlite3.connect(path) as connection:
        cost = spent(path, AT_CAP)
        connection.execute(
            "update batches set max_cost_nanos = ?, stop_reason = ? where id = ?",
            (round(cost / share), reason, AT_CAP),
        )
    return path


def test_the_stored_stop_reason_says_a_batch_stopped_at_its_cap_far_from_it(
    capped: Path, tmp_path: Path
) -> None:
    # At 50% of its cap, inference alone says "stopped"; the stored reason says the cap did it.
    db = _with_stop_reason(capped, tmp_path, 0.5, "budget")
    warnings = [w.value for w in open_page(db, "overview").warning]
    assert any(w.startswith("synthetic-0: stopped at its cap") for w in warnings), warnings


def test_a_batch_stopped_for_another_reason_is_not_shown_at_its_cap(
    capped: Path, tmp_path: Path
) -> None:
    # At 97% of its cap, inference alone says "stopped at its cap"; it was interrupted.
    db = _with_stop_reason(capped, tmp_path, 0.97, "interrupted")
    overview = open_page(db, "overview")
    assert not any(w.value.startswith("synthetic-0") for w in overview.warning)
    spend = open_page(db, "spend")
    bars = [p.proto.text for p in spend.get("progress")]
    assert any(b.startswith("synthetic-0: stopped (interrupted) with ") for b in bars), bars
    assert "batchrun resume synthetic-0" in [c.value for c in spend.code]


def _last_days(db: Path, where: str = "") -> tuple[date, date, str]:
    """The store's (or some results') last UTC days of real results (three, or two), and the SQL
    condition of them."""
    days = sorted(
        date.fromisoformat(str(d[0]))
        for d in db_rows(
            db,
            f"select distinct date(sent_at, 'unixepoch') from results where simulated = 0{where}",
        )
    )
    assert len(days) >= 3
    since, until = days[-3 if not where else -2], days[-1]
    start = datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp()
    end = (datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1)).timestamp()
    return since, until, f"sent_at >= {start} and sent_at < {end}"


def test_the_date_range_is_on_every_page_and_kept_in_the_address(capped: Path) -> None:
    since, until, within = _last_days(capped)
    os.environ["BATCHRUN_DB"] = str(capped)
    overview = AppTest.from_file(APP, default_timeout=60)
    overview.query_params.update(page="overview", since=str(since), until=str(until))
    rerun(overview)
    assert overview.date_input(key="overview_range").value == (since, until)
    priced = scalar(capped, f"select sum(cost_nanos) from results where simulated = 0 and {within}")
    assert {m.label: m.value for m in overview.metric}["Spend"] == tables.money(priced)

    # Compare shows the newest batch; a range inside its days (the store's last three days can be
    # all of them, when the store was built just after midnight UTC).
    since, until, _ = _last_days(capped, f" and batch_id = '{NEWEST}'")
    compare = open_page(capped, "compare")
    compare.date_input(key="compare_range").set_value((since, until))
    rerun(compare)
    assert (compare.query_params["since"], compare.query_params["until"]) == (
        str(since),
        str(until),
    )

    since, until, within = _last_days(capped, f" and batch_id = '{AT_CAP}'")
    detail = AppTest.from_file(APP, default_timeout=60)
    detail.query_params.update(page="batch", batch=AT_CAP, since=str(since), until=str(until))
    rerun(detail)
    in_range = within.replace("sent_at", "r.sent_at")
    kept = scalar(
        capped,
        "select count(*) from requests q left join results r on r.request_id = q.id "
        f"where q.batch_id = '{AT_CAP}' and (r.sent_at is null or {in_range})",
    )
    captions = [c.value for c in detail.caption]
    assert any(c.startswith(f"{kept:,} of {kept:,} requests match") for c in captions), captions
    assert kept < scalar(capped, f"select count(*) from requests where batch_id = '{AT_CAP}'")


def test_a_per_day_axis_ticks_once_a_day() -> None:
    """Left to itself, Vega ticked a one-day chart every few hours, each tick labelled with the
    same day ("Dec 01, Dec 01, Dec 02" in Chromium); per hour, its own ticks stay."""
    one_day = pl.DataFrame(
        {
            "model": ["MiniMax-M2.7", "MiniMax-M3"],
            "period": [date(2026, 12, 1)] * 2,
            "cost_nanos": [10**9, 2 * 10**9],
            "results": [1, 2],
            "cumulative_nanos": [10**9, 2 * 10**9],
            "unpriced": [0, 0],
            "cumulative_unpriced": [0, 0],
        }
    )
    daily = {"interval": "day", "step": 1}
    overview = charts.spend_over_time(one_day, "day").to_dict()["encoding"]["x"]["axis"]
    assert overview["tickCount"] == daily
    spend = spend_chart.spend_chart(one_day, "day").to_dict()["hconcat"][0]["layer"][0]
    assert spend["encoding"]["x"]["axis"] == {"format": "%b %d", "tickCount": daily}
    hourly = charts.spend_over_time(one_day, "hour").to_dict()["encoding"]["x"]["axis"]
    assert "tickCount" not in hourly


def assert_spend_from_sums_agrees(db: Path) -> None:
    """Every figure the Spend page takes from the sums equals the one the requests frame gives:
    the tables by day, model and batch (cache flag included), the chart's rows, the caps."""
    store = Store(database_url(str(db)))
    batches = [b.as_dict() for b in store.list_batches()]
    whole = analytics.requests_frame(*store.metric_rows(), batches)
    counts = {b["id"]: store.status_counts(b["id"]) for b in batches}
    summed = analytics.sums_frame(store.aggregate_rows(), counts, batches)
    assert summed.height < whole.height
    for by in ("day", "model", "batch"):
        assert_frame_equal(
            analytics.spend_from_sums(summed, by),
            analytics.spend(whole, by),
            check_dtypes=False,
            check_column_order=False,
        )
    for origin in (analytics.real, analytics.simulated):
        assert_frame_equal(
            analytics.spend_over_time(origin(summed), "day"),
            analytics.spend_over_time(origin(whole), "day"),
            check_dtypes=False,
        )
    assert_frame_equal(
        analytics.cap_states(batches, summed),
        analytics.cap_states(batches, whole),
        check_dtypes=False,
    )
    metrics = analytics.model_metrics(whole)
    assert_frame_equal(
        analytics.model_sums(summed),
        metrics.select(analytics.model_sums(summed).columns),
        check_dtypes=False,
    )
    from batchrun.dashboard.views import spend

    priced = whole.filter(pl.col("status") == "succeeded").get_column("cost_nanos")
    assert spend._unpriced(summed) == priced.null_count()
    assert spend._has_real(summed) == (
        analytics.real(whole).filter(pl.col("sent_at").is_not_null()).height > 0
    )


def test_spend_figures_from_the_sums_equal_those_from_the_full_frame(
    capped: Path, tmp_path: Path
) -> None:
    assert_spend_from_sums_agrees(capped)  # stopped at a cap, an overrun, an unpriced model
    assert_spend_from_sums_agrees(under_reported_store(tmp_path))  # the cache flag raised


def test_the_spend_page_reads_no_requests_frame(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every figure of the page (the headline, chart, tables and their cache flag, the caps, the
    period budgets and the estimate against actual) comes from the writer's sums: a fresh
    server over a million results reads a few hundred rows, not the results."""
    db = seeded_copy(tmp_path_factory, "spend-no-frame")
    budgets_toml = tmp_path / "budgets.toml"
    budgets_toml.write_text(
        '[[budget]]\nperiod = "day"\nusd = 1\n[[budget]]\nperiod = "month"\nusd = 2\n'
        'model = "MiniMax-M2.7"\n'
    )
    monkeypatch.setenv("BATCHRUN_BUDGETS", str(budgets_toml))

    def no_frame(*_: object) -> pl.DataFrame:
        raise AssertionError("the Spend page read a requests frame")

    monkeypatch.setattr(data, "_batch_requests", no_frame)
    app = open_page(db, "spend")
    bars = [bar.proto.text for bar in app.get("progress")]
    assert any(bar.startswith("all models, today: ") for bar in bars)
    assert any(bar.startswith("MiniMax-M2.7, this month") for bar in bars)
    estimate = app.dataframe[-1].value
    assert "cost expected" in estimate.columns
    assert estimate["results"].sum() > 0
    for by in ("model", "batch"):
        app.segmented_control(key="spend_by").set_value(by)
        assert "cache figures" in rerun(app).dataframe[0].value.columns


def test_overviews_chart_carries_only_what_it_draws(capped: Path) -> None:
    """The chart's rows go to the browser inside it: per hour, hundreds of rows, so no column it
    does not draw (the running totals' unpriced counts, the cost in nano-dollars)."""
    app = open_page(capped, "overview")
    app.segmented_control(key="overview_every").set_value("hour")
    rows = _chart_data(rerun(app), "Spend per hour by model")
    assert {key for row in rows for key in row} == {"period", "model", "USD", "results"}
    bars = [r for r in rows if r.get("results") is not None]  # the bars' rows (the line's lack it)
    priced = scalar(capped, "select sum(cost_nanos) from results where simulated = 0")
    assert round(sum(r["USD"] for r in bars) * 1e9) == priced

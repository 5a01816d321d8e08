"""The Outputs grid (issue 17, Deliver 1) through streamlit's AppTest: the figures in its cells
and the jobs its pages, filters and search reach, each checked against the store's own rows."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from batchrun.dashboard import grid, tables, text
from batchrun.dashboard.views import batch as batch_view
from batchrun.store import Store, database_url
from bench.synthetic_store import build
from tests.browser import CHROMIUM, browser_page, dashboard, show
from tests.dashboardfixtures import MODELS, seeded_copy
from tests.helpers import batchrun, db_rows
from tests.test_dashboard import APP, fresh_caches, open_page, rerun, texts

__all__ = ["fresh_caches"]  # the autouse fixture, imported to apply here


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seeded_copy(tmp_path_factory, "grid")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gridsynthetic") / "synthetic.db"
    build(database_url(str(path)), 2400)
    return path


def choose(app: AppTest, name: str) -> AppTest:
    """Choose the batch whose label holds ``name``."""
    batches = app.selectbox(key="outputs_batch").options
    app.selectbox(key="outputs_batch").set_value(next(b for b in batches if name in b))
    return rerun(app)


def batch_id(db: Path, name: str) -> str:
    [(found,)] = db_rows(db, f"SELECT id FROM batches WHERE name = '{name}'")
    return str(found)


def test_grid_cells_show_each_models_answer_verdict_and_figures(seeded: Path) -> None:
    app = choose(open_page(seeded, "outputs"), "graded")
    graded = batch_id(seeded, "graded")
    jobs = [str(r[0]) for r in db_rows(
        seeded, f"SELECT DISTINCT custom_id FROM requests WHERE batch_id = '{graded}' "
        "ORDER BY custom_id")]  # fmt: skip
    assert f"{len(jobs):,} jobs match · page 1 of 1" in texts(app)
    markdown = [m.value for m in app.markdown]
    assert all(f"**{model}**" in markdown for model in MODELS)  # one column per model
    assert all(job in markdown for job in jobs)  # one row per job
    rows = db_rows(seeded, "SELECT r.text, r.output_tokens, r.done_s, r.first_token_s, "
                   f"r.cost_nanos, g.passed FROM results r JOIN grades g ON g.request_id = "
                   f"r.request_id WHERE r.batch_id = '{graded}'")  # fmt: skip
    shown_text = [t.value for t in app.text]
    captions = [c.value for c in app.caption]
    for answer, tokens, done, first, cost, _passed in rows:
        assert grid.preview(grid.pretty(str(answer))[0])[0] in shown_text
        line = f"{tokens:,} tok · {done:,.2f} s · TTFT {first:,.2f} s"
        assert any(
            c.startswith(line) and tables.money(None if cost is None else float(str(cost))) in c
            for c in captions
        ), line
    passed = sum(1 for r in rows if r[5])
    verdicts = " ".join(markdown)
    assert verdicts.count(":green[passed] expect") == passed
    assert verdicts.count(":red[failed] expect") == len(rows) - passed


def test_grid_pages_reach_every_job(synthetic: Path) -> None:
    app = open_page(synthetic, "outputs")
    newest = app.selectbox(key="outputs_batch").value
    ids = [str(r[0]) for r in db_rows(
        synthetic, f"SELECT DISTINCT custom_id FROM requests WHERE batch_id = '{newest}' "
        "ORDER BY custom_id")]  # fmt: skip
    assert len(ids) > 100
    app.selectbox(key="grid_size").set_value(100)
    rerun(app)
    last = -(-len(ids) // 100)
    assert f"{len(ids):,} jobs match · page 1 of {last:,}" in texts(app)
    app.number_input(key="grid_page").set_value(last)
    rerun(app)
    markdown = [m.value for m in app.markdown]
    assert ids[-1] in markdown
    assert ids[(last - 1) * 100] in markdown
    assert ids[0] not in markdown
    assert f"page {last:,} of {last:,}" in texts(app)


@dataclass(frozen=True)
class SentRange:
    """The oldest batch of the synthetic store, its days, and its jobs sent on its last two."""

    name: str
    days: list[date]
    kept: list[str]  # custom_ids with a request sent on the last two days, or not sent
    every: int  # the batch's jobs


def sent_range(db: Path) -> SentRange:
    [(name, bid)] = db_rows(db, "SELECT name, id FROM batches ORDER BY created_at LIMIT 1")
    days = sorted(
        date.fromisoformat(str(d[0]))
        for d in db_rows(
            db, f"SELECT DISTINCT date(sent_at, 'unixepoch') FROM results WHERE batch_id = '{bid}'"
        )
    )
    assert len(days) >= 3
    since = days[-2]
    start = datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp()
    kept = [str(r[0]) for r in db_rows(
        db, "SELECT DISTINCT q.custom_id FROM requests q LEFT JOIN results r ON "
        f"r.request_id = q.id WHERE q.batch_id = '{bid}' AND (r.sent_at IS NULL OR "
        f"r.sent_at >= {start}) ORDER BY q.custom_id")]  # fmt: skip
    [(every,)] = db_rows(
        db, f"SELECT count(DISTINCT custom_id) FROM requests WHERE batch_id = '{bid}'"
    )
    assert 10 < len(kept) < int(str(every))
    return SentRange(name=str(name), days=days, kept=kept, every=int(str(every)))


def test_the_sent_between_range_keeps_the_jobs_sent_on_those_days_and_pages_reach_them(
    synthetic: Path,
) -> None:
    chosen = sent_range(synthetic)
    since, until, kept = chosen.days[-2], chosen.days[-1], chosen.kept
    os.environ["BATCHRUN_DB"] = str(synthetic)
    app = AppTest.from_file(APP, default_timeout=60)
    app.query_params.update(
        page="outputs", batch=chosen.name, since=str(since), until=str(until), per="10"
    )
    rerun(app)
    assert app.date_input(key="grid_range").value == (since, until)
    last = -(-len(kept) // 10)
    assert f"{len(kept):,} jobs match · page 1 of {last:,}" in texts(app)
    assert shown_jobs(app) == kept[:10]
    app.number_input(key="grid_page").set_value(last)
    rerun(app)
    assert shown_jobs(app) == kept[(last - 1) * 10 :]  # the last page: the range's last jobs
    app.date_input(key="grid_range").set_value((chosen.days[0], until))  # every day again
    rerun(app)
    assert "since" not in app.query_params
    assert f"{chosen.every:,} jobs match" in texts(app)


@pytest.mark.slow  # a Streamlit server and a browser
@pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="Chromium is not installed (apt-get install chromium); CI installs it",
)
def test_a_link_with_a_date_range_opens_the_grid_on_those_days_in_a_browser(
    synthetic: Path,
) -> None:
    chosen = sent_range(synthetic)
    since, until = chosen.days[-2], chosen.days[-1]
    query = f"outputs&batch={chosen.name}&since={since}&until={until}&per=10"
    with dashboard(synthetic) as address, browser_page() as page:
        shown = show(page, address, query, "jobs match")
        dates = page.locator('[data-testid="stDateInput"]').first
        label = dates.locator("label").inner_text()
        picked = [box.input_value() for box in dates.locator("input").all()]
    assert label == "Sent between (UTC days)"
    assert picked == [str(since), str(until)]
    assert f"{len(chosen.kept):,} jobs match" in shown
    assert chosen.kept[0] in shown


def shown_jobs(app: AppTest) -> list[str]:
    """The custom_ids in the grid's rows (the first column's markdown): every one the store has
    that is written alone in a markdown element."""
    db = Path(os.environ["BATCHRUN_DB"])
    every = {str(r[0]) for r in db_rows(db, "SELECT DISTINCT custom_id FROM requests")}
    return sorted(m.value for m in app.markdown if m.value in every)


def test_grid_filters_keep_the_jobs_the_store_says(seeded: Path) -> None:
    app = choose(open_page(seeded, "outputs"), "graded")
    graded = batch_id(seeded, "graded")
    verdicts: dict[str, list[bool]] = {}
    for custom_id, passed in db_rows(seeded, "SELECT r.custom_id, g.passed FROM grades g JOIN "
                                     f"results r USING (request_id) WHERE g.batch_id = '{graded}'"
                                     " AND g.passed IS NOT NULL"):  # fmt: skip
        verdicts.setdefault(str(custom_id), []).append(bool(passed))
    expected = {
        grid.FAILED: sorted(j for j, v in verdicts.items() if not all(v)),
        grid.PASSED: sorted(j for j, v in verdicts.items() if all(v)),
        grid.DISAGREE: sorted(j for j, v in verdicts.items() if any(v) and not all(v)),
        grid.DIFFER: sorted(
            str(r[0])
            for r in db_rows(
                seeded,
                f"SELECT custom_id FROM results WHERE batch_id = '{graded}' GROUP BY "
                "custom_id HAVING COUNT(DISTINCT text) > 1",
            )
        ),
    }
    assert expected[grid.FAILED]
    assert expected[grid.PASSED]
    assert expected[grid.DISAGREE]
    for chosen, jobs in expected.items():
        app.multiselect(key="grid_filters").set_value([chosen])
        rerun(app)
        assert shown_jobs(app) == jobs, chosen
        assert f"{len(jobs):,} jobs match" in texts(app)
    app.multiselect(key="grid_filters").set_value([grid.FAILED, grid.DISAGREE])  # both at once
    rerun(app)
    assert shown_jobs(app) == expected[grid.DISAGREE]

    faulty = choose(app, "faulty")
    faulty.multiselect(key="grid_filters").set_value([grid.ERRORED])
    rerun(faulty)
    assert len(shown_jobs(faulty)) == 6  # M3 failed every job
    assert any(":red[**errored**]" in m.value for m in faulty.markdown)


def test_grid_search_over_prompts_and_answers_as_text_or_regex(seeded: Path) -> None:
    app = open_page(seeded, "outputs")  # the newest batch: the demo
    app.text_input(key="grid_search").input("RIVERS of europe")  # in a prompt; any case
    rerun(app)
    assert shown_jobs(app) == ["job-0003"]
    demo = batch_id(seeded, "demo")
    [(custom_id, answer)] = db_rows(seeded, "SELECT custom_id, text FROM results WHERE batch_id ="
                                    f" '{demo}' AND model = '{MODELS[0]}' AND custom_id = "
                                    "'job-0007'")  # fmt: skip
    words = " ".join(str(answer).split()[:6])
    holding = sorted(
        {
            str(r[0])
            for r in db_rows(seeded, f"SELECT custom_id FROM results WHERE batch_id = '{demo}'")
            if words.lower() in str(r[0]).lower()
        }
        | {
            str(c)
            for c, t in db_rows(
                seeded, f"SELECT custom_id, text FROM results WHERE batch_id = '{demo}'"
            )
            if words.lower() in str(t).lower()
        }
    )
    app.text_input(key="grid_search").input(words)  # in an answer
    rerun(app)
    assert custom_id in shown_jobs(app)
    assert set(shown_jobs(app)) >= set(holding)
    app.toggle(key="grid_regex").set_value(True)
    app.text_input(key="grid_search").input(r"^job-000[12]$")
    rerun(app)
    assert shown_jobs(app) == ["job-0001", "job-0002"]
    app.text_input(key="grid_search").input("rivers (of")
    rerun(app)
    [error] = app.error
    assert "not a regular expression" in error.value
    assert not shown_jobs(app)


def test_grid_diff_of_two_models_answers(seeded: Path) -> None:
    app = choose(open_page(seeded, "outputs"), "graded")
    graded = batch_id(seeded, "graded")
    job = app.selectbox(key="grid_diff_job").options[1]
    first, second = MODELS[2], MODELS[0]
    app.selectbox(key="grid_diff_job").set_value(job)
    app.selectbox(key="grid_diff_a").set_value(first)
    app.selectbox(key="grid_diff_b").set_value(second)
    rerun(app)
    answers = dict(db_rows(seeded, f"SELECT model, text FROM results WHERE batch_id = '{graded}'"
                           f" AND custom_id = '{job}'"))  # fmt: skip
    expected = "\n".join(difflib.unified_diff(
        str(answers[first]).splitlines(), str(answers[second]).splitlines(), first, second,
        lineterm=""))  # fmt: skip
    if expected:
        assert expected in [t.value for t in app.text]
    else:
        assert "The two answers are the same text." in texts(app)


def rate_this(app: AppTest, custom_id: str, model: str) -> None:
    """Choose one answer in the whole-answer viewer under the grid (one rating form, for the
    answer chosen there)."""
    app.selectbox(key="grid_cell_job").set_value(custom_id)
    app.selectbox(key="grid_cell_model").set_value(model)
    rerun(app)


def test_one_viewer_under_the_grid_shows_the_chosen_answer_whole(seeded: Path) -> None:
    app = choose(open_page(seeded, "outputs"), "demo")
    demo = batch_id(seeded, "demo")
    rows = db_rows(seeded, "SELECT custom_id, model, text FROM results WHERE batch_id = "
                   f"'{demo}' ORDER BY length(text) DESC")  # fmt: skip
    custom_id, model, longest = (str(v) for v in rows[0])
    whole = grid.pretty(longest)[0]
    assert len(whole) > grid.PREVIEW  # its cell shows it cut
    assert not app.get("popover")  # no cell carries its whole text
    before = [t.value for t in app.text].count(whole)  # "One job", further down, may show it
    rate_this(app, custom_id, model)
    shown_text = [t.value for t in app.text]
    assert shown_text.count(whole) == before + 1  # and now the viewer
    assert grid.preview(whole)[0] in shown_text  # and cut, in its cell
    [(params,)] = db_rows(seeded, f"SELECT j.params FROM jobs j JOIN requests r ON r.job_id = "
                          f"j.id WHERE r.batch_id = '{demo}' AND r.custom_id = '{custom_id}' "
                          "LIMIT 1")  # fmt: skip
    assert grid.prompt_text(orjson.loads(str(params))) in shown_text  # the whole prompt
    for key, chosen in (("job", custom_id), ("model", model)):  # a default is left out
        first = app.selectbox(key=f"grid_cell_{key}").options[0]
        assert app.query_params.get(key) == (None if chosen == first else chosen)
    [form] = {b.proto.form_id for b in app.button if b.proto.form_id.startswith("grid_rate_")}
    [(rid,)] = db_rows(seeded, f"SELECT request_id FROM results WHERE batch_id = '{demo}' "
                       f"AND custom_id = '{custom_id}' AND model = '{model}'")  # fmt: skip
    assert form == f"grid_rate_{rid}"  # the form rates the answer shown
    app.toggle(key="grid_rendered").set_value(True)
    rerun(app)
    drawn = [h.proto.body for h in app.get("html")]
    assert text.rendered_html(whole) in drawn  # drawn whole (images and links as text)


def test_the_viewer_opens_at_the_cell_the_address_names(seeded: Path) -> None:
    graded = batch_id(seeded, "graded")
    [(custom_id,)] = db_rows(seeded, f"SELECT max(custom_id) FROM requests WHERE batch_id = "
                             f"'{graded}'")  # fmt: skip
    model = MODELS[-1]
    [(answer,)] = db_rows(seeded, f"SELECT text FROM results WHERE batch_id = '{graded}' AND "
                          f"custom_id = '{custom_id}' AND model = '{model}'")  # fmt: skip
    os.environ["BATCHRUN_DB"] = str(seeded)
    app = AppTest.from_file(APP, default_timeout=60)
    for key, value in {"page": "outputs", "batch": "graded", "job": custom_id,
                       "model": model}.items():  # fmt: skip
        app.query_params[key] = value
    rerun(app)
    assert app.selectbox(key="grid_cell_job").value == custom_id
    assert app.selectbox(key="grid_cell_model").value == model
    assert grid.pretty(str(answer))[0] in [t.value for t in app.text]
    first = app.selectbox(key="grid_cell_job").options[0]
    app.selectbox(key="grid_cell_job").set_value(first)
    app.selectbox(key="grid_cell_model").set_value(sorted(MODELS)[0])
    rerun(app)
    assert "job" not in app.query_params  # the defaults: left out
    assert "model" not in app.query_params
    app.query_params["job"] = "no-such-job"  # a job not on the page: the first instead
    fresh = AppTest.from_file(APP, default_timeout=60)
    for key, value in {"page": "outputs", "batch": "graded", "job": "no-such-job"}.items():
        fresh.query_params[key] = value
    assert rerun(fresh).selectbox(key="grid_cell_job").value == first


def test_rating_and_comment_are_stored_and_count_as_the_human_grade(seeded: Path) -> None:
    app = choose(open_page(seeded, "outputs"), "graded")
    graded = batch_id(seeded, "graded")
    [(rid, custom_id, model)] = db_rows(  # an answer to a job every model passed
        seeded,
        "SELECT r.request_id, r.custom_id, r.model FROM results r JOIN grades g USING (request_id) "
        f"WHERE r.batch_id = '{graded}' AND r.custom_id IN (SELECT custom_id FROM results JOIN "
        "grades USING (request_id) GROUP BY custom_id HAVING MIN(passed) = 1) "
        "ORDER BY r.custom_id, r.model LIMIT 1",
    )
    app.multiselect(key="grid_filters").set_value([grid.PASSED])
    rerun(app)
    assert custom_id in shown_jobs(app)
    app.multiselect(key="grid_filters").set_value([])
    rerun(app)
    comment = "Too short ![x](http://127.0.0.1:9/leak) *really*"
    assert not [b for b in app.button if b.proto.form_id.startswith("grid_rate_")][1:]  # one form
    rate_this(app, custom_id, model)
    app.radio(key=f"grid_rating_{rid}").set_value("bad")
    app.text_area(key=f"grid_comment_{rid}").input(comment)
    [save] = [b for b in app.button if b.proto.form_id == f"grid_rate_{rid}"]
    save.click()
    rerun(app)
    assert db_rows(seeded, f"SELECT rating, comment FROM ratings WHERE request_id = {rid}") == [
        (-1, comment)
    ]
    assert db_rows(seeded, "SELECT score, passed, reason FROM grades WHERE grader = 'human' AND "
                   f"request_id = {rid}") == [(0.0, 0, comment)]  # fmt: skip
    assert comment in [t.value for t in app.text]  # plain text, never Markdown
    assert all("127.0.0.1:9" not in m.value for m in app.markdown)
    assert any(":red[failed] human" in m.value for m in app.markdown)
    app.multiselect(key="grid_filters").set_value([grid.PASSED])
    rerun(app)
    assert custom_id not in shown_jobs(app)  # a human grade failed now
    app.multiselect(key="grid_filters").set_value([grid.FAILED])
    rerun(app)
    assert custom_id in shown_jobs(app)
    app.multiselect(key="grid_filters").set_value([])
    rerun(app)

    rate_this(app, custom_id, model)
    app.radio(key=f"grid_rating_{rid}").set_value("good")
    [save] = [b for b in app.button if b.proto.form_id == f"grid_rate_{rid}"]
    save.click()
    rerun(app)
    assert db_rows(seeded, f"SELECT passed FROM grades WHERE grader = 'human' AND request_id = "
                   f"{rid}") == [(1,)]  # fmt: skip
    app.radio(key=f"grid_rating_{rid}").set_value("no rating")
    app.text_area(key=f"grid_comment_{rid}").input("")
    [save] = [b for b in app.button if b.proto.form_id == f"grid_rate_{rid}"]
    save.click()
    rerun(app)
    assert db_rows(seeded, f"SELECT * FROM ratings WHERE request_id = {rid}") == []
    assert db_rows(seeded, "SELECT * FROM grades WHERE grader = 'human'") == []


def test_the_views_state_is_in_the_address(synthetic: Path) -> None:
    os.environ["BATCHRUN_DB"] = str(synthetic)
    [(name, bid)] = db_rows(synthetic, "SELECT name, id FROM batches ORDER BY created_at LIMIT 1")
    errored = sorted({str(r[0]) for r in db_rows(
        synthetic, f"SELECT custom_id FROM requests WHERE batch_id = '{bid}' AND status IN "
        "('errored', 'invalid')")})  # fmt: skip
    assert len(errored) > 10
    app = AppTest.from_file(APP, default_timeout=60)
    for key, value in {"page": "outputs", "batch": name, "only": "errored", "per": "10",
                       "at": "2", "q": "job", "md": "1"}.items():  # fmt: skip
        app.query_params[key] = value
    rerun(app)
    assert app.selectbox(key="outputs_batch").value == bid
    assert app.multiselect(key="grid_filters").value == [grid.ERRORED]
    assert app.selectbox(key="grid_size").value == 10
    assert app.number_input(key="grid_page").value == 2
    assert app.text_input(key="grid_search").value == "job"
    assert app.toggle(key="grid_rendered").value is True
    assert shown_jobs(app) == [j for j in errored if "job" in j.lower()][10:20]
    app.text_input(key="grid_search").input("")
    rerun(app)
    assert app.query_params["at"] == "2"
    assert app.query_params["only"] == "errored"
    assert "q" not in app.query_params  # cleared: left out
    assert app.query_params["batch"] == name
    assert shown_jobs(app) == errored[10:20]
    app.number_input(key="grid_page").set_value(1)
    rerun(app)
    assert "at" not in app.query_params  # the default: left out
    assert shown_jobs(app) == errored[:10]


@pytest.mark.slow  # one more Streamlit server and browser; the AppTest grid tests run by default
@pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="Chromium is not installed (apt-get install chromium); CI installs it",
)
def test_the_grid_in_a_browser(seeded: Path, tmp_path: Path) -> None:
    """What a person sees, opening a link to the grid of the graded batch's failed jobs."""
    graded = batch_id(seeded, "graded")
    failed = sorted({str(r[0]) for r in db_rows(
        seeded, "SELECT r.custom_id FROM grades g JOIN results r USING (request_id) WHERE "
        f"g.batch_id = '{graded}' AND NOT g.passed")})  # fmt: skip
    with dashboard(seeded) as address, browser_page() as page:
        shown = show(page, address, "outputs&batch=graded&only=failed", "Diff of two answers")
        page.screenshot(path=str(tmp_path / "grid.png"), full_page=True)
        shot = Path(os.environ.get("GRID_SCREENSHOT", tmp_path / "kept.png"))
        page.screenshot(path=str(shot), full_page=True)
    assert f"{len(failed):,} jobs match · page 1 of 1" in shown
    assert all(custom_id in shown for custom_id in failed)
    assert all(model in shown for model in MODELS)
    assert "failed expect" in shown
    assert "TTFT" in shown
    assert "tok/s" in shown
    assert (tmp_path / "grid.png").read_bytes().startswith(b"\x89PNG")


def test_ratings_and_comments_are_in_the_exports(seeded: Path, tmp_path: Path) -> None:
    db = tmp_path / "rated.db"
    db.write_bytes(seeded.read_bytes())
    graded = batch_id(db, "graded")
    [(good, good_id), (bad, bad_id)] = db_rows(
        db, f"SELECT request_id, custom_id FROM results WHERE batch_id = '{graded}' "
        "ORDER BY request_id LIMIT 2",
    )  # fmt: skip
    store = Store(database_url(str(db)))
    try:
        store.ratings.rate(graded, good, 1, "")
        store.ratings.rate(graded, bad, -1, "=wrong, and it says so")
    finally:
        store.close()
    for name in ("out.jsonl", "out.csv"):
        done = batchrun(tmp_path, "results", "graded", "--db", str(db), "-o", name)
        assert done.returncode == 0, done.stdout + done.stderr
    records = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    rated = {r["custom_id"] + str(r["model"]): r["rating"] for r in records}
    [(good_model,)] = db_rows(db, f"SELECT model FROM results WHERE request_id = {good}")
    [(bad_model,)] = db_rows(db, f"SELECT model FROM results WHERE request_id = {bad}")
    assert rated[good_id + good_model] == {"verdict": "good", "comment": ""}
    assert rated[bad_id + bad_model] == {"verdict": "bad", "comment": "=wrong, and it says so"}
    assert sum(r is not None for r in rated.values()) == 2
    table = pl.read_csv(tmp_path / "out.csv")
    marked = table.filter(pl.col("rating").is_not_null()).sort("rating", descending=True)
    assert marked.select("custom_id", "rating", "rating_comment").rows() == [
        (good_id, "good", ""),
        (bad_id, "bad", "'=wrong, and it says so"),  # a formula defused, as every text cell
    ]


def test_the_batch_pages_download_carries_the_ratings(seeded: Path, tmp_path: Path) -> None:
    db = tmp_path / "rated.db"
    db.write_bytes(seeded.read_bytes())
    graded = batch_id(db, "graded")
    [(rid, custom_id, model)] = db_rows(
        db, f"SELECT request_id, custom_id, model FROM results WHERE batch_id = '{graded}' "
        "ORDER BY request_id LIMIT 1",
    )  # fmt: skip
    store = Store(database_url(str(db)))
    try:
        store.ratings.rate(graded, rid, -1, "@SUM(1) off by one")
        rated = store.ratings.of_batch(graded)
    finally:
        store.close()
    app = open_page(db, "batch")
    app.selectbox(key="detail_batch").set_value(graded)
    rerun(app)
    shown = app.dataframe[0].value
    assert "request_id" not in shown.columns
    rows = pl.DataFrame(
        {"request_id": [rid, rid + 10_000], "custom_id": [custom_id, "other"], "model": [model] * 2}
    )
    kept = batch_view.with_ratings(rows, rated)
    assert kept.columns == ["custom_id", "model", "rating", "rating_comment"]
    assert kept.rows() == [
        (custom_id, model, "bad", "@SUM(1) off by one"),
        ("other", model, None, None),
    ]

"""The Outputs grid (issue 17, Deliver 1) through streamlit's AppTest: the figures in its cells
and the jobs its pages, filters and search reach, each checked against the store's own rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from batchrun.dashboard import grid, tables
from batchrun.store import database_url
from bench.synthetic_store import build
from tests.dashboardfixtures import MODELS, seed_store
from tests.helpers import db_rows
from tests.test_dashboard import fresh_caches, open_page, rerun, texts

__all__ = ["fresh_caches"]  # the autouse fixture, imported to apply here


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_store(tmp_path_factory.mktemp("grid"))


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

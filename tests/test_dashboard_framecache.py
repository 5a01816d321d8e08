"""The finished batches' frames kept on disk (batchrun/dashboard/framecache.py): the same frame
back, a stale or broken file ignored and rebuilt, and a reprice making the dashboard reread."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import polars as pl
import pytest
import streamlit as st

from batchrun import analytics
from batchrun.catalog import load_catalog
from batchrun.dashboard import data, framecache
from batchrun.reprice import reprice
from batchrun.store import Store, database_url
from bench.synthetic_store import build
from tests.dbfixtures import BACKENDS, postgres_server, postgres_url  # noqa: F401 - fixtures

BATCH = "synthetic0000"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A generated store of four finished batches: errors, retries, pending, an unpriced model."""
    url = database_url(str(tmp_path_factory.mktemp("frames") / "synthetic.db"))
    build(url, 600)
    return url


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    """streamlit's caches live as long as the process: each test reads its own store."""
    st.cache_data.clear()
    st.cache_resource.clear()


def from_store(url: str, batch_id: str = BATCH) -> pl.DataFrame:
    """The batch's requests frame read from the store, no cache anywhere."""
    store = Store(url)
    try:
        batch = store.find_batch(batch_id).as_dict()
        return analytics.requests_frame(*store.metric_rows([batch_id]), [batch])
    finally:
        store.close()


def never() -> pl.DataFrame:
    raise AssertionError("the store was read although a good file was there")


def test_a_frame_comes_back_from_disk_identical(synthetic: str, tmp_path: Path) -> None:
    frame = from_store(synthetic)
    first = framecache.cached(tmp_path, BATCH, ("completed", 1.0), lambda: frame)
    again = framecache.cached(tmp_path, BATCH, ("completed", 1.0), never)
    assert first.equals(frame)
    assert again.schema == frame.schema
    assert again.equals(frame)
    assert [p.suffix for p in tmp_path.iterdir()] == [".parquet"]  # no temporary file left


def test_a_broken_file_is_ignored_and_rebuilt(synthetic: str, tmp_path: Path) -> None:
    frame = from_store(synthetic)
    path = framecache.file_for(tmp_path, BATCH, ("completed", 1.0))
    path.write_bytes(b"PAR1 cut off in the middle")
    assert framecache.cached(tmp_path, BATCH, ("completed", 1.0), lambda: frame).equals(frame)
    assert pl.read_parquet(path).equals(frame)


def test_a_new_version_replaces_the_old_file(synthetic: str, tmp_path: Path) -> None:
    frame = from_store(synthetic)
    framecache.cached(tmp_path, BATCH, ("completed", 1.0), lambda: frame)
    changed = frame.with_columns(cost_nanos=pl.lit(None, pl.Int64))
    back = framecache.cached(tmp_path, BATCH, ("completed", 2.0), lambda: changed)
    assert back.equals(changed)
    assert list(tmp_path.iterdir()) == [framecache.file_for(tmp_path, BATCH, ("completed", 2.0))]


def test_the_cache_sits_next_to_a_sqlite_file_else_in_the_user_cache(tmp_path: Path) -> None:
    assert framecache.cache_dir(database_url(str(tmp_path / "a.db"))) == tmp_path / "a.db.frames"
    other = framecache.cache_dir("postgresql+psycopg://me:secret@db.example/batchrun")
    assert other.parent == Path.home() / ".cache" / "batchrun" / "frames"
    assert "secret" not in str(other)


def test_the_dashboard_keeps_finished_batches_on_disk(synthetic: str) -> None:
    frame = data.requests(synthetic, (BATCH,))
    files = list(framecache.cache_dir(synthetic).glob("*.parquet"))
    assert len(files) == 1
    assert pl.read_parquet(files[0]).equals(frame)
    assert frame.equals(from_store(synthetic))


def test_counts_come_back_from_disk_and_a_broken_file_is_rebuilt(tmp_path: Path) -> None:
    counts = {"MiniMax-M3": {"succeeded": 40, "pending": 2}, "MiniMax-M2.7": {"errored": 1}}
    framecache.cached(tmp_path, BATCH, ("completed", 1.0), lambda: pl.DataFrame({"a": [1]}))
    assert framecache.cached_counts(tmp_path, BATCH, ("completed", 1.0), lambda: counts) == counts
    assert framecache.cached_counts(tmp_path, BATCH, ("completed", 1.0), never) == counts
    path = framecache.file_for(tmp_path, BATCH, ("completed", 1.0), "counts.json")
    for broken in (b'{"MiniMax-M3": {"succeeded": 4', b"[1, 2]", b'{"MiniMax-M3": 7}'):
        path.write_bytes(broken)
        again = framecache.cached_counts(tmp_path, BATCH, ("completed", 1.0), lambda: counts)
        assert again == counts
    framecache.cached_counts(tmp_path, BATCH, ("paused", 2.0), lambda: counts)
    kept = sorted(p.name.split(".", 2)[2] for p in tmp_path.iterdir())
    assert kept == ["counts.json", "parquet"]  # the new counts replaced the old, not the frame


def test_overview_counts_a_finished_batch_once_for_every_server(synthetic: str) -> None:
    whole = data.sums(synthetic)
    files = list(framecache.cache_dir(synthetic).glob("*.counts.json"))
    assert len(files) == 4  # one per finished batch
    st.cache_resource.clear()  # a fresh server: the counts come from the files
    st.cache_data.clear()
    store = data.store(synthetic)
    store.work.status_counts = lambda batch_id: pytest.fail("the store was counted again")
    try:
        assert data.sums(synthetic).equals(whole)
    finally:
        del store.work.status_counts
    fresh = Store(synthetic)
    try:
        for batch in fresh.list_batches():
            path = next(p for p in files if p.name.startswith(batch.id + "."))
            assert framecache._load_counts(path) == fresh.status_counts(batch.id)
    finally:
        fresh.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_reprice_makes_the_dashboard_read_the_new_costs(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        database_url(str(tmp_path / "repriced.db"))
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    build(url, 120)
    try:
        before = data.requests(url, (BATCH,))  # now kept on disk and in memory
        store = Store(url)
        try:
            changes = reprice(store, load_catalog(), BATCH)  # synthetic prices: not the catalog's
        finally:
            store.close()
        st.cache_data.clear()  # the batch list's few seconds, as a page would after TTL
        after = data.requests(url, (BATCH,))
    finally:
        data.store(url).close()  # the dashboard's own Store, before the database is dropped
        st.cache_resource.clear()
    assert sum(c.changed for c in changes) > 0
    assert not after.get_column("cost_nanos").equals(before.get_column("cost_nanos"))
    assert after.equals(from_store(url))


def test_a_page_rerun_gets_the_same_frame_and_its_figures_once(synthetic: str) -> None:
    calls: list[int] = []

    def figures(frame: pl.DataFrame, by: str) -> int:
        calls.append(frame.height)
        return frame.height

    frame = data.requests(synthetic)
    assert data.requests(synthetic) is frame  # a rerun: the same object, not a new concat
    assert data.memo(figures, frame, "model") == data.memo(figures, frame, "model")
    assert len(calls) == 1
    data.memo(figures, frame, "day")  # another choice on the page: computed for it
    other = data.memo(data.only_models, frame, ("MiniMax-M3",))
    assert data.memo(data.only_models, frame, ("MiniMax-M3",)) is other
    data.memo(figures, other, "model")
    assert calls == [frame.height, frame.height, other.height]
    assert other.get_column("model").unique().to_list() == ["MiniMax-M3"]


def test_the_headline_totals_are_model_metrics_figures(synthetic: str) -> None:
    frame = data.requests(synthetic)
    every = analytics.model_metrics(frame.with_columns(all=pl.lit("all")), by=("all",))
    expected = every.row(0, named=True)
    got = analytics.totals(frame)
    assert set(got) <= set(expected)
    assert {name: expected[name] for name in got} == got


def test_a_kept_figure_does_not_keep_its_frame_alive() -> None:
    frame = pl.DataFrame({"model": ["MiniMax-M3"] * 3})
    gone = weakref.ref(frame)
    assert data.memo(lambda f: f.height, frame) == 3
    del frame
    gc.collect()
    assert gone() is None

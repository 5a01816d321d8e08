"""The per-batch aggregates (store/aggregates.py) always equal a recomputation from the results:
after runs with retries, a resume, repricing, the migrations' backfills (0013, and 0015's
expected cache sums), and two workers writing one PostgreSQL store at once."""

from __future__ import annotations

import calendar
import threading
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from alembic import command
from polars.testing import assert_frame_equal
from sqlalchemy import create_engine

from batchrun import analytics, budgets
from batchrun.catalog import load_catalog
from batchrun.reprice import reprice
from batchrun.sim import FaultRates, RunningSimulator
from batchrun.store import Outcome, Store, aggregates, alembic_config
from tests.dbfixtures import postgres_server, postgres_url, sqlite_url, store, store_url
from tests.runharness import prompts, resume_run, run_jobs
from tests.test_teams import done, load

__all__ = ["postgres_server", "postgres_url", "sqlite_url", "store", "store_url"]

M27, M3 = "MiniMax-M2.7", "MiniMax-M3"


def kept_and_recomputed(store: Store) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The aggregates as kept, and as worked out from the results now (same order, ints)."""
    with store.database.connect() as connection:
        kept = aggregates.rows(connection)
        fresh = connection.execute(aggregates.recomputed(connection.dialect.name))
        again = [dict(row._mapping) for row in fresh]

    def plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(
            ({k: v if isinstance(v, (str, bool)) else int(v) for k, v in r.items()} for r in rows),
            key=lambda r: tuple(r[k] for k in aggregates.KEY),
        )

    return plain([r for r in kept if r["results"]]), plain(again)


def assert_kept(store: Store) -> list[dict[str, Any]]:
    kept, fresh = kept_and_recomputed(store)
    assert kept == fresh
    return kept


def test_a_run_with_retries_then_a_resume_and_reprice_keep_the_sums(
    tmp_path: Path, sim_factory: Any
) -> None:
    sim: RunningSimulator = sim_factory(faults=FaultRates(overloaded=0.3))
    run = run_jobs(tmp_path, sim, prompts(20), [M27, M3], max_cost_nanos=3_000_000)
    first = assert_kept(run.store)
    assert first
    assert sum(r["results"] for r in first) == len(run.results())
    resume_run(run.store, run.plan, sim, max_cost_nanos=10**9)  # the rest
    kept = assert_kept(run.store)
    assert sum(r["results"] for r in kept) == len(run.results()) > sum(r["results"] for r in first)
    assert {r["model"]: r["priced"] for r in kept}[M27] > 0
    override = tmp_path / "prices.toml"
    override.write_text('[[models."MiniMax-M2.7".prices]]\neffective = 2026-11-22\ninput = 0.30\n')
    reprice(run.store, load_catalog(override), run.plan.batch.id)  # M2.7 unpriced now
    assert {r["model"]: r["priced"] for r in assert_kept(run.store)}[M27] == 0
    reprice(run.store, load_catalog(), None)
    assert assert_kept(run.store) == kept
    assert_sums_frame_agrees(run.store)


def assert_sums_frame_agrees(store: Store) -> None:
    """What the dashboard takes from the aggregates equals what the requests frame gives."""
    batches = [b.as_dict() for b in store.list_batches()]
    whole = analytics.requests_frame(*store.metric_rows(), batches)
    counts = {b["id"]: store.status_counts(b["id"]) for b in batches}
    summed = analytics.sums_frame(store.aggregate_rows(), counts, batches)
    assert summed.height < whole.height
    assert analytics.totals(summed) == analytics.totals(whole)
    for every in ("day", "hour"):
        assert_frame_equal(
            analytics.spend_over_time(summed, every),
            analytics.spend_over_time(whole, every),
            check_dtypes=False,
        )
    assert_frame_equal(
        analytics.cap_states(batches, summed),
        analytics.cap_states(batches, whole),
        check_dtypes=False,
    )
    for by in ("day", "model", "batch"):  # the cache-trust flag included
        assert_frame_equal(
            analytics.spend_from_sums(summed, by),
            analytics.spend(whole, by),
            check_dtypes=False,
            check_column_order=False,
        )
    models = sorted(set(whole.get_column("model")))
    chosen = [budgets.PeriodBudget(period=p, cap_nanos=10**6) for p in budgets.PERIODS]
    chosen += [budgets.PeriodBudget(period="day", cap_nanos=10**6, model=m) for m in models]
    for day in whole.get_column("day").drop_nulls().unique():  # each day a result was sent
        now = calendar.timegm(day.timetuple()) + 600.0
        assert_frame_equal(
            budgets.budget_use(chosen, summed, now),
            budgets.budget_use(chosen, analytics.weighed(whole), now),
        )


def outcome(request_id: int, batch_id: str, cost: int | None, sent_at: float) -> Outcome:
    return done(request_id, batch_id, cost_nanos=cost, sent_at=sent_at, output_tokens=request_id)


@pytest.mark.parametrize(
    "store_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_two_writers_at_once_lose_no_update(store: Store, tmp_path: Path) -> None:
    plan = load(store, tmp_path, 200)
    ids = sorted(r.request_id for r in store.pending(plan.batch.id, M3, 0, 1000))
    writers = [Store(store.url) for _ in range(2)]

    def write(mine: list[int], writer: Store) -> None:
        for first in range(0, len(mine), 5):  # small transactions, interleaved with the other's
            chunk = mine[first : first + 5]
            writer.record(
                [
                    outcome(i, plan.batch.id, None if i % 7 == 0 else 10, 3600.0 * (i % 3))
                    for i in chunk
                ]
            )

    threads = [
        threading.Thread(target=write, args=(ids[n::2], writer)) for n, writer in enumerate(writers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for writer in writers:
        writer.close()
    kept = assert_kept(store)
    assert sum(r["results"] for r in kept) == 200
    assert len(kept) == 3  # three hours, one model, one origin
    # The same request recorded again (a retried commit) is not counted twice.
    store.record([outcome(ids[0], plan.batch.id, 10, 0.0)])
    assert sum(r["results"] for r in assert_kept(store)) == 200


@pytest.mark.parametrize(
    "store_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_the_migration_backfills_a_store_that_had_results(store: Store, tmp_path: Path) -> None:
    plan = load(store, tmp_path, 20)
    ids = [r.request_id for r in store.pending(plan.batch.id, M3, 0, 100)]
    store.record([outcome(i, plan.batch.id, None if i % 2 else 7, 5000.0 * i) for i in ids])
    before = assert_kept(store)
    reopened = reopened_from(store, "0012")  # then opened: 0013 sums what is there
    try:
        assert assert_kept(reopened) == before
    finally:
        reopened.close()


def expecting(request_id: int, batch_id: str) -> Outcome:
    """A result with an expected cache read that varies with its id: known or not (stored
    before batchrun kept it), none expected, or expected and reported (or not)."""
    expected = (None, 0, 300, 700)[request_id % 4]
    read = 300 if request_id % 3 == 0 else 0
    return done(
        request_id,
        batch_id,
        cost_nanos=None if request_id % 5 == 0 else 9,
        sent_at=1800.0 * (request_id % 4),
        expected_cache_tokens=expected,
        cache_read_tokens=read,
    )


def stored_expecting(store: Store, tmp_path: Path, lines: int) -> list[int]:
    """A batch of ``lines`` jobs whose M3 answers are stored with their expected cache reads
    (``expecting``); their request ids."""
    plan = load(store, tmp_path, lines)
    ids = [r.request_id for r in store.pending(plan.batch.id, M3, 0, 100)]
    store.record([expecting(i, plan.batch.id) for i in ids])
    return ids


@pytest.mark.parametrize(
    "store_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_the_expected_cache_sums_equal_what_the_frame_gives(store: Store, tmp_path: Path) -> None:
    ids = stored_expecting(store, tmp_path, 60)
    kept = assert_kept(store)
    batches = [b.as_dict() for b in store.list_batches()]
    whole = analytics.requests_frame(*store.metric_rows(), batches)
    expected = pl.col("expected_cache_tokens")
    frame = whole.select(
        (expected > 0).sum().alias("expected_cache_hits"),
        ((expected > 0) & (pl.col("cache_read_tokens") == 0)).sum().alias("unreported_cache_hits"),
        expected.count().alias("expected_known"),
        expected.sum().alias("expected_cache_tokens"),
    ).row(0, named=True)
    summed = {name: sum(r[name] for r in kept) for name in frame}
    assert summed == frame
    assert 0 < frame["unreported_cache_hits"] < frame["expected_cache_hits"]
    assert frame["expected_known"] < len(ids)  # some not known: counted apart from 0
    assert_sums_frame_agrees(store)


@pytest.mark.parametrize(
    "store_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_migration_0015_backfills_the_expected_cache_sums(store: Store, tmp_path: Path) -> None:
    stored_expecting(store, tmp_path, 40)
    fresh = assert_kept(store)
    assert sum(r["expected_cache_hits"] for r in fresh) > 0
    reopened = reopened_from(store, "0014")  # the sums' columns dropped, then opened
    try:
        assert assert_kept(reopened) == fresh
    finally:
        reopened.close()


def reopened_from(store: Store, revision: str) -> Store:
    """The store closed, taken down to ``revision`` and opened again (so upgraded from it)."""
    store.close()
    engine = create_engine(store.url)
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
    engine.dispose()
    reopened = Store(store.url)
    assert reopened.upgrade is not None
    assert reopened.upgrade.before == revision
    return reopened

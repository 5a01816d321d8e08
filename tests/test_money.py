"""Repricing stored results after a price change, and spend reports (analytics.spend)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from batchrun.analytics import results_frame, spend
from batchrun.catalog import load_catalog
from batchrun.reprice import reprice
from batchrun.sim import RunningSimulator
from tests.helpers import batchrun
from tests.runharness import prompts, run_jobs

M27, M3 = "MiniMax-M2.7", "MiniMax-M3"


def _override(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    return path


def test_reprice_applies_a_new_price_and_reports_the_change(
    tmp_path: Path, sim: RunningSimulator
) -> None:
    run = run_jobs(tmp_path, sim, prompts(4), [M27, M3])
    before = {row["request_id"]: row for row in run.results()}
    # Same effective date as ours: the user's M2.7 price replaces ours (double the output price).
    override = _override(
        tmp_path,
        '[[models."MiniMax-M2.7".prices]]\neffective = 2026-11-22\n'
        "input = 0.30\noutput = 2.40\ncache_read = 0.06\ncache_write = 0.375\n",
    )
    changes = {c.model: c for c in reprice(run.store, load_catalog(override), run.plan.batch.id)}
    m27, m3 = changes[M27], changes[M3]
    assert (m27.results, m27.changed, m3.changed) == (4, 4, 0)
    after = {row["request_id"]: row for row in run.results()}
    for request_id, row in after.items():
        old = before[request_id]
        if row["model"] == M27:
            assert row["cost_nanos"] == old["cost_nanos"] + old["output_tokens"] * 1_200
        else:
            assert row["cost_nanos"] == old["cost_nanos"]
    assert m27.after_nanos == sum(r["cost_nanos"] for r in after.values() if r["model"] == M27)
    # Back to the built-in prices: everything as it was.
    reprice(run.store, load_catalog(), None)
    assert {r["request_id"]: r["cost_nanos"] for r in run.results()} == {
        k: r["cost_nanos"] for k, r in before.items()
    }


def test_reprice_to_unpriced_is_never_zero(tmp_path: Path, sim: RunningSimulator) -> None:
    run = run_jobs(tmp_path, sim, prompts(2), [M27])
    override = _override(
        tmp_path, '[[models."MiniMax-M2.7".prices]]\neffective = 2026-11-22\ninput = 0.30\n'
    )
    (change,) = reprice(run.store, load_catalog(override), run.plan.batch.id)
    assert (change.unpriced_before, change.unpriced_after, change.after_nanos) == (0, 2, 0)
    assert {row["cost_nanos"] for row in run.results()} == {None}
    assert {row["price_date"] for row in run.results()} == {None}
    table = spend(results_frame(run.store.result_rows()), "model")
    assert table.row(0, named=True)["cost_nanos"] is None  # not 0
    assert table.row(0, named=True)["unpriced"] == 2


def test_spend_by_model_batch_and_day_against_hand_sums() -> None:
    rows = [
        {"model": M27, "batch_name": "a", "sent_at": 1_795_000_000.0, "input_tokens": 10,
         "output_tokens": 100, "cache_read_tokens": 0, "cache_creation_tokens": 0,
         "cost_nanos": 123_000},
        {"model": M27, "batch_name": "b", "sent_at": 1_795_090_000.0, "input_tokens": 20,
         "output_tokens": 200, "cache_read_tokens": 5, "cache_creation_tokens": 0,
         "cost_nanos": 246_000},
        {"model": M3, "batch_name": "b", "sent_at": 1_795_090_000.0, "input_tokens": 1,
         "output_tokens": 2, "cache_read_tokens": 0, "cache_creation_tokens": 7,
         "cost_nanos": None},
    ]  # fmt: skip
    frame = results_frame(rows)
    by_model = {r["model"]: r for r in spend(frame, "model").iter_rows(named=True)}
    assert by_model[M27]["cost_nanos"] == 369_000
    assert by_model[M27]["requests"] == 2
    assert by_model[M27]["output_tokens"] == 300
    assert by_model[M3]["cost_nanos"] is None
    assert by_model[M3]["unpriced"] == 1
    by_batch = {r["batch"]: r for r in spend(frame, "batch").iter_rows(named=True)}
    assert by_batch["b"]["cost_nanos"] == 246_000
    assert by_batch["b"]["unpriced"] == 1
    by_day = spend(frame, "day")
    assert by_day["day"].to_list() == ["2026-11-18", "2026-11-19"]  # UTC days
    assert by_day["cost_nanos"].to_list() == [123_000, 246_000]
    assert isinstance(by_day, pl.DataFrame)


def test_spend_and_reprice_commands(tmp_path: Path) -> None:
    from tests.runharness import write_jobs

    write_jobs(tmp_path / "jobs.jsonl", prompts(3))
    assert batchrun(tmp_path, "run", "jobs.jsonl", "--models", M27, "--name", "s",
                    "--sim-time-scale", "0").returncode == 0  # fmt: skip
    for by in ("model", "batch", "day"):
        shown = batchrun(tmp_path, "spend", "--by", by)
        assert shown.returncode == 0, shown.stderr
        assert "Total simulated (not billed): $" in shown.stdout
        assert "No real spend" in shown.stdout
    assert "s" in batchrun(tmp_path, "spend", "--by", "batch").stdout
    assert batchrun(tmp_path, "spend", "--since", "2999-01-01").stdout.count(M27) == 0
    assert batchrun(tmp_path, "spend", "--by", "week").returncode == 2
    assert batchrun(tmp_path, "spend", "--since", "yesterday").returncode == 2
    repriced = batchrun(tmp_path, "reprice", "s")
    assert repriced.returncode == 0
    assert M27 in repriced.stdout

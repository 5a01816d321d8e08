"""Faults as a user meets them through the CLI: `batchrun cancel` while a run is going on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchrun.sim import SimSettings, simulator_process
from tests.helpers import batchrun, db_rows, wait_for_results
from tests.runharness import prompts, write_jobs

M27 = "MiniMax-M2.7"
KEY = "sk-cancel-test"
CONCURRENCY = 4


@pytest.mark.slow  # a run cancelled from a second process, ~12 s: make test-slow
def test_cancel_during_a_run_stops_sending_and_the_batch_stays_canceled(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(60))
    db = tmp_path / "batchrun.db"
    env = {**os.environ, "MINIMAX_API_KEY": KEY}
    settings = SimSettings(time_scale=0.2, limits=False, seed=5, api_key=KEY)
    with simulator_process(settings) as sim:
        base = f"{sim.base_url}/anthropic"
        with subprocess.Popen(
            [sys.executable, "-m", "batchrun.cli", "run", "jobs.jsonl", "--models", M27,
             "--base-url", base, "--concurrency", str(CONCURRENCY), "--name", "c", "--yes"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ) as process:  # fmt: skip
            wait_for_results(db, 4)
            canceled = batchrun(tmp_path, "cancel", "c")
            sent_at_cancel = sim.fetch_stats()["messages_total"]
            started = time.monotonic()
            out, err = process.communicate(timeout=60)
            took = time.monotonic() - started
        sent_after = sim.fetch_stats()["messages_total"] - sent_at_cancel
    assert canceled.returncode == 0, canceled.stderr
    assert "canceled" in canceled.stdout
    assert process.returncode == 130, out + err
    assert "Traceback" not in err
    assert "was canceled while it ran" in out
    assert took < 10  # noticed within the poll interval, not after the prefetched work
    # Before the fix every prefetched request was still sent; now at most one poll's worth.
    assert sent_after <= 2 * CONCURRENCY
    assert db_rows(db, "select status from batches") == [("canceled",)]
    statuses = dict(db_rows(db, "select status, count(*) from requests group by 1"))
    assert set(statuses) <= {"succeeded", "canceled"}
    assert statuses["canceled"] >= 60 - sent_at_cancel - sent_after
    results = db_rows(db, "select count(*) from results")[0][0]
    assert results == statuses.get("succeeded", 0)
    resumed = batchrun(tmp_path, "resume", "c", "--base-url", base, key=KEY)
    assert resumed.returncode == 2
    assert "was canceled" in resumed.stderr

"""Killed with SIGKILL at random moments and run again: nothing committed is lost or paid twice.

2,000 jobs x 3 models against a simulator process. After each kill the same command continues
the batch. In the end every (custom_id, model) has exactly one result, and the simulator saw
again only requests that were sent but not yet committed when a kill came.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchrun.run.settings import OUTCOME_QUEUE, RunSettings
from batchrun.sim import SimSettings, simulator_process
from tests.runharness import prompts, write_jobs

MODELS = "MiniMax-M2.7,MiniMax-M3,MiniMax-M2"
JOBS = int(os.environ.get("BATCHRUN_CRASH_JOBS", "2000"))
KEY = "sk-crash-test"


def _count(db: Path) -> int:
    try:
        with sqlite3.connect(db) as connection:
            return int(connection.execute("select count(*) from results").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the schema is not there yet


def _command(base_url: str) -> list[str]:
    return [
        sys.executable, "-m", "batchrun.cli", "run", "jobs.jsonl", "--models", MODELS,
        "--base-url", base_url, "--concurrency", "16", "--rpm", "1000000", "--yes",
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(600)  # 6,000 calls over four runs: ~2 min alone on a busy 2-core machine
def test_sigkill_at_random_moments_then_resume(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(JOBS))
    db = tmp_path / "batchrun.db"
    total = JOBS * 3
    rng = random.Random(2026)
    env = {**os.environ, "MINIMAX_API_KEY": KEY}
    uncommitted_at_kills = 0
    settings = SimSettings(time_scale=0.002, limits=False, seed=4, api_key=KEY)
    with simulator_process(settings) as sim:
        base_url = f"{sim.base_url}/anthropic"
        for kill in range(3):
            target = rng.randint(total * (kill + 1) // 5, total * (kill + 2) // 5)
            with subprocess.Popen(
                _command(base_url), cwd=tmp_path, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ) as process:  # fmt: skip
                deadline = time.monotonic() + 120
                while _count(db) < target and process.poll() is None:
                    assert time.monotonic() < deadline, "the run made no progress"
                    time.sleep(0.02)
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)
            sent = sim.fetch_stats()["messages_total"]
            committed = _count(db)
            assert committed >= target
            uncommitted_at_kills += sent - committed
        final = subprocess.run(
            _command(base_url), cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
        sent_in_all = sim.fetch_stats()["messages_total"]
    with sqlite3.connect(db) as connection:
        pairs = connection.execute(
            "select custom_id, model, count(*) from results group by custom_id, model"
        ).fetchall()
        statuses = connection.execute("select status, count(*) from requests group by 1").fetchall()
    assert len(pairs) == total
    assert {count for _, _, count in pairs} == {1}
    assert statuses == [("succeeded", total)]
    resent = sent_in_all - total
    # Only what was sent but not committed at a kill could be sent again: at most the calls in
    # flight (16 per model) plus the results waiting for the writer: the batch it gathers
    # (up to commit_batch) and its queue (OUTCOME_QUEUE).
    assert 0 <= resent <= uncommitted_at_kills
    writer_holds = RunSettings(limits={}).commit_batch + OUTCOME_QUEUE
    assert uncommitted_at_kills <= 3 * (3 * 16 + writer_holds)

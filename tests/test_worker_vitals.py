"""A worker's vitals: the loop-lag monitor, the rate over the last minute, and what a real
``batchrun worker`` shows (live progress) and writes beside its heartbeat for ``status``."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import orjson
import pytest

from batchrun.run.looplag import LoopLag
from batchrun.run.progress import ModelProgress, RunProgress
from batchrun.sim import SimSettings, simulator_process
from batchrun.teams.vitals import Vitals
from tests.helpers import KEY, batchrun
from tests.runharness import prompts, write_jobs

M3 = "MiniMax-M3"


def test_loop_lag_sees_a_call_that_blocks_the_loop() -> None:
    samples: list[float] = []

    async def main() -> LoopLag:
        async with LoopLag(interval_s=0.01, samples=samples) as lag:
            await anyio.sleep(0.05)
            assert lag.longest_s < 0.15
            time.sleep(0.3)  # noqa: ASYNC251 - on purpose: a blocking call, as a synchronous query
            await anyio.sleep(0.05)
        return lag

    lag = anyio.run(main)
    assert lag.longest_s >= 0.2
    assert lag.take() >= 0.2
    assert lag.take() == 0.0  # taken: the next beat starts over
    assert lag.longest_s >= 0.2  # the longest since the start stays
    assert max(samples) == lag.longest_s  # every wake-up kept too (bench/lagprobe's figures)
    assert len(samples) >= 3


def test_vitals_rate_is_over_the_last_minute() -> None:
    model = ModelProgress(model=M3, total=500)
    vitals = Vitals(now=0.0)
    vitals.see(RunProgress(models={M3: model}))
    assert vitals.per_minute(0.0) == 0.0
    model.succeeded = 50
    model.retries = 10  # a retry is a request sent too
    assert vitals.per_minute(30.0) == pytest.approx(120.0)
    model.succeeded = 110
    assert vitals.per_minute(90.0) == pytest.approx(60.0)  # from t=30 on: 60 in the last minute
    assert vitals.figures(91.0)["sent"] == 120


def _workers(db: Path) -> list[dict[str, object]]:
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute("select * from workers")]


def _wait_for_vitals(db: Path, process: subprocess.Popen[bytes], log: Path) -> dict[str, object]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        rows = _workers(db) if db.exists() else []
        if rows and int(rows[0]["sent"] or 0) > 0:  # type: ignore[call-overload]
            return rows[0]
        time.sleep(0.2)
    raise AssertionError(f"the worker wrote no vitals: {log.read_text()}")


@pytest.mark.slow  # ~15 s of a worker process (45 s on a loaded machine)
def test_worker_shows_progress_and_status_shows_its_rate(tmp_path: Path) -> None:
    settings = SimSettings(time_scale=0.05, seed=5, api_key=KEY, limits=False)
    with simulator_process(settings) as sim:
        base_url = f"{sim.base_url}/anthropic"
        write_jobs(tmp_path / "jobs.jsonl", prompts(60))
        db = tmp_path / "team.db"
        common = ("--db", f"sqlite:///{db}", "--base-url", base_url)
        done = batchrun(tmp_path, "submit", "jobs.jsonl", "--models", M3, *common, key=KEY)
        assert done.returncode == 0, done.stdout + done.stderr
        env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
        log = tmp_path / "worker.log"
        with log.open("w") as out:  # not a terminal: plain progress lines
            process = subprocess.Popen(
                [sys.executable, "-m", "batchrun.cli", "worker", *common, "--lease", "3",
                 "--rpm", "300", "--poll", "0.5"],
                cwd=tmp_path, env={**env, "MINIMAX_API_KEY": KEY}, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            row = _wait_for_vitals(db, process, log)
            status = batchrun(tmp_path, "status", "--json", *common[:2])
            shown = batchrun(tmp_path, "status", *common[:2])
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    assert float(row["sent_per_min"] or 0) > 0  # type: ignore[arg-type]
    assert row["stall_max_s"] is not None
    assert status.returncode == 0, status.stderr
    (worker,) = orjson.loads(status.stdout)["workers"]
    assert worker["host"]
    assert worker["heartbeat_age_s"] < 10
    assert worker["sent"] >= 1
    assert worker["sent_per_min"] > 0
    assert {"claims_held", "stall_max_s"} <= set(worker)
    assert "rate (req/min)" in shown.stdout, shown.stdout
    output = log.read_text()
    assert "remaining, " in output, output  # the run's plain progress line

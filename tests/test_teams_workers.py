"""Several ``batchrun worker`` processes on one real PostgreSQL database, as a team runs them.

Three workers drain one batch while one of them is killed with SIGKILL: its claims are taken
over when their leases run out, and every request ends with exactly one result. Three workers
at 600 RPM against a simulator that allows 600 RPM hold the limit together: no 429, and at
least 95% of the limit achieved.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest

from batchrun.sim import SimSettings, simulator_process
from tests.dbfixtures import postgres_server, postgres_url
from tests.helpers import KEY, batchrun
from tests.runharness import prompts, write_jobs

__all__ = ["postgres_server", "postgres_url"]

pytestmark = pytest.mark.postgres
M3, M27 = "MiniMax-M3", "MiniMax-M2.7"


def dsn(url: str) -> str:
    """The psycopg form of the test database's SQLAlchemy URL."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn(url)) as connection:
        return connection.execute(sql).fetchall()  # type: ignore[arg-type]


def count(url: str, sql: str) -> int:
    try:
        return int(query(url, sql)[0][0])  # type: ignore[call-overload]
    except psycopg.errors.UndefinedTable:
        return 0


class Workers:
    """Worker processes started with the same options; each writes to its own log file."""

    def __init__(self, cwd: Path, *args: str, how_many: int = 3) -> None:
        env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
        env["MINIMAX_API_KEY"] = KEY
        self.logs = [cwd / f"worker-{n}.log" for n in range(how_many)]
        self.processes = []
        for log in self.logs:
            with log.open("w") as out:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "batchrun.cli", "worker", *args],
                        cwd=cwd,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

    def wait(self, timeout: float, first: int = 0) -> list[tuple[int, str]]:
        """The exit code and output of each process from ``first`` on."""
        ended = []
        for process, log in zip(self.processes[first:], self.logs[first:], strict=True):
            ended.append((process.wait(timeout=timeout), log.read_text()))
        return ended

    def stop(self) -> None:
        """Kill whatever is still running."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture
def team_sim() -> Iterator[str]:
    """A simulator process answering in about a tenth of a second, limits off."""
    settings = SimSettings(time_scale=0.05, limits=False, seed=11, api_key=KEY)
    with simulator_process(settings) as sim:
        yield f"{sim.base_url}/anthropic"


def submit(tmp_path: Path, url: str, base_url: str, jobs: int, models: str) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(jobs))
    done = batchrun(
        tmp_path, "submit", "jobs.jsonl", "--models", models, "--db", url,
        "--base-url", base_url, key=KEY,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow  # ~11-14 s of three worker processes; test_one_sender's kill test runs by default
def test_three_workers_one_killed_every_request_gets_one_result(
    tmp_path: Path, postgres_url: str, team_sim: str
) -> None:
    url = postgres_url
    submit(tmp_path, url, team_sim, 150, f"{M3},{M27}")
    total = 300
    workers = Workers(
        tmp_path, "--once", "--db", url, "--base-url", team_sim, "--lease", "2", "--poll",
        "0.3", "--concurrency", "6", "--rpm", "1000000",
    )  # fmt: skip
    try:
        victim = workers.processes[0]
        deadline = time.monotonic() + 60
        while count(url, "select count(*) from results") < total // 4:
            assert time.monotonic() < deadline, "the workers made no progress"
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        mine = f"claimed_by like '%-{victim.pid}-%'"
        held = query(url, f"select id from requests where status = 'pending' and {mine}")
        assert held, "the killed worker held no claims: the test proves nothing"
        survivors = workers.wait(timeout=120, first=1)
    finally:
        workers.stop()
    for code, out in survivors:
        assert code == 0, out
    statuses = query(url, "select status, count(*) from requests group by status")
    assert statuses == [("succeeded", total)]
    per_request = query(
        url,
        "select count(r.request_id) from requests q left join results r "
        "on r.request_id = q.id group by q.id",
    )
    assert {n for (n,) in per_request} == {1}
    # What the killed worker held was taken over and finished by the others.
    ids = ",".join(str(i) for (i,) in held)
    assert count(url, f"select count(*) from requests where id in ({ids}) and {mine}") == 0
    assert query(url, "select status from batches") == [("completed",)]
    assert count(url, "select count(*) from workers") <= 1  # the dead one, until reaped


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_three_workers_hold_a_global_rpm_limit(tmp_path: Path, postgres_url: str) -> None:
    url = postgres_url
    # About 37 s at 600 RPM, longer than the simulator's 30 s window (300 requests in any 30 s;
    # the 2% headroom leaves 6 of slack for late sends on a loaded machine).
    jobs = 360
    settings = SimSettings(
        time_scale=0.05, seed=12, api_key=KEY, rpm={M3: 600}, tpm={M3: 10**9}, limit_window=30.0
    )
    with simulator_process(settings) as sim:
        base_url = f"{sim.base_url}/anthropic"
        submit(tmp_path, url, base_url, jobs, M3)
        workers = Workers(
            tmp_path, "--once", "--db", url, "--base-url", base_url, "--rpm", "600", "--tpm",
            "1000000000", "--concurrency", "8", "--lease", "5", "--poll", "0.3",
        )  # fmt: skip
        try:
            ended = workers.wait(timeout=110)
        finally:
            workers.stop()
        stats = sim.fetch_stats()
    for code, out in ended:
        assert code == 0, out
    assert count(url, "select count(*) from attempts where status = 429") == 0
    assert count(url, "select count(distinct claimed_by) from requests") == 3  # all three worked
    sent = sorted(float(t) for (t,) in query(url, "select sent_at from results"))  # type: ignore[arg-type]
    assert len(sent) == jobs
    rate = (len(sent) - 1) / (sent[-1] - sent[0]) * 60
    print(f"3 workers, 600 RPM limit: {rate:.0f} RPM achieved; simulator stats {stats}")
    assert rate >= 0.95 * 600
    assert rate <= 600


@pytest.mark.slow  # ~6-9 s; make test-slow; keeps the default run near 10 minutes
def test_run_status_results_estimate_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(6))
    db = ("--db", postgres_url)
    ran = batchrun(tmp_path, "run", "jobs.jsonl", "--models", f"{M3},{M27}", *db, "--yes",
                   "--sim-time-scale", "0")  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    again = batchrun(tmp_path, "run", "jobs.jsonl", "--models", f"{M3},{M27}", *db, "--yes",
                     "--sim-time-scale", "0")  # fmt: skip
    assert "Continuing batch" in again.stdout
    (name,) = (n for (n,) in query(postgres_url, "select name from batches"))
    status = batchrun(tmp_path, "status", str(name), "--json", *db)
    assert status.returncode == 0, status.stderr
    document = orjson.loads(status.stdout)
    assert document["status"] == "completed"
    assert document["requests"] == {M3: {"succeeded": 6}, M27: {"succeeded": 6}}
    results = batchrun(tmp_path, "results", str(name), *db)
    assert results.returncode == 0, results.stderr
    assert len(results.stdout.splitlines()) == 12
    estimated = batchrun(tmp_path, "estimate", "jobs.jsonl", "--models", M3, *db,
                         "--sim-time-scale", "0")  # fmt: skip
    assert estimated.returncode == 0, estimated.stderr
    assert "MiniMax-M3" in estimated.stdout
    assert count(postgres_url, "select count(*) from results") == 12


def test_a_stopped_worker_releases_its_claims(tmp_path: Path, postgres_url: str) -> None:
    url = postgres_url
    settings = SimSettings(time_scale=0.2, limits=False, seed=13, api_key=KEY)
    with simulator_process(settings) as sim:
        base_url = f"{sim.base_url}/anthropic"
        submit(tmp_path, url, base_url, 40, M3)
        workers = Workers(
            tmp_path, "--db", url, "--base-url", base_url, "--concurrency", "4", "--poll", "0.3",
            how_many=1,
        )  # fmt: skip
        try:
            held = (
                "select count(*) from requests where status = 'pending' and claimed_by is not null"
            )
            deadline = time.monotonic() + 60
            while count(url, held) == 0:
                assert time.monotonic() < deadline, "the worker claimed nothing"
                time.sleep(0.05)
            assert count(url, "select count(*) from workers") == 1
            workers.processes[0].send_signal(signal.SIGTERM)
            ((code, out),) = workers.wait(timeout=60)
        finally:
            workers.stop()
    assert code == 130, out
    assert count(url, held) == 0
    assert count(url, "select count(*) from workers") == 0
    assert count(url, "select count(*) from requests where status = 'pending'") > 0

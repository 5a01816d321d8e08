"""``batchrun run``, ``resume``, ``status``, ``results`` as a user runs them: real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import polars as pl
import pytest

from batchrun.sim import SimSettings, simulator_process
from batchrun.sim.host import RunningSimulator
from tests.helpers import KEY, batchrun, db_rows, wait_for_results
from tests.runharness import prompts, write_jobs

M27, M3 = "MiniMax-M2.7", "MiniMax-M3"


@pytest.fixture
def slow_sim() -> Iterator[RunningSimulator]:
    """A simulator process where each reply takes about a second."""
    settings = SimSettings(time_scale=0.2, limits=False, seed=3, api_key=KEY)
    with simulator_process(settings) as sim:
        yield sim


def test_run_without_key_uses_the_simulator_and_summarizes(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(5))
    done = batchrun(
        tmp_path, "run", "jobs.jsonl", "--models", f"{M27},{M3}", "--sim-time-scale", "0"
    )
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert "simulator" in first
    assert "No API key" in first
    assert M27 in done.stdout
    assert M3 in done.stdout
    assert "latency p50" in done.stdout
    rows = db_rows(
        tmp_path / "batchrun.db",
        "select model, count(*), min(simulated) from results group by model",
    )
    assert sorted(rows) == [(M27, 5, 1), (M3, 5, 1)]
    again = batchrun(
        tmp_path, "run", "jobs.jsonl", "--models", f"{M27},{M3}", "--sim-time-scale", "0"
    )
    assert again.returncode == 0
    assert "Continuing batch" in again.stdout
    assert db_rows(tmp_path / "batchrun.db", "select count(*) from results") == [(10,)]
    assert db_rows(tmp_path / "batchrun.db", "select count(*) from batches") == [(1,)]


def test_invalid_lines_are_listed_and_the_rest_runs(tmp_path: Path) -> None:
    lines = [*prompts(3), {"custom_id": "hot", "prompt": "x", "temperature": 5}]
    write_jobs(tmp_path / "jobs.jsonl", lines)
    with (tmp_path / "jobs.jsonl").open("ab") as handle:
        handle.write(b"{broken\n")
    done = batchrun(tmp_path, "run", "jobs.jsonl", "--models", M27, "--sim-time-scale", "0")
    assert done.returncode == 1
    assert "jobs.jsonl:4: temperature:" in done.stdout
    assert "jobs.jsonl:5:" in done.stdout
    assert db_rows(tmp_path / "batchrun.db", "select count(*) from results") == [(3,)]
    exported = batchrun(tmp_path, "results", "jobs")
    assert exported.returncode == 2  # no batch is named just "jobs"
    name = db_rows(tmp_path / "batchrun.db", "select name from batches")[0][0]
    records = [
        orjson.loads(line) for line in batchrun(tmp_path, "results", str(name)).stdout.splitlines()
    ]
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["result"]["type"] for r in records] == ["succeeded"] * 3 + ["errored"] * 2
    assert records[3]["custom_id"] == "hot"
    assert "temperature" in records[3]["result"]["error"]["message"]


def test_strict_sends_nothing_when_a_line_is_invalid(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", [*prompts(3), {"custom_id": "bad", "prompt": 7}])
    done = batchrun(
        tmp_path, "run", "jobs.jsonl", "--models", M27, "--strict", "--sim-time-scale", "0"
    )
    assert done.returncode == 2
    assert "--strict" in done.stderr
    assert "jobs.jsonl:4" in done.stderr
    assert db_rows(tmp_path / "batchrun.db", "select count(*) from requests") == [(0,)]


@pytest.mark.parametrize(
    ("content", "args", "fragment"),
    [
        (b"", (), "empty"),
        (b'[{"custom_id": "a"}]\n', (), "JSON array"),
        (b'{"custom_id": "a", "prompt": "x"}\n', ("--models", "MiniMax-M9"), "unknown model"),
        (b'{"custom_id": "a", "prompt": "x"}\n', ("--rpm", "fast"), "--rpm"),
    ],
)
def test_unusable_input_is_one_clear_error_and_exit_2(
    tmp_path: Path, content: bytes, args: tuple[str, ...], fragment: str
) -> None:
    (tmp_path / "jobs.jsonl").write_bytes(content)
    done = batchrun(
        tmp_path, "run", "jobs.jsonl", *(args or ("--models", M27)), "--sim-time-scale", "0"
    )
    assert done.returncode == 2
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_file_and_directory(tmp_path: Path) -> None:
    for target in ("missing.jsonl", "."):
        done = batchrun(tmp_path, "run", target, "--models", M27, "--sim-time-scale", "0")
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        assert target in done.stderr


@pytest.mark.parametrize(
    "sig",  # ~14 s each; SIGTERM while sending is also in test_bounds, which runs by default
    [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
)
def test_interrupt_commits_in_flight_work_and_resume_finishes(
    tmp_path: Path, slow_sim: RunningSimulator, sig: signal.Signals
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(40))
    env = {**os.environ, "MINIMAX_API_KEY": KEY}
    base = f"{slow_sim.base_url}/anthropic"
    with subprocess.Popen(
        [sys.executable, "-m", "batchrun.cli", "run", "jobs.jsonl", "--models", M27,
         "--base-url", base, "--concurrency", "8", "--name", "slow"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as process:  # fmt: skip
        wait_for_results(tmp_path / "batchrun.db", 4)
        sent_before = slow_sim.fetch_stats()["messages_total"]
        process.send_signal(sig)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "batchrun resume slow" in out
    done_first = db_rows(tmp_path / "batchrun.db", "select count(*) from results")[0][0]
    assert done_first >= 4
    stats = slow_sim.fetch_stats()
    assert stats["messages_total"] - sent_before <= 8  # nothing new after the signal but in flight
    resumed = batchrun(tmp_path, "resume", "slow", "--base-url", base, key=KEY)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    pairs = db_rows(
        tmp_path / "batchrun.db", "select custom_id, model, count(*) from results group by 1, 2"
    )
    assert len(pairs) == 40
    assert {count for _, _, count in pairs} == {1}
    # only requests without a committed result were sent again
    assert slow_sim.fetch_stats()["messages_total"] <= 40 + 8


def test_results_export_formats_and_order(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(4))
    run = batchrun(
        tmp_path,
        "run",
        "jobs.jsonl",
        "--models",
        f"{M3},{M27}",
        "--name",
        "exp",
        "--sim-time-scale",
        "0",
    )
    assert run.returncode == 0, run.stderr
    lines = batchrun(tmp_path, "results", "exp").stdout.splitlines()
    records = [orjson.loads(line) for line in lines]
    assert [(r["custom_id"], r["model"]) for r in records] == [
        (f"job-{i:04d}", model) for i in range(4) for model in (M3, M27)
    ]
    first = records[0]
    assert first["result"]["type"] == "succeeded"
    assert first["result"]["message"]["role"] == "assistant"
    metrics = first["metrics"]
    assert metrics["attempts"] == 1
    assert metrics["latency_s"] >= metrics["ttft_s"] >= 0
    assert metrics["output_tokens"] > 0
    assert metrics["cost_status"] == "priced"
    assert float(metrics["cost_usd"]) > 0
    assert metrics["simulated"] is True
    assert batchrun(tmp_path, "results", "exp", "--format", "csv", "-o", "r.csv").returncode == 0
    assert (
        batchrun(tmp_path, "results", "exp", "--format", "parquet", "-o", "r.parquet").returncode
        == 0
    )
    csv = pl.read_csv(tmp_path / "r.csv")
    parquet = pl.read_parquet(tmp_path / "r.parquet")
    assert csv.height == parquet.height == 8
    assert list(parquet["custom_id"][:2]) == ["job-0000", "job-0000"]
    assert set(parquet["result_type"]) == {"succeeded"}
    status = batchrun(tmp_path, "status", "exp", "--json")
    document = orjson.loads(status.stdout)
    assert document["requests"][M3] == {"succeeded": 4}
    assert {m["model"] for m in document["models"]} == {M3, M27}


def test_the_api_key_never_leaves_the_process(tmp_path: Path) -> None:
    # The server accepts another key, so every call is refused with a 401.
    settings = SimSettings(time_scale=0, api_key="the-right-key", seed=1)
    write_jobs(tmp_path / "jobs.jsonl", prompts(5))
    with simulator_process(settings) as sim:
        base = f"{sim.base_url}/anthropic"
        done = batchrun(
            tmp_path,
            "run",
            "jobs.jsonl",
            "--models",
            M27,
            "--base-url",
            base,
            "--name",
            "k",
            key=KEY,
        )
    assert done.returncode == 1
    assert "Stopped sending to MiniMax-M2.7" in done.stdout
    exported = batchrun(tmp_path, "results", "k")
    status = batchrun(tmp_path, "status", "k", "--json")
    everything = done.stdout + done.stderr + exported.stdout + status.stdout
    assert KEY not in everything
    for path in tmp_path.iterdir():
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path

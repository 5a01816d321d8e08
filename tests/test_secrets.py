"""The API key (and any password in a base URL) never leaves the process; servers stay local.

After runs that include refused keys, server errors, dropped streams and a store failure, the
key is searched for in every byte of the database files, the logs, the exports, and the output.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from batchrun.api.endpoint import Deadlines, Endpoint
from batchrun.run.retry import RetryPolicy
from batchrun.sim import FaultRates, RunningSimulator, SimSettings, simulator_process
from batchrun.store import redact_url
from tests.helpers import batchrun
from tests.runharness import prompts, run_jobs, write_jobs

SimFactory = Callable[..., RunningSimulator]
M27, M3, M2 = "MiniMax-M2.7", "MiniMax-M3", "MiniMax-M2"
KEY = "sk-secret-0123456789-abcdefghij"
URL_PASSWORD = "url-pass-9876543210"


def _files_holding(root: Path, secret: str) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and secret.encode() in path.read_bytes():
            found.append(path)
    return found


def test_key_is_in_no_log_row_or_report_after_failures(
    tmp_path: Path, sim_factory: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = sim_factory(
        api_key=KEY,
        faults=FaultRates(overloaded=0.2, server_error=0.1, drop=0.1),
        model_faults={M2: FaultRates(auth=1.0)},
    )
    run = run_jobs(
        tmp_path,
        sim,
        prompts(30),
        [M27, M2],
        key=KEY,
        deadlines=Deadlines(idle=2, total=10),
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02),
    )
    (tmp_path / "wrong").mkdir()
    wrong = run_jobs(tmp_path / "wrong", sim, prompts(5), [M3], key="sk-" + "x" * 20)
    assert run.report.stopped_models  # the refused model was stopped
    assert wrong.report.stopped_models  # and a refused key too
    failed = [row for row in run.attempts() if row["outcome"] != "ok"]
    assert failed  # there were errors to leak the key through
    run.store.close()
    wrong.store.close()
    assert KEY not in caplog.text
    assert KEY not in repr(run.report) + repr(wrong.report)
    assert _files_holding(tmp_path, KEY) == []
    # The endpoint's repr never shows the key either.
    assert KEY not in repr(Endpoint(base_url="http://h", api_key=KEY, simulated=False))


@pytest.mark.slow  # eight CLI processes: about a minute on a busy 2-core machine
@pytest.mark.timeout(300)
def test_key_and_url_password_are_in_no_output_export_or_file(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(12))
    settings = SimSettings(
        time_scale=0,
        seed=2,
        api_key=KEY,
        limits=False,
        faults=FaultRates(server_error=0.2, drop=0.1),
        model_faults={M2: FaultRates(auth=1.0)},
    )
    with simulator_process(settings) as sim:
        base = f"{sim.base_url}/anthropic"
        done = batchrun(
            tmp_path, "run", "jobs.jsonl", "--models", f"{M27},{M2}", "--base-url", base,
            "--name", "s", "--max-attempts", "2", "--yes", key=KEY,
        )  # fmt: skip
        wrong = batchrun(
            tmp_path, "run", "jobs.jsonl", "--models", M27, "--base-url", base, "--name", "w",
            "--yes", key="sk-wrong-key-0000000000",
        )  # fmt: skip
        # A password in the base URL (the transport refuses such a URL: each call fails at once)
        write_jobs(tmp_path / "few.jsonl", prompts(2))
        with_password = base.replace("http://", f"http://user:{URL_PASSWORD}@")
        credentials = batchrun(
            tmp_path, "run", "few.jsonl", "--models", M27, "--base-url", with_password,
            "--name", "p", "--max-attempts", "1", "--yes", key=KEY,
        )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Stopped sending to MiniMax-M2" in done.stdout
    assert "Stopped sending to MiniMax-M2.7" in wrong.stdout
    assert "user:***@" in credentials.stdout  # where it sends, without the password
    outputs = [
        done,
        wrong,
        credentials,
        batchrun(tmp_path, "results", "s"),
        batchrun(tmp_path, "results", "s", "--format", "csv", "-o", "s.csv"),
        batchrun(tmp_path, "status", "s", "--json"),
        batchrun(tmp_path, "status", "p"),
        batchrun(tmp_path, "batches"),
    ]
    for output in outputs:
        assert output.returncode in (0, 1), output.stdout + output.stderr
        for secret in (KEY, URL_PASSWORD):
            assert secret not in output.stdout + output.stderr
    with sqlite3.connect(tmp_path / "batchrun.db") as connection:
        stored = [row[0] for row in connection.execute("select base_url from batches")]
    assert stored == [base, base, redact_url(with_password)]
    assert _files_holding(tmp_path, KEY) == []
    assert _files_holding(tmp_path, URL_PASSWORD) == []


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:pw@api.example.com/anthropic", "https://u:***@api.example.com/anthropic"),
        ("https://api.example.com/x?api_key=abc&b=1", "https://api.example.com/x?api_key=***&b=1"),
        ("https://api.example.com/x?token=abc", "https://api.example.com/x?token=***"),
        ("https://api.minimax.io/anthropic", "https://api.minimax.io/anthropic"),
    ],
)
def test_base_urls_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_simulator_binds_localhost_by_default(sim_factory: SimFactory) -> None:
    assert SimSettings().host == "127.0.0.1"
    assert sim_factory().base_url.startswith("http://127.0.0.1:")
    # `batchrun sim` itself, with no --host
    with subprocess.Popen(
        [sys.executable, "-m", "batchrun.sim", "--port", "0", "--time-scale", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ) as process:  # fmt: skip
        try:
            line = process.stdout.readline() if process.stdout else ""
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert line.startswith("batchrun simulator listening on http://127.0.0.1:"), line


def test_the_built_in_simulator_of_a_keyless_run_is_local(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(2))
    done = batchrun(tmp_path, "run", "jobs.jsonl", "--models", M27, "--sim-time-scale", "0")
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "batchrun.db") as connection:
        (base_url,) = connection.execute("select base_url from batches").fetchone()
    assert base_url.startswith("http://127.0.0.1:")

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
from batchrun.redaction import keep_secret, redact
from batchrun.run.retry import RetryPolicy
from batchrun.sim import FaultRates, RunningSimulator, SimSettings, simulator_process
from batchrun.store import redact_url
from tests.fieldserver import FieldServer, Reply, field_server
from tests.helpers import API_KEY, batchrun, db_rows
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
        # A password in the base URL: refused before anything is stored or sent
        write_jobs(tmp_path / "few.jsonl", prompts(2))
        with_password = base.replace("http://", f"http://user:{URL_PASSWORD}@")
        credentials = batchrun(
            tmp_path, "run", "few.jsonl", "--models", M27, "--base-url", with_password,
            "--name", "p", "--max-attempts", "1", "--yes", key=KEY,
        )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Stopped sending to MiniMax-M2" in done.stdout
    assert "Stopped sending to MiniMax-M2.7" in wrong.stdout
    assert credentials.returncode == 2, credentials.stdout + credentials.stderr
    assert "holds a user name or password" in credentials.stderr
    outputs = [
        done,
        wrong,
        credentials,
        batchrun(tmp_path, "results", "s"),
        batchrun(tmp_path, "results", "s", "--format", "csv", "-o", "s.csv"),
        batchrun(tmp_path, "status", "s", "--json"),
        batchrun(tmp_path, "batches"),
    ]
    for output in outputs:
        assert output.returncode in (0, 1, 2), output.stdout + output.stderr
        for secret in (KEY, URL_PASSWORD):
            assert secret not in output.stdout + output.stderr
    with sqlite3.connect(tmp_path / "batchrun.db") as connection:
        stored = [row[0] for row in connection.execute("select base_url from batches")]
    assert stored == [base, base]
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


# --- one redaction for every path (issue 18, item 7) -------------------------------------------


def test_a_key_echoed_in_a_streamed_error_event_is_stored_and_shown_redacted(
    tmp_path: Path,
) -> None:
    """The server echoes the caller's key (and an Anthropic-shaped key, and a URL with a
    password) inside an ``event: error`` mid-stream: the stored attempts, the request's last
    error, the export and the status output all carry it masked."""
    leak = (
        f"upstream refused key {API_KEY} (also sk-ant-api03-{'Z' * 24}, "
        f"https://u:{URL_PASSWORD}@h/x) (1000)"
    )
    server = FieldServer(api_key=API_KEY)
    server.script = lambda number, body: Reply(break_after="half", error_event=_error(leak))
    with field_server(server):
        run = run_jobs(
            tmp_path,
            server,  # type: ignore[arg-type]
            prompts(2),
            [M27],
            retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02),
        )
    messages = [row["message"] for row in run.attempts()]
    assert len(messages) == 4, messages  # two requests, two attempts each, every one failed
    assert all("upstream refused key ***" in m and "sk-ant-" not in m for m in messages)
    run.store.close()
    export = batchrun(tmp_path, "results", "--format", "csv", "-o", "out.csv")
    status = batchrun(tmp_path, "status", "--json")
    for secret in (API_KEY, URL_PASSWORD, "Z" * 24):
        assert _files_holding(tmp_path, secret) == []
        assert secret not in export.stdout + export.stderr + status.stdout + status.stderr


def _error(message: str) -> dict[str, object]:
    return {"type": "error", "error": {"type": "api_error", "message": message}}


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2-secret@api.minimax.io/anthropic",
        "https://tok-0123456789-abcdef@api.minimax.io/anthropic",  # a token as the user name
    ],
)
def test_credentials_in_a_base_url_are_refused_without_repeating_them(
    tmp_path: Path, url: str
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(2))
    for how in (("--base-url", url), ()):
        env_url = {} if how else {"ANTHROPIC_BASE_URL": url}
        done = batchrun(tmp_path, "run", "jobs.jsonl", *how, "--yes", key=KEY, env=env_url)
        assert done.returncode == 2, done.stdout + done.stderr
        source = "--base-url" if how else "ANTHROPIC_BASE_URL"
        assert f"{source} holds a user name or password" in done.stderr
        assert "Traceback" not in done.stderr
        for secret in ("hunter2-secret", "tok-0123456789-abcdef"):
            assert secret not in done.stdout + done.stderr
    assert not (tmp_path / "batchrun.db").exists() or db_rows(
        tmp_path / "batchrun.db", "select count(*) from batches"
    ) == [(0,)]


def test_an_anthropic_key_is_never_sent_to_minimax(tmp_path: Path) -> None:
    """ANTHROPIC_API_KEY=sk-ant-... and no MINIMAX_API_KEY: a clear error before any request
    (MiniMax's host is not reachable from here, so any attempt would show as a connection
    error instead)."""
    write_jobs(tmp_path / "jobs.jsonl", prompts(2))
    anthropic_key = "sk-ant-api03-" + "k" * 30
    done = batchrun(
        tmp_path, "run", "jobs.jsonl", "--yes", env={"ANTHROPIC_API_KEY": anthropic_key}
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "ANTHROPIC_API_KEY holds an Anthropic key" in done.stderr
    assert "MINIMAX_API_KEY" in done.stderr
    assert anthropic_key not in done.stdout + done.stderr


def test_redaction_masks_known_secrets_and_credential_shapes() -> None:
    keep_secret("my-own-minimax-key-123")
    text = (
        "key my-own-minimax-key-123; Authorization: Bearer abcdefgh12345678; "
        "sk-cp-0123456789abcdefghij; eyJhbGciOiJI.eyJzdWIiOiIxMjM0.c2lnbmF0dXJlMTIz; "
        "postgresql://postgres:pw@db/x; ordinary text sk-short"
    )
    assert redact(text) == (
        "key ***; Authorization: Bearer ***; ***; ***; postgresql://***@db/x; "
        "ordinary text sk-short"
    )

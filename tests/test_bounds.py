"""Issue 18, items 8 (caps), 9 and 11: what a hostile user types gets a one-line error saying what
to do, a huge --concurrency costs no memory, --name starts a new batch, and SIGTERM or the end of
input at any phase of a run leaves its batch paused (or a half-loaded one canceled), never
``running`` or ``loading``. Real processes, real SQLite stores, a simulator on 127.0.0.1."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from batchrun.sim import SimSettings, simulator_process
from batchrun.sim.host import RunningSimulator
from tests.helpers import KEY, batchrun, db_rows
from tests.runharness import prompts, write_jobs

M27, M3 = "MiniMax-M2.7", "MiniMax-M3"
FAST = ("--sim-time-scale", "0")


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    """A simulator process that answers at once and takes the CLI tests' key."""
    with simulator_process(SimSettings(time_scale=0.0, limits=False, seed=5, api_key=KEY)) as s:
        yield s


def _env(**extra: str) -> dict[str, str]:
    drop = ("MINIMAX_API_KEY", "ANTHROPIC_API_KEY")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _statuses(db: Path) -> list[str]:
    try:
        return [str(row[0]) for row in db_rows(db, "select status from batches")]
    except sqlite3.OperationalError:  # the schema is being created
        return []


def _wait_until(check: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not {what} after {timeout} s")


def _one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    text = " ".join(done.stderr.split())  # rich wraps long lines
    for fragment in fragments:
        assert fragment in text, text


# --- options refused before anything starts -----------------------------------------------------

REFUSED = [
    (["--max-cost", "99999999999999999999"], ["--max-cost", "1,000,000,000"]),
    (["--max-cost", "0.0000000001"], ["--max-cost", "one nano-dollar"]),
    (["--max-cost", "nan"], ["--max-cost"]),
    (["--confirm-above", "0.0000000001"], ["--confirm-above"]),
    (["--timeout", "nan"], ["--timeout", "not nan"]),
    (["--timeout", "-5"], ["--timeout", "more than 0"]),
    (["--idle-timeout", "inf"], ["--idle-timeout"]),
    (["--sim-time-scale", "nan"], ["--sim-time-scale"]),
    (["--concurrency", "1000000"], ["--concurrency 1,000,000", "4,096"]),
    (["--concurrency", f"{M27}=5000"], [f"for {M27}", "4,096"]),
    (["--rpm", "Bogus=10"], ["--rpm", "'Bogus'", M27, M3]),
    (["--tpm", "Bogus=10"], ["--tpm", "'Bogus'", M27]),
    (["--concurrency", "Bogus=3"], ["--concurrency", "'Bogus'", M27]),
    (["--models", ","], ["--models", "names no model"]),
]


@pytest.mark.parametrize(("args", "fragments"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_run_refuses_bad_options_in_one_line(
    tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(2, model=M27))
    done = batchrun(tmp_path, "run", "jobs.jsonl", *FAST, "-y", *args)
    _one_line_error(done, *fragments)
    assert not (tmp_path / "batchrun.db").exists()  # refused before the store was opened


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--port", "99999"], "65535"),
        (["--port", "0", "--time-scale", "nan"], "--time-scale must be a number of 0 or more"),
        (["--port", "0", "--ttft", "-1"], "--ttft must be a number of 0 or more"),
    ],
)
def test_sim_refuses_bad_numbers(tmp_path: Path, args: list[str], fragment: str) -> None:
    done = batchrun(tmp_path, "sim", *args, timeout=30)
    _one_line_error(done, fragment)


def test_worker_refuses_nan_times(tmp_path: Path) -> None:
    _one_line_error(batchrun(tmp_path, "worker", "--once", "--lease", "nan"), "--lease")
    _one_line_error(batchrun(tmp_path, "worker", "--once", "--poll", "nan"), "--poll")


def test_a_one_nano_dollar_cap_is_a_cap(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(2, model=M27))
    done = batchrun(tmp_path, "run", "jobs.jsonl", *FAST, "-y", "--max-cost", "0.000000001")
    assert "Budget reached" in done.stdout, done.stdout + done.stderr
    assert db_rows(tmp_path / "batchrun.db", "select count(*) from results") == [(0,)]


# --- stores and lines that used to end in tracebacks --------------------------------------------


def test_a_store_from_a_newer_batchrun_is_named(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(1, model=M27))
    assert batchrun(tmp_path, "run", "jobs.jsonl", *FAST).returncode == 0
    with sqlite3.connect(tmp_path / "batchrun.db") as connection:
        connection.execute("update alembic_version set version_num = '9999'")
    for args in (["batches"], ["run", "jobs.jsonl", *FAST]):
        done = batchrun(tmp_path, *args)
        _one_line_error(done, "a newer batchrun made it", "schema 9999", "upgrade batchrun")


def _nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {"type": "string"}
    for _ in range(depth):
        value = {"type": "object", "properties": {"a": value}}
    return value


@pytest.mark.slow  # several CLI runs, ~10 s: make test-slow
def test_deeply_nested_lines_are_invalid_lines_not_a_stuck_batch(tmp_path: Path) -> None:
    metadata: dict[str, object] | str = "x"
    for _ in range(400):
        metadata = {"a": metadata}
    lines = [
        {"custom_id": "fine", "prompt": "Hello?", "model": M27},
        {"custom_id": "schema", "prompt": "JSON?", "model": M27,
         "expect": {"json_schema": _nested(50)}},
        {"custom_id": "deep", "params": {"model": M27, "max_tokens": 10, "metadata": metadata,
                                          "messages": [{"role": "user", "content": "hi"}]}},
        {"custom_id": "issue", "prompt": "JSON?", "model": M27,
         "expect": {"json_schema": _nested(150)}},  # the case
    ]  # fmt: skip
    # json, not orjson: orjson refuses to write more than 255 levels
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = batchrun(tmp_path, "run", "jobs.jsonl", *FAST, "--name", "deep")
    assert "Traceback" not in done.stderr, done.stderr
    text = " ".join(done.stdout.split())
    assert "jobs.jsonl:2: expect.json_schema: the schema is nested more than 64 levels" in text
    assert "jobs.jsonl:3: params.metadata: nested more than 128 levels" in text
    assert "jobs.jsonl:4: expect.json_schema: nested more than 128 levels" in text
    assert _statuses(tmp_path / "batchrun.db") == ["completed"]
    assert db_rows(tmp_path / "batchrun.db", "select custom_id from results") == [("fine",)]


@pytest.mark.slow  # several CLI runs, ~12 s: make test-slow
def test_a_line_invalid_for_one_model_is_named_with_file_line_and_model(tmp_path: Path) -> None:
    source = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    image: dict[str, object] = {"type": "image", "source": source}
    lines: list[dict[str, object]] = [
        {"custom_id": "text", "prompt": "Hello?"},
        {"custom_id": "pic", "messages": [{"role": "user", "content": [image]}]},
    ]
    write_jobs(tmp_path / "jobs.jsonl", lines)
    done = batchrun(tmp_path, "run", "jobs.jsonl", "--models", f"{M27},{M3}", *FAST)
    text = " ".join(done.stdout.split())
    assert "1 request cannot go to their model" in text, text
    assert f"jobs.jsonl:2 (pic) for {M27}: {M27} does not accept image input" in text


# --- concurrency bounded by the work ------------------------------------------------------------


def _peak_rss_mb(cwd: Path, *args: str, timeout: float = 90) -> tuple[int, float]:
    """Run the CLI; its exit code and the peak resident memory (MB) of it and its children."""
    process = subprocess.Popen(
        [sys.executable, "-m", "batchrun.cli", *args],
        cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage.ru_maxrss / 1024
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise AssertionError(f"batchrun {' '.join(args)} still running after {timeout} s")


@pytest.mark.slow  # three runs measured for memory, ~20 s: make test-slow
def test_concurrency_far_above_the_work_costs_no_memory(tmp_path: Path) -> None:
    # 100,000 workers (from a catalog file) for two requests took about 900 MB and 25 s before
    # workers were bounded by the requests pending; now a catalog stops at 4,096 too.
    write_jobs(tmp_path / "jobs.jsonl", prompts(2, model=M27))
    (tmp_path / "huge.toml").write_text(f'[models."{M27}"]\nconcurrency = 100000\n')
    refused = batchrun(tmp_path, "run", "jobs.jsonl", "--catalog", "huge.toml", *FAST)
    _one_line_error(refused, "concurrency 100,000 is more than batchrun keeps in flight")
    (tmp_path / "most.toml").write_text(f'[models."{M27}"]\nconcurrency = 4096\n')
    code, peak = _peak_rss_mb(tmp_path, "run", "jobs.jsonl", "--catalog", "most.toml", *FAST)
    assert code == 0
    assert peak < 400, f"{peak:.0f} MB"
    code, peak = _peak_rss_mb(
        tmp_path, "run", "jobs.jsonl", "--concurrency", "4096", "--db", "max.db", *FAST
    )
    assert code == 0
    assert peak < 400, f"{peak:.0f} MB"
    assert db_rows(tmp_path / "max.db", "select count(*) from results") == [(2,)]


# --- --name ---------------------------------------------------------------------------------------


@pytest.mark.slow  # ~9-13 s of CLI runs; make test-slow; keeps the default run near 10 minutes
def test_a_new_name_starts_a_new_batch_and_an_old_one_continues(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(2, model=M27))
    write_jobs(tmp_path / "other.jsonl", prompts(3, model=M27))
    db = tmp_path / "batchrun.db"
    assert batchrun(tmp_path, "run", "jobs.jsonl", *FAST, "--name", "first").returncode == 0
    second = batchrun(tmp_path, "run", "jobs.jsonl", *FAST, "--name", "second")
    assert second.returncode == 0, second.stderr
    assert "Continuing" not in second.stdout
    assert db_rows(db, "select name, status from batches order by created_at") == [
        ("first", "completed"),
        ("second", "completed"),
    ]
    assert db_rows(db, "select count(*) from results") == [(4,)]  # each batch ran its file
    again = batchrun(tmp_path, "run", "jobs.jsonl", *FAST, "--name", "first")
    assert "Continuing batch first" in again.stdout
    plain = batchrun(tmp_path, "run", "jobs.jsonl", *FAST)
    assert "Continuing batch second" in plain.stdout  # without --name: the latest batch
    taken = batchrun(tmp_path, "run", "other.jsonl", *FAST, "--name", "first")
    _one_line_error(taken, "a batch named 'first' already exists", "another file", "--name")
    models = batchrun(tmp_path, "run", "jobs.jsonl", "--models", M3, *FAST, "--name", "first")
    _one_line_error(models, "runs other models")
    assert len(db_rows(db, "select id from batches")) == 2
    assert db_rows(db, "select count(*) from results") == [(4,)]


# --- SIGTERM and the end of input at each phase -------------------------------------------------


def _start(cwd: Path, sim: RunningSimulator, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchrun.cli", "run", *args,
         "--base-url", f"{sim.base_url}/anthropic"],
        cwd=cwd, env=_env(MINIMAX_API_KEY=KEY), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _many(path: Path, count: int) -> None:
    path.write_bytes(
        b"".join(
            orjson.dumps({"custom_id": f"j{i}", "prompt": f"Question {i}?", "model": M27}) + b"\n"
            for i in range(count)
        )
    )


def test_sigterm_while_loading_cancels_the_part_loaded(
    tmp_path: Path, sim: RunningSimulator
) -> None:
    _many(tmp_path / "jobs.jsonl", 40_000)
    db = tmp_path / "batchrun.db"
    with _start(tmp_path, sim, "jobs.jsonl", "-y") as process:
        _wait_until(lambda: _statuses(db) == ["loading"], "loading")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "Traceback" not in err
    assert "Interrupted while loading jobs.jsonl" in " ".join(out.split())
    assert _statuses(db) == ["canceled"]  # a part of the file is never continued as if whole
    assert sim.fetch_stats()["messages_total"] == 0


@pytest.mark.slow  # a long estimate to interrupt, ~15 s: make test-slow
def test_sigterm_during_the_estimate_pauses_the_batch(
    tmp_path: Path, sim: RunningSimulator
) -> None:
    _many(tmp_path / "jobs.jsonl", 5_000)
    db = tmp_path / "batchrun.db"
    with _start(tmp_path, sim, "jobs.jsonl", "-y", "--name", "est") as process:
        _wait_until(lambda: sim.fetch_stats()["count_tokens_total"] > 0, "counting")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "Traceback" not in err
    assert "batchrun resume est" in out
    assert _statuses(db) == ["paused"]
    assert sim.fetch_stats()["messages_total"] == 0


@pytest.mark.slow  # 5,000 lines counted twice, ~25 s: make test-slow
def test_sigterm_during_submits_precheck_pauses_and_a_second_submit_queues(
    tmp_path: Path, sim: RunningSimulator
) -> None:
    _many(tmp_path / "jobs.jsonl", 5_000)
    db = tmp_path / "batchrun.db"
    base = ("--base-url", f"{sim.base_url}/anthropic")
    with subprocess.Popen(
        [sys.executable, "-m", "batchrun.cli", "submit", "jobs.jsonl", "--name", "sub", *base],
        cwd=tmp_path, env=_env(MINIMAX_API_KEY=KEY), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    ) as process:  # fmt: skip
        _wait_until(lambda: sim.fetch_stats()["count_tokens_total"] > 0, "counting")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "Traceback" not in err
    assert "is paused, not queued" in " ".join(out.split())
    assert _statuses(db) == ["paused"]
    again = batchrun(tmp_path, "submit", "jobs.jsonl", "--name", "sub", *base, key=KEY)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _statuses(db) == ["queued"]
    assert sim.fetch_stats()["messages_total"] == 0


def test_sigterm_while_sending_pauses_the_batch(tmp_path: Path) -> None:
    settings = SimSettings(time_scale=0.2, limits=False, seed=3, api_key=KEY)
    write_jobs(tmp_path / "jobs.jsonl", prompts(30, model=M27))
    db = tmp_path / "batchrun.db"
    with (
        simulator_process(settings) as slow,
        _start(tmp_path, slow, "jobs.jsonl", "-y", "--concurrency", "4") as process,
    ):
        _wait_until(lambda: slow.fetch_stats()["messages_total"] > 0, "sending")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert _statuses(db) == ["paused"]


def _on_a_terminal(cwd: Path, sim: RunningSimulator) -> tuple[subprocess.Popen[bytes], int]:
    """``batchrun run`` on a pseudo-terminal, asking before it sends anything."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "batchrun.cli", "run", "jobs.jsonl", "--name", "ask",
         "--confirm-above", "0", "--base-url", f"{sim.base_url}/anthropic"],
        cwd=cwd, env=_env(MINIMAX_API_KEY=KEY, COLUMNS="200"),
        stdin=follower, stdout=follower, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    return process, leader


def _read_until(leader: int, text: bytes, timeout: float = 60) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while text not in seen:
        left = deadline - time.monotonic()
        assert left > 0, seen.decode(errors="replace")
        ready, _, _ = select.select([leader], [], [], left)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the process closed the terminal
                chunk = b""
            assert chunk, seen.decode(errors="replace")
            seen += chunk
    return seen


def _drain(leader: int, process: subprocess.Popen[bytes]) -> str:
    """Everything the process still writes, until it exits."""
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        try:
            chunk = os.read(leader, 65536) if ready else b""
        except OSError:
            break
        seen += chunk
        if ready and not chunk:
            break
        if not ready and process.poll() is not None:
            break
    process.wait(timeout=60)
    os.close(leader)
    return " ".join(seen.decode(errors="replace").split())


@pytest.mark.slow  # a run on a pty, ~10 s; the SIGTERM at the question stays default
def test_end_of_input_at_the_question_is_a_no(tmp_path: Path, sim: RunningSimulator) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(2, model=M27))
    process, leader = _on_a_terminal(tmp_path, sim)
    _read_until(leader, b"Send it?")
    os.write(leader, b"\x04")  # Ctrl-D: the end of input
    text = _drain(leader, process)
    assert process.returncode == 0, text
    assert "Aborted" not in text
    assert "Nothing sent" in text
    assert _statuses(tmp_path / "batchrun.db") == ["paused"]
    assert sim.fetch_stats()["messages_total"] == 0


def test_sigterm_at_the_question_pauses_the_batch(tmp_path: Path, sim: RunningSimulator) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(2, model=M27))
    process, leader = _on_a_terminal(tmp_path, sim)
    _read_until(leader, b"Send it?")
    process.send_signal(signal.SIGTERM)
    text = _drain(leader, process)
    assert process.returncode == 130, text
    assert "batchrun resume ask" in text
    assert _statuses(tmp_path / "batchrun.db") == ["paused"]
    assert sim.fetch_stats()["messages_total"] == 0

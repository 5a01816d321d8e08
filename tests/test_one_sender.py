"""One sender per request, and a refusal remembered (issue 18, items 1 and 2), with real processes.

Two ``batchrun run`` of the same file, started at the same instant or a few seconds apart, on
one store: one batch, every request sent once (the simulator's own count of what it served), and
a --max-cost held across both. A declined estimate (``n`` or end of input at the prompt, on a
real terminal) is asked again on the next run and resume, with the estimate of everything still
to send. The same on PostgreSQL, where creating the batch and claiming take other paths.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from batchrun.api.endpoint import Endpoint
from batchrun.catalog import load_catalog
from batchrun.plan.planner import Opened, PlanOptions, batch_key, file_digest, open_file_batch
from batchrun.sim import SimSettings, simulator_process
from batchrun.store import Store, database_url
from batchrun.store.migrate import alembic_config
from tests.dbfixtures import postgres_server, postgres_url, sqlite_url, store, store_url
from tests.helpers import KEY, batchrun
from tests.runharness import prompts, write_jobs

__all__ = ["postgres_server", "postgres_url", "sqlite_url", "store", "store_url"]

M3 = "MiniMax-M3"


@pytest.fixture
def served() -> Iterator[str]:
    """A simulator process (limits off, answers in a few hundredths of a second); its URL."""
    settings = SimSettings(time_scale=0.02, limits=False, seed=3, api_key=KEY)
    with simulator_process(settings) as sim:
        yield sim.base_url


@pytest.fixture
def served_slowly() -> Iterator[str]:
    """The same, answering in about a fifth of a second: a run of 150 lasts past a second's
    start-up."""
    settings = SimSettings(time_scale=0.1, limits=False, seed=3, api_key=KEY)
    with simulator_process(settings) as sim:
        yield sim.base_url


def messages_served(base: str) -> int:
    """How many messages calls the simulator answered (any outcome)."""
    with urllib.request.urlopen(f"{base}/_sim/stats", timeout=5) as reply:
        return int(json.load(reply)["messages_total"])


def environment() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MINIMAX_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")
    }
    env["MINIMAX_API_KEY"] = KEY
    return env


def start_run(
    cwd: Path, db: str, base: str, *extra: str, concurrency: int = 4
) -> subprocess.Popen[str]:
    """``batchrun run jobs.jsonl`` against the simulator, in the background."""
    command = [
        sys.executable, "-m", "batchrun.cli", "run", "jobs.jsonl", "--db", db,
        "--base-url", f"{base}/anthropic", "--models", M3, "--max-tokens", "64",
        "--rpm", "1000000", "--concurrency", str(concurrency), *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(processes: list[subprocess.Popen[str]], timeout: float = 60) -> list[tuple[int, str]]:
    ended = []
    try:
        for process in processes:
            out, _ = process.communicate(timeout=timeout)
            ended.append((process.returncode, out))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return ended


def rows(db: str, sql: str) -> list[tuple[object, ...]]:
    store = Store(database_url(db))
    try:
        with store.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    finally:
        store.close()


def wait_for(db: str, sql: str, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if int(rows(db, sql)[0][0]) >= at_least:  # type: ignore[call-overload]
                return
        except Exception:  # the store is being created by the run
            pass
        time.sleep(0.05)
    raise AssertionError(f"{sql!r} stayed below {at_least} for {timeout} s")


def check_sent_once(db: str, base: str, jobs: int) -> None:
    """One batch, every request with one result, the simulator served each request once."""
    assert rows(db, "select count(*) from batches") == [(1,)]
    assert rows(db, "select status, count(*) from requests group by status") == [
        ("succeeded", jobs)
    ]
    per_request = rows(
        db,
        "select count(r.request_id) from requests q left join results r "
        "on r.request_id = q.id group by q.id",
    )
    assert {n for (n,) in per_request} == {1}
    assert messages_served(base) == jobs
    assert rows(db, "select count(*) from workers") == [(0,)]  # both unregistered


def two_runs_together(tmp_path: Path, db: str, base: str, jobs: int) -> list[tuple[int, str]]:
    write_jobs(tmp_path / "jobs.jsonl", prompts(jobs))
    return finish([start_run(tmp_path, db, base), start_run(tmp_path, db, base)])


# --- two runs of one file ---------------------------------------------------------------------


def test_two_runs_started_together_make_one_batch_and_send_each_request_once(
    tmp_path: Path, served: str
) -> None:
    db = str(tmp_path / "store.db")
    jobs = 80
    for code, out in two_runs_together(tmp_path, db, served, jobs):
        assert code == 0, out
    check_sent_once(db, served, jobs)
    assert rows(db, "select status from batches") == [("completed",)]


@pytest.mark.slow  # ~15 s: the first run must still be going when the second has started
def test_a_second_run_started_seconds_later_shares_the_rest(
    tmp_path: Path, served_slowly: str
) -> None:
    db = str(tmp_path / "store.db")
    jobs = 150
    write_jobs(tmp_path / "jobs.jsonl", prompts(jobs))
    first = start_run(tmp_path, db, served_slowly, concurrency=3)
    try:
        wait_for(db, "select count(*) from results", 10)
    except AssertionError:
        finish([first])
        raise
    second = start_run(tmp_path, db, served_slowly, concurrency=3)
    (code1, out1), (code2, out2) = finish([first, second])
    assert (code1, code2) == (0, 0), out1 + out2
    assert "Continuing batch" in out2
    assert first.returncode == 0
    check_sent_once(db, served_slowly, jobs)


def test_the_cap_holds_across_two_runs(tmp_path: Path, served: str) -> None:
    db = str(tmp_path / "store.db")
    jobs = 120
    cap_usd = 0.003  # about 40 of the 120 requests at 64 output tokens
    write_jobs(tmp_path / "jobs.jsonl", prompts(jobs))
    ended = finish(
        [
            start_run(tmp_path, db, served, "--max-cost", str(cap_usd)),
            start_run(tmp_path, db, served, "--max-cost", str(cap_usd)),
        ]
    )
    outputs = "".join(out for _, out in ended)
    assert "Budget reached" in outputs
    assert rows(db, "select count(*) from batches") == [(1,)]
    spent = int(rows(db, "select coalesce(sum(cost_nanos), 0) from results")[0][0])  # type: ignore[call-overload]
    assert spent <= cap_usd * 1e9
    results = int(rows(db, "select count(*) from results")[0][0])  # type: ignore[call-overload]
    assert 0 < results < jobs
    # Nothing was served that is not stored: the cap is on what was sent, not only on what
    # was kept (the runs stored $0.0099 while the simulator served $0.0197).
    assert messages_served(served) == results


# --- a refusal remembered ---------------------------------------------------------------------


class Terminal:
    """A batchrun command on a real pseudo-terminal (stdin and stdout are ttys: it asks)."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.master, slave = pty.openpty()
        env = {**environment(), "COLUMNS": "200", "TERM": "dumb"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "batchrun.cli", *args],
            cwd=cwd,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
        )
        os.close(slave)
        self.seen = ""

    def read_until(self, marker: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {marker!r} in:\n{self.seen}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the process ended and closed the terminal
                    chunk = b""
                assert chunk, f"ended before {marker!r}:\n{self.seen}"
                self.seen += chunk.decode(errors="replace")
        return self.seen

    def answer(self, text: str) -> None:
        os.write(self.master, text.encode())

    def end(self, timeout: float = 30) -> tuple[int, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                self.seen += chunk.decode(errors="replace")
            elif self.process.poll() is not None:
                break
        try:
            return self.process.wait(timeout=max(1.0, deadline - time.monotonic())), self.seen
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(OSError):
            os.close(self.master)


_COST = re.compile(r"This may cost up to (\$[0-9.,]+)")


def ask(cwd: Path, answer: str, *args: str) -> tuple[int, str, str]:
    """Run a command on a terminal, answer its cost question; (exit code, output, the cost)."""
    terminal = Terminal(cwd, *args)
    try:
        terminal.read_until("Send it?")
        terminal.answer(answer)
        code, out = terminal.end()
    finally:
        terminal.close()
    found = _COST.search(out)
    assert found, out
    return code, out, found.group(1)


def run_args(db: str, base: str) -> tuple[str, ...]:
    return (
        "run", "jobs.jsonl", "--db", db, "--base-url", f"{base}/anthropic", "--models", M3,
        "--max-tokens", "64", "--rpm", "1000000", "--confirm-above", "0",
    )  # fmt: skip


def decline_twice(tmp_path: Path, db: str, base: str, jobs: int, again: str) -> str:
    """Decline the first run's estimate; run again and get the same question, answered with
    ``again``; the cost asked both times."""
    write_jobs(tmp_path / "jobs.jsonl", prompts(jobs))
    code, out, first_cost = ask(tmp_path, "n\n", *run_args(db, base))
    assert code == 0, out
    assert "Nothing sent" in out, out
    assert messages_served(base) == 0
    assert rows(db, "select status, declined_at is not null from batches") == [("paused", True)]
    # Again: the estimate of everything still to send (already counted), and the question.
    code, out, cost = ask(tmp_path, again, *run_args(db, base))
    assert code == 0, out
    assert "Nothing sent" in out, out
    assert "was declined" in out, out
    assert cost == first_cost
    assert messages_served(base) == 0
    return first_cost


@pytest.mark.slow  # ~12 s of CLI runs: make test-slow
def test_a_declined_estimate_is_asked_again_with_everything_left(
    tmp_path: Path, served: str
) -> None:
    decline_twice(tmp_path, str(tmp_path / "store.db"), served, 20, "n\n")


@pytest.mark.slow  # ~15 s of CLI runs: make test-slow
def test_a_declined_batch_without_a_terminal_waits_for_yes(tmp_path: Path, served: str) -> None:
    """After a refusal, a run with nobody to ask (no terminal) sends nothing; --yes sends."""
    db, jobs = str(tmp_path / "store.db"), 10
    write_jobs(tmp_path / "jobs.jsonl", prompts(jobs))
    code, out, _ = ask(tmp_path, "n\n", *run_args(db, served))
    assert code == 0, out
    again = batchrun(tmp_path, *run_args(db, served), key=KEY)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "no terminal here to ask again: add --yes" in " ".join(again.stdout.split())
    assert messages_served(served) == 0
    sent = batchrun(tmp_path, *run_args(db, served), "--yes", key=KEY)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert messages_served(served) == jobs
    assert rows(db, "select declined_at is null, status from batches") == [(True, "completed")]


@pytest.mark.slow
def test_end_of_input_is_a_no_remembered_until_resume_sends(tmp_path: Path, served: str) -> None:
    db, jobs = str(tmp_path / "store.db"), 30
    first_cost = decline_twice(tmp_path, db, served, jobs, "\x04")  # end of input: a no too
    (name,) = rows(db, "select name from batches")[0]
    resume = ("resume", str(name), "--db", db, "--base-url", f"{served}/anthropic")
    code, out, on_resume = ask(tmp_path, "y\n", *resume, "--confirm-above", "0")
    assert code == 0, out
    assert on_resume == first_cost
    assert messages_served(served) == jobs
    assert rows(db, "select declined_at is null, status from batches") == [(True, "completed")]


# --- PostgreSQL -------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.slow  # the SQLite twin stays default; ~15 s: make test-slow
def test_postgres_two_runs_together_one_batch_each_request_once(
    tmp_path: Path, served: str, postgres_url: str
) -> None:
    jobs = 80
    for code, out in two_runs_together(tmp_path, postgres_url, served, jobs):
        assert code == 0, out
    check_sent_once(postgres_url, served, jobs)


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_a_declined_estimate_is_asked_again(
    tmp_path: Path, served: str, postgres_url: str
) -> None:
    decline_twice(tmp_path, postgres_url, served, 20, "\x04")


# --- the batch's key, in the library ----------------------------------------------------------

ENDPOINT = Endpoint(base_url="http://127.0.0.1:9/anthropic", api_key="sk-x", simulated=True)


def keyed_row(batch_id: str, key: str, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": batch_id, "name": f"name-{batch_id}", "source_path": "jobs.jsonl",
        "source_sha256": "a" * 64, "models": [M3], "status": "running", "simulated": True,
        "base_url": "http://127.0.0.1:9/anthropic", "settings": {}, "jobs_total": 0,
        "lines_invalid": 0, "open_key": key,
    }  # fmt: skip
    row.update(overrides)
    return row


def test_racing_inserts_of_one_key_store_one_batch(store_url: str) -> None:
    stores = [Store(store_url) for _ in range(6)]
    start = threading.Barrier(len(stores))
    won: list[bool] = []

    def insert(n: int) -> None:
        start.wait()
        won.append(stores[n].create_batch(keyed_row(f"b{n}", "k" * 64)))

    threads = [threading.Thread(target=insert, args=(n,)) for n in range(len(stores))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(won) == [False] * 5 + [True]
        assert len(stores[0].list_batches()) == 1
    finally:
        for opened in stores:
            opened.close()


def load_again(store: Store, path: Path, **kwargs: Any) -> Opened:
    options = PlanOptions(models=[M3])
    digest = file_digest(path)
    return open_file_batch(store, load_catalog(), path, options, ENDPOINT, digest=digest, **kwargs)


def test_a_load_whose_process_died_gives_up_the_key(tmp_path: Path, store: Store) -> None:
    path = write_jobs(tmp_path / "jobs.jsonl", prompts(3))
    key = batch_key(file_digest(path), [M3])
    store.create_batch(keyed_row("dead", key, status="loading", source_sha256=file_digest(path)))
    told: list[str] = []
    opened = load_again(store, path, waiting=lambda b: told.append(b.id), stale_s=0.5)
    assert told == ["dead"]  # it waited for the other load first
    assert opened.plan is not None
    assert opened.plan.requests == 3
    assert store.batches.holding(key) == store.find_batch(opened.batch.id)
    assert store.find_batch("dead").open_key is None
    # And the next run continues the new batch.
    again = load_again(store, path)
    assert again.plan is None
    assert again.batch.id == opened.batch.id


def test_a_canceled_batch_frees_its_file_for_a_new_batch(tmp_path: Path, store: Store) -> None:
    path = write_jobs(tmp_path / "jobs.jsonl", prompts(2))
    first = load_again(store, path)
    store.set_batch(first.batch.id, status="canceled")
    assert store.find_batch(first.batch.id).open_key is None
    second = load_again(store, path)
    assert second.plan is not None
    assert second.batch.id != first.batch.id


def test_the_upgrade_gives_the_key_to_the_batch_that_is_continued(store_url: str) -> None:
    Store(store_url).close()
    config = alembic_config()
    config.set_main_option("sqlalchemy.url", store_url)
    command.downgrade(config, "0007")
    engine = create_engine(store_url)
    old = {
        "source_path": "jobs.jsonl", "source_sha256": "a" * 64, "models": '["MiniMax-M3"]',
        "simulated": True, "base_url": "u", "settings": "{}", "jobs_total": 0,
        "lines_invalid": 0, "updated_at": 0.0,
    }  # fmt: skip
    insert = text(
        "INSERT INTO batches (id, name, source_path, source_sha256, models, status, simulated, "
        "base_url, settings, created_at, updated_at, jobs_total, lines_invalid) VALUES (:id, "
        ":id, :source_path, :source_sha256, :models, :status, :simulated, :base_url, "
        ":settings, :created_at, :updated_at, :jobs_total, :lines_invalid)"
    )
    made = [("older", "paused", 1.0), ("newer", "running", 2.0), ("newest", "canceled", 3.0)]
    try:
        with engine.begin() as connection:
            for batch_id, status, at in made:
                connection.execute(
                    insert, {**old, "id": batch_id, "status": status, "created_at": at}
                )
        command.upgrade(config, "head")
        with engine.connect() as connection:
            keys = dict(connection.execute(text("SELECT id, open_key FROM batches")).all())
    finally:
        engine.dispose()
    assert keys == {"older": None, "newer": batch_key("a" * 64, [M3]), "newest": None}


def test_a_resume_after_a_killed_run_takes_its_claims_at_once(
    tmp_path: Path, served_slowly: str
) -> None:
    """SQLite: every sender is on this machine, so a dead one's claims need no lease to end."""
    db = str(tmp_path / "store.db")
    jobs = 60
    write_jobs(tmp_path / "jobs.jsonl", prompts(jobs))
    victim = start_run(tmp_path, db, served_slowly, concurrency=3)
    try:
        wait_for(db, "select count(*) from results", 10)
        wait_for(db, "select count(*) from requests where claimed_by is not null", 1)
    finally:
        victim.kill()
        victim.communicate(timeout=30)
    live = f"select count(*) from requests where status = 'pending' and lease_until > {time.time()}"
    held = rows(db, live)
    assert held[0][0], "the killed run held no live claims: the test proves nothing"
    (name,) = rows(db, "select name from batches")[0]
    command = [
        sys.executable, "-m", "batchrun.cli", "resume", str(name), "--db", db,
        "--base-url", f"{served_slowly}/anthropic", "--rpm", "1000000", "--concurrency", "3",
    ]  # fmt: skip
    started = time.monotonic()
    resume = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    resumed = finish([resume])
    took = time.monotonic() - started
    assert resumed[0][0] == 0, resumed[0][1]
    assert rows(db, "select status, count(*) from requests group by status") == [
        ("succeeded", jobs)
    ]
    assert took < 25, f"the resume waited for the dead run's leases ({took:.1f} s)"

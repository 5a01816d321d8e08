"""Storage faults: a reader polling while a batch runs, a database that refuses writes mid-run or
from the start, and a store created by an earlier schema.

Real processes and real SQLite files: the runner is `batchrun run` in a subprocess, the reader
is this process (as the dashboard would be), the failures are SQLite's own.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from batchrun.exceptions import StoreError
from batchrun.sim import SimSettings, simulator_process
from batchrun.store import Store, alembic_config, database_url
from batchrun.store.tables import metadata
from tests.helpers import batchrun, db_rows, wait_for_results
from tests.runharness import prompts, write_jobs

M27, M3, M2 = "MiniMax-M2.7", "MiniMax-M3", "MiniMax-M2"
KEY = "sk-storage-test"


def _run(cwd: Path, base: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchrun.cli", "run", "jobs.jsonl", "--base-url", base,
         "--yes", *extra],
        cwd=cwd, env={**os.environ, "MINIMAX_API_KEY": KEY},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


class Reader(threading.Thread):
    """Polls the results as a dashboard would, with a short busy timeout, until told to stop."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.reads = 0
        self.seen: list[int] = []

    def run(self) -> None:
        while not self.db.exists() and not self.stop.is_set():
            time.sleep(0.01)
        store: Store | None = None
        while not self.stop.is_set():
            try:
                self._poll()
                if store is None:
                    store = Store(database_url(str(self.db)))
                for batch in store.list_batches():
                    store.status_counts(batch.id)
                    store.batch_spend(batch.id)
                self.reads += 1
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):  # the schema is being created
                    self.errors.append(str(exc))
            except StoreError as exc:
                self.errors.append(str(exc))
            time.sleep(0.05)
        if store is not None:
            store.close()

    def _poll(self) -> None:
        # A plain connection with a 1-second busy timeout (the store's own is 30 s): in WAL mode a
        # reader never waits for the writer, so it must never see "database is locked".
        with sqlite3.connect(self.db, timeout=1.0) as connection:
            connection.execute("BEGIN")  # one snapshot for the whole read, as a page would
            count = connection.execute("SELECT count(*) FROM results").fetchone()[0]
            connection.execute(
                "SELECT model, sum(cost_nanos), avg(done_s) FROM results GROUP BY model"
            ).fetchall()
            connection.execute(
                "SELECT custom_id, text FROM results ORDER BY request_id DESC LIMIT 50"
            ).fetchall()
            time.sleep(0.02)  # hold the snapshot while the runner commits
            connection.execute("COMMIT")
        self.seen.append(int(count))


def test_a_reader_polling_during_a_run_never_sees_a_lock(tmp_path: Path) -> None:
    jobs = 100
    write_jobs(tmp_path / "jobs.jsonl", prompts(jobs))
    db = tmp_path / "batchrun.db"
    reader = Reader(db)
    settings = SimSettings(time_scale=0.0, limits=False, seed=9, api_key=KEY)
    with simulator_process(settings) as sim:
        reader.start()
        with _run(
            tmp_path, f"{sim.base_url}/anthropic", "--models", f"{M27},{M3},{M2}",
            "--concurrency", "32", "--rpm", "1000000",
        ) as process:  # fmt: skip
            out, err = process.communicate(timeout=300)
        reader.stop.set()
        reader.join(30)
    assert process.returncode == 0, out[-2000:] + err[-2000:]
    assert "locked" not in out + err
    assert reader.errors == []
    assert reader.reads > 10
    assert reader.seen == sorted(reader.seen)  # each snapshot is consistent and moves forward
    assert any(0 < seen < 3 * jobs for seen in reader.seen)  # it did read while the run wrote
    assert db_rows(db, "select count(*) from results") == [(3 * jobs,)]


REFUSE_WRITES = """
CREATE TRIGGER disk_full BEFORE INSERT ON attempts
BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END
"""


def test_a_database_that_refuses_writes_mid_run_loses_nothing_silently(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(60))
    db = tmp_path / "batchrun.db"
    settings = SimSettings(time_scale=0.1, limits=False, seed=11, api_key=KEY)
    with simulator_process(settings) as sim:
        with _run(
            tmp_path, f"{sim.base_url}/anthropic", "--models", M27, "--concurrency", "6",
            "--name", "full",
        ) as process:  # fmt: skip
            wait_for_results(db, 5)
            # From now on every commit fails inside SQLite, as on a full or read-only file.
            with sqlite3.connect(db, timeout=30) as connection:
                connection.execute(REFUSE_WRITES)
            out, err = process.communicate(timeout=120)
        sent = sim.fetch_stats()
    assert "Traceback" not in err
    assert process.returncode == 1, out  # requests are left pending
    assert "Could not save results" in out
    assert "database or disk is full" in out
    files = list(tmp_path.glob("batchrun-unsaved-*.jsonl"))
    assert len(files) == 1
    assert files[0].name in out.replace("\n", "")  # the path is printed
    unsaved = [orjson.loads(line) for line in files[0].read_bytes().splitlines()]
    assert unsaved
    saved = {row[0] for row in db_rows(db, "select custom_id from results")}
    unsaved_ok = {o["custom_id"] for o in unsaved if o["status"] == "succeeded"}
    assert not saved & unsaved_ok
    for outcome in unsaved:
        assert outcome["attempts"]  # with what was sent, when, and how it ended
        if outcome["status"] == "succeeded":
            assert outcome["result"]["text"] is not None
            assert outcome["result"]["output_tokens"] > 0
    # Never silently dropped: every reply the server finished is in the database or the file.
    assert sent["models"][M27]["ok"] == len(saved) + len(unsaved_ok)
    # Dispatch stopped: far fewer than the 60 requests were sent.
    assert sent["messages_total"] < 60
    # The requests not saved are still pending: a resume (once the disk is fixed) runs them.
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TRIGGER disk_full")
    pending = db_rows(db, "select count(*) from requests where status = 'pending'")[0][0]
    assert pending == 60 - len(saved)


def test_a_read_only_database_sends_nothing_and_says_why(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(5))
    db = tmp_path / "batchrun.db"
    Store(database_url(str(db))).close()  # an existing, current database
    read_only = f"sqlite:///file:{db}?mode=ro&uri=true"
    settings = SimSettings(time_scale=0.0, limits=False, seed=1, api_key=KEY)
    with simulator_process(settings) as sim:
        done = batchrun(
            tmp_path, "run", "jobs.jsonl", "--models", M27, "--db", read_only,
            "--base-url", f"{sim.base_url}/anthropic", "--yes", key=KEY,
        )  # fmt: skip
        sent = sim.fetch_stats()["messages_total"]
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "readonly database" in done.stderr
    assert sent == 0


def _revisions() -> list[str]:
    """Every schema revision but the newest, oldest first, plus the empty database."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    older = [rev.revision for rev in script.walk_revisions() if rev.revision != head]
    return ["base", *reversed(older)]


@pytest.mark.parametrize("revision", _revisions())
def test_a_store_from_an_earlier_schema_is_migrated_on_open(tmp_path: Path, revision: str) -> None:
    url = database_url(str(tmp_path / "old.db"))
    Store(url).close()
    config = alembic_config()
    config.set_main_option("sqlalchemy.url", url)
    command.downgrade(config, revision)  # the file as an earlier batchrun left it
    opened = Store(url)  # opening it migrates it
    try:
        opened.list_batches()
    finally:
        opened.close()
    engine = create_engine(url)
    try:
        found = inspect(engine)
        for table in metadata.sorted_tables:
            columns = {column["name"] for column in found.get_columns(table.name)}
            assert columns == {column.name for column in table.columns}, table.name
        with engine.connect() as connection:
            version = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            head = ScriptDirectory.from_config(alembic_config()).get_current_head()
            assert version.scalar_one() == head
    finally:
        engine.dispose()

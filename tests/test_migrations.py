"""Migrations are atomic and serialized (issue 18, item 3), on a real SQLite file and a real
PostgreSQL database.

A child process runs the migration and is SIGKILLed: at every point between two schema changes
(it kills itself when it is about to send the Nth; the last point is just before COMMIT), and at
random times from the parent. After each kill the store opens at the head with every row it had.
An older batchrun committed each statement on its own (the child shows it on an AUTOCOMMIT
connection): the half-migrated store it leaves is completed by ``batchrun db upgrade``. Several
processes opening one new store at once all succeed.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect, text

from batchrun.store import Outcome, Store, alembic_config
from batchrun.store.migrate import HEAD_REVISION
from batchrun.store.tables import metadata
from tests.dbfixtures import postgres_server, postgres_url, sqlite_url, store_url
from tests.helpers import batchrun
from tests.test_store import M3, attempt, loaded, request_ids, result_row

__all__ = ["postgres_server", "postgres_url", "sqlite_url", "store_url"]

# The child: imports first (the timed kills land in the migration, not in the imports), then on
# a line from stdin opens the store ("open") or migrates as an older batchrun did ("older":
# every statement committed on its own), killing itself before its KILL_AT-th schema change.
CHILD = r"""
import os, signal, sys, time
from alembic import command
from sqlalchemy import Engine, create_engine, event
from batchrun.store import Store, alembic_config

url, mode, kill_at, target = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
CHANGES = {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"}
changes = 0

def change(*_):
    global changes
    changes += 1
    if changes == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

def statement(_conn, _cursor, sql, *_):
    if sql.lstrip().split(None, 1)[0].upper() in CHANGES:
        change()

event.listen(Engine, "before_cursor_execute", statement)
event.listen(Engine, "commit", lambda _conn: change())
print("READY", flush=True)
sys.stdin.readline()
started = time.perf_counter()
if mode == "open":
    Store(url).close()
elif mode == "alembic":  # the `alembic` command line's path
    config = alembic_config()
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, target)
else:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, target)
    engine.dispose()
print("DONE", changes, time.perf_counter() - started, flush=True)
"""

FAST_KILLS = 4  # statement points in the default suite
SLOW_POINTS = 20  # statement points in the slow tests (a fresh store has about 48)
TIMED_KILLS = 10  # random-time kills in the slow test


class Child:
    """One migrating process, started and waiting for its go."""

    def __init__(self, url: str, mode: str = "open", kill_at: int = 0, target: str = "head"):
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, mode, str(kill_at), target],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # bounded by the test's timeout
        assert line.strip() == "READY", line + self.stderr()

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out + err

    def stderr(self) -> str:
        self.process.kill()
        return self.process.communicate(timeout=10)[1]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=10)


def migrate_in_child(url: str, *, kill_at: int = 0, delay: float | None = None, **kw: str) -> str:
    """Run a child to the end or to its kill; what it printed. ``delay``: the parent SIGKILLs it
    that long after its go."""
    child = Child(url, kill_at=kill_at, **kw)
    try:
        child.go()
        if delay is not None:
            time.sleep(delay)
            child.process.send_signal(signal.SIGKILL)
        code, out = child.finish()
    finally:
        child.stop()
    assert code in (0, -signal.SIGKILL), out
    if delay is None:  # a timed kill may come after the migration, as the child exits
        assert (code == 0) == ("DONE" in out) == (kill_at == 0), out
    return out


def spread(total: int, count: int, chance: random.Random) -> list[int]:
    """``count`` of the points 1..total (all of them if fewer), always with the last."""
    if total <= count:
        return list(range(1, total + 1))
    return sorted([*chance.sample(range(1, total), count - 1), total])


def changes_and_seconds(out: str) -> tuple[int, float]:
    """A finished child's count of schema changes (with its COMMIT) and its migration time."""
    changes, seconds = out.split("DONE", 1)[1].split()[:2]
    return int(changes), float(seconds)


# --------------------------------------------------------------------------- the stores


def with_rows(url: str) -> list[tuple[Any, ...]]:
    """Fill a head store with a batch, jobs and results; the rows that must survive."""
    store = Store(url)
    try:
        loaded(store, "b1", count=4)
        ids = request_ids(store, "b1", M3)
        store.record(
            [
                Outcome(
                    request_id=ids[f"q{n}"],
                    batch_id="b1",
                    model=M3,
                    custom_id=f"q{n}",
                    status="succeeded",
                    attempts=[attempt(1, "ok")],
                    result=result_row(f"answer {n}"),
                )
                for n in (1, 2, 3)
            ]
        )
    finally:
        store.close()
    return kept_rows(url)


def kept_rows(url: str) -> list[tuple[Any, ...]]:
    """What must never be lost: the batches, requests and results, in a stable order."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [
                *connection.execute(text("SELECT id, name, status FROM batches ORDER BY id")),
                *connection.execute(
                    text("SELECT id, custom_id, model, status FROM requests ORDER BY id")
                ),
                *connection.execute(
                    text("SELECT request_id, text, cost_nanos FROM results ORDER BY request_id")
                ),
            ]
    finally:
        engine.dispose()


def move_to(url: str, revision: str) -> None:
    """The store back at ``revision`` ("base": no tables at all, not even alembic_version)."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
        if revision == "base":
            found = MetaData()
            found.reflect(engine)
            found.drop_all(engine)
    finally:
        engine.dispose()


def assert_at_head(url: str, rows: list[tuple[Any, ...]]) -> None:
    """The store opens, its schema is the current one, at the head, with ``rows`` in it."""
    Store(url).close()
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            assert list(compare_metadata(MigrationContext.configure(connection), metadata)) == []
            version = connection.execute(text("SELECT version_num FROM alembic_version"))
            assert version.scalars().all() == [HEAD_REVISION]
    finally:
        engine.dispose()
    if rows:
        assert kept_rows(url) == rows


def schema_state(url: str) -> tuple[dict[str, Any], list[str]]:
    """Each table's columns and indexes, and the stored revision: what a kill may leave."""
    engine = create_engine(url)
    try:
        found = inspect(engine)
        tables = {
            name: (
                sorted(column["name"] for column in found.get_columns(name)),
                sorted(str(index["name"]) for index in found.get_indexes(name)),
            )
            for name in found.get_table_names()
        }
        if "alembic_version" not in tables:
            return tables, []
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version"))
            return tables, list(version.scalars())
    finally:
        engine.dispose()


class Killing:
    """A store at ``start`` with ``rows``, killed mid-migration again and again."""

    def __init__(
        self, url: str, start: str, rows: list[tuple[Any, ...]], mode: str = "open"
    ) -> None:
        self.url, self.start, self.rows, self.mode = url, start, rows, mode
        move_to(url, start)
        self.before = schema_state(url)
        out = migrate_in_child(url, mode=mode)  # one clean run: how many points, how long
        self.points, self.seconds = changes_and_seconds(out)
        self.after = schema_state(url)
        assert_at_head(url, rows)
        move_to(url, start)
        assert schema_state(url) == self.before

    def kill(self, *, at: int = 0, delay: float | None = None) -> None:
        migrate_in_child(self.url, kill_at=at, delay=delay, mode=self.mode)
        # Before anything opens it again: the whole migration, or none of it.
        assert schema_state(self.url) in (self.before, self.after), (at, delay)
        assert_at_head(self.url, self.rows)  # and it opens, with every row
        move_to(self.url, self.start)


# --------------------------------------------------------------------------- SIGKILL, this batchrun


def started(url: str, start: str) -> Killing:
    return Killing(url, start, with_rows(url) if start == "0005" else [])


@pytest.mark.parametrize("start", ["base", "0005"])
@pytest.mark.slow_on("postgres")  # the PostgreSQL run: several times the SQLite one's cost
def test_a_sigkill_anywhere_in_a_migration_leaves_a_store_that_opens(
    store_url: str, start: str
) -> None:
    killing = started(store_url, start)
    chance = random.Random(18)
    for point in [*chance.sample(range(1, killing.points), FAST_KILLS - 1), killing.points]:
        killing.kill(at=point)  # the last: just before COMMIT


@pytest.mark.slow_on("postgres")  # the PostgreSQL run: several times the SQLite one's cost
def test_a_sigkill_in_alembics_own_command_line_upgrade_is_as_harmless(store_url: str) -> None:
    killing = Killing(store_url, "base", [], mode="alembic")
    for point in random.Random(81).sample(range(1, killing.points + 1), FAST_KILLS):
        killing.kill(at=point)


@pytest.mark.slow
@pytest.mark.parametrize("start", ["base", "0005"])
def test_sigkill_at_every_point_and_at_random_times(store_url: str, start: str) -> None:
    killing = started(store_url, start)
    chance = random.Random(1818)
    for point in spread(killing.points, SLOW_POINTS, chance):
        killing.kill(at=point)
    for _ in range(TIMED_KILLS):
        killing.kill(delay=chance.uniform(0, killing.seconds * 1.2))


# --------------------------------------------------------------------------- an older batchrun


def older_kill_points(url: str, start: str) -> int:
    """How many points an older batchrun could leave a migration from ``start`` half-done at."""
    changes, _ = changes_and_seconds(migrate_in_child(url, mode="older"))
    move_to(url, start)
    return changes - 1  # its last is the commit of the last statement: nothing is left to do


def repair_and_check(tmp_path: Path, url: str, rows: list[tuple[Any, ...]]) -> str:
    done = batchrun(tmp_path, "db", "upgrade", "--db", url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_at_head(url, rows)
    return done.stdout


@pytest.mark.slow_on("postgres")  # the PostgreSQL run: several times the SQLite one's cost
def test_a_store_an_older_batchrun_left_half_migrated_is_completed_by_db_upgrade(
    tmp_path: Path, store_url: str
) -> None:
    # Killed in 0001 (the "table batches already exists"): a new store.
    migrate_in_child(store_url, mode="older", kill_at=8)
    engine = create_engine(store_url)
    try:
        assert "batches" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    said = repair_and_check(tmp_path, store_url, [])
    assert "half-done; completed it (already there: table batches" in said
    # Killed in 0005, between its column and its index, with results in the store.
    move_to(store_url, "base")
    rows = with_rows(store_url)
    move_to(store_url, "0004")
    migrate_in_child(store_url, mode="older", kill_at=2, target="0005")
    said = repair_and_check(tmp_path, store_url, rows)
    assert f"Schema upgraded from 0004 to {HEAD_REVISION}" in said
    assert "column results.flags" in said


@pytest.mark.slow
@pytest.mark.parametrize("start", ["base", "0003"])
def test_db_upgrade_completes_every_half_migrated_state_an_older_batchrun_leaves(
    tmp_path: Path, store_url: str, start: str
) -> None:
    rows = with_rows(store_url) if start != "base" else []
    move_to(store_url, start)
    points = older_kill_points(store_url, start)
    for point in spread(points, SLOW_POINTS, random.Random(1881)):
        migrate_in_child(store_url, mode="older", kill_at=point)
        repair_and_check(tmp_path, store_url, rows)
        move_to(store_url, start)


def test_a_store_from_a_newer_batchrun_is_a_one_line_error(tmp_path: Path, store_url: str) -> None:
    Store(store_url).close()
    engine = create_engine(store_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    finally:
        engine.dispose()
    done = batchrun(tmp_path, "status", "--db", store_url)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "a newer batchrun made it (schema 0099" in done.stderr
    assert "upgrade batchrun" in done.stderr


def test_a_half_migrated_store_that_cannot_be_completed_is_left_as_it_was(
    tmp_path: Path, store_url: str
) -> None:
    engine = create_engine(store_url)
    try:
        with engine.begin() as connection:  # a batches table no batchrun made
            connection.execute(text("CREATE TABLE batches (id VARCHAR(32) PRIMARY KEY)"))
        done = batchrun(tmp_path, "db", "upgrade", "--db", store_url)
        assert done.returncode != 0
        assert "Traceback" not in done.stderr
        assert "half-migrated" in done.stderr
        assert "nothing was changed" in done.stderr
        assert inspect(engine).get_table_names() == ["batches"]
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- concurrent opens

OPENERS = 3


def open_at_once(url: str) -> None:
    """OPENERS processes open ``url`` at the same moment; each succeeds."""
    children = [Child(url) for _ in range(OPENERS)]
    try:
        for child in children:
            child.go()
        for child in children:
            code, out = child.finish()
            assert code == 0, out
    finally:
        for child in children:
            child.stop()


@pytest.mark.parametrize(("start", "rounds"), [("base", 2), ("0005", 1)])
@pytest.mark.slow_on("postgres")  # the PostgreSQL run: several times the SQLite one's cost
def test_processes_opening_a_new_or_older_store_at_once_all_succeed(
    store_url: str, start: str, rounds: int
) -> None:
    rows = with_rows(store_url) if start == "0005" else []
    for _ in range(rounds):
        move_to(store_url, start)
        open_at_once(store_url)
        assert_at_head(store_url, rows)


@pytest.mark.slow
def test_many_rounds_of_concurrent_first_opens(store_url: str) -> None:
    for _ in range(12):
        move_to(store_url, "base")
        open_at_once(store_url)
        assert_at_head(store_url, [])

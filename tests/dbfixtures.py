"""Database fixtures: a real SQLite file in tmp_path, or a fresh database on the real PostgreSQL.

Import the fixtures into a test module (``from tests.dbfixtures import postgres_url, ...``);
pytest only collects fixtures from conftest.py and from the module itself.

Each PostgreSQL test gets its own database, created through an AUTOCOMMIT connection to the
server's ``test`` database and dropped WITH (FORCE) afterwards, so a test that leaks a
connection cannot block the next one. Without a server the PostgreSQL tests are skipped, except
on CI (``CI=true``), where a missing server is a failure: CI must never go green by skipping.
"""

from __future__ import annotations

import gc
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, create_engine

from batchrun.store import Store

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_ADMIN_DSN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def postgres_sqlalchemy_url(database: str) -> str:
    """The SQLAlchemy URL of one database on the test server."""
    return f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{database}"


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3)


def _unreachable(reason: str) -> None:
    message = f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT}: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server() -> str | None:
    """Checks once per session that the server answers; the reason it does not, if it does not."""
    try:
        with _admin() as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


@pytest.fixture
def postgres_url(postgres_server: str | None) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test; dropped afterwards."""
    if postgres_server is not None:
        _unreachable(postgres_server)
    name = f"batchrun_test_{secrets.token_hex(6)}"
    with _admin() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_sqlalchemy_url(name)
    finally:
        gc.collect()  # a connection this test leaked warns here, in its own teardown
        with _admin() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file in tmp_path that does not exist yet."""
    return f"sqlite:///{tmp_path / 'batchrun.db'}"


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest) -> str:
    """An empty database on each backend; PostgreSQL's only when that param runs."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(request.getfixturevalue("sqlite_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated store on ``store_url``, closed after the test."""
    opened = Store(store_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """A plain engine on the same database, for looking at it from outside the store."""
    plain = create_engine(store_url)
    try:
        yield plain
    finally:
        plain.dispose()

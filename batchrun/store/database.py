"""The database: its engine, connections that report failures as StoreError, and its URL.

SQLite by default (WAL, synchronous=NORMAL: a committed result survives a crash of the process),
PostgreSQL from a URL.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Float,
    Insert,
    Select,
    Table,
    cast,
    create_engine,
    event,
    func,
)
from sqlalchemy import literal as sql_literal
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from batchrun.exceptions import StoreError

_PASSWORD_PARAM = re.compile(r"([?&](?:password|api_key|apikey|key|token)=)[^&]*", re.IGNORECASE)
DEFAULT_DB = "batchrun.db"


def database_url(value: str | None) -> str:
    """A SQLAlchemy URL from ``--db``: a URL as it is, anything else a SQLite file path."""
    value = value or DEFAULT_DB
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def redact_url(url: str) -> str:
    """The URL without its password (in the credentials or the query string), for messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        rest = f"{credentials.split(':', 1)[0]}:***@{host}"
    return _PASSWORD_PARAM.sub(r"\1***", f"{scheme}{sep}{rest}")


def sqlite_file_missing(url: str) -> bool:
    """Whether ``url`` names a SQLite file that does not exist (yet); False for other databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return False
    return not Path(parsed.database).exists()


def reason(exc: BaseException) -> str:
    """The first line of what the driver said, with any URL in it redacted."""
    original = getattr(exc, "orig", None)
    lines = str(original or exc).splitlines() or [type(exc).__name__]
    return redact_url(lines[0]) if "://" in lines[0] else lines[0]


def dialect_insert(dialect: str, table: Table) -> Any:
    """The INSERT of the dialect (``postgresql``, else SQLite's), which has ON CONFLICT. Each
    dialect is imported here, for the database in use only: PostgreSQL's (with its asyncpg
    variant) costs tens of milliseconds at start-up that a SQLite user never needs."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql  # noqa: PLC0415

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite  # noqa: PLC0415

    return sqlite.insert(table)


class Database:
    """One database's engine and pool; every connection from it raises StoreError on failure."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)

    @property
    def is_postgresql(self) -> bool:
        """Whether this is PostgreSQL (else SQLite)."""
        return self.engine.dialect.name == "postgresql"

    def begin(self) -> AbstractContextManager[Connection]:
        """A connection in a transaction, committed on a clean exit."""
        return self._guarded(self.engine.begin())

    def connect(self) -> AbstractContextManager[Connection]:
        """A connection for reads."""
        return self._guarded(self.engine.connect())

    def close(self) -> None:
        """Release every connection."""
        self.engine.dispose()

    def insert_ignore(self, table: Table) -> Insert:
        """INSERT that skips rows whose key exists: a request never gets two results."""
        ignoring: Insert = dialect_insert(self.engine.dialect.name, table).on_conflict_do_nothing()
        return ignoring

    def clock(self, now: float) -> ColumnElement[float]:
        """The time as SQL: PostgreSQL's own clock (one for every machine), else ``now``."""
        if self.is_postgresql:
            return cast(func.extract("epoch", func.now()), Float)
        return sql_literal(now, Float)

    def greatest(self, a: ColumnElement[float], b: ColumnElement[float]) -> ColumnElement[float]:
        """The larger of two SQL values."""
        larger: ColumnElement[float] = (func.greatest if self.is_postgresql else func.max)(a, b)
        return larger

    def plain_pages(self, query: Select[Any], page: int) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of a read, in pages, as the driver's own tuples: half the time of
        SQLAlchemy's rows, which matters at a million. Literal binds: the only values are our
        own batch ids."""
        sql = str(query.compile(self.engine, compile_kwargs={"literal_binds": True}))
        with self.connect() as connection:
            driver = connection.connection.driver_connection
            if driver is None:  # only after the connection was invalidated
                raise StoreError(f"database {redact_url(self.url)}: the connection was closed")
            cursor = driver.cursor()
            try:
                cursor.execute(sql)
                while rows := cursor.fetchmany(page):
                    yield list(rows)
            finally:
                cursor.close()

    def error(self, exc: SQLAlchemyError) -> StoreError:
        """The StoreError that reports ``exc`` for this database."""
        return StoreError(f"database {redact_url(self.url)}: {reason(exc)}")

    @contextmanager
    def _guarded(self, inner: AbstractContextManager[Connection]) -> Iterator[Connection]:
        try:
            with inner as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise self.error(exc) from exc


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    _wal(cursor)  # readers never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


_WAL_TRIES = 100  # x 0.05 s


def _wal(cursor: Any) -> None:
    """Put the file in WAL mode (it stays so). Switching takes a lock SQLite does not wait for,
    so two processes opening a new file at once retry it; a file already in WAL is not touched."""
    for _ in range(_WAL_TRIES):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
        else:
            return
    cursor.execute("PRAGMA journal_mode=WAL")  # the last try raises what SQLite says

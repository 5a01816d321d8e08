"""Alembic environment: batchrun runs migrations programmatically (``batchrun.store``).

The caller passes an open SQLAlchemy connection in ``config.attributes["connection"]`` (in a
transaction: it commits); for the ``alembic`` command line, ``sqlalchemy.url`` in the config is
used instead, and the whole command is one transaction (on SQLite too).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from batchrun.store.tables import metadata


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set sqlalchemy.url, or run `batchrun db upgrade --db URL`")
    engine = create_engine(url)
    try:
        with engine.begin() as fresh:  # the whole command in one transaction, as on open
            if fresh.dialect.name == "sqlite":
                # pysqlite would commit each DDL statement on its own (it begins a transaction
                # only before INSERT, UPDATE and DELETE); IMMEDIATE takes the write lock now.
                fresh.exec_driver_sql("BEGIN IMMEDIATE")
            run_with(fresh)
    finally:
        engine.dispose()


run()

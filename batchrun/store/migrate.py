"""Schema migrations: Alembic's configuration, and bringing a database to the head on open.

Opening a store reads the stored revision with plain SQL and compares it with ``HEAD_REVISION``;
Alembic (slow to import) is loaded only when there is something to migrate. A test checks that
``HEAD_REVISION`` is Alembic's head of ``migrations/versions``.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

HEAD_REVISION = "0007"  # the newest file in migrations/versions: move it with every new one
_VERSION_TABLE = "alembic_version"
_READ_VERSION = text("SELECT version_num FROM alembic_version")
_CREATE_LOCK = 7219034451  # the advisory lock PostgreSQL openers take while migrating


def alembic_config() -> Config:
    """Alembic's configuration for batchrun's migrations."""
    from alembic.config import Config  # noqa: PLC0415 (only when migrating)

    config = Config()
    # The package's own copy (the top-level migrations/ folder, shipped as batchrun.migrations):
    # the same in a checkout and in an installed wheel.
    config.set_main_option("script_location", str(resources.files("batchrun.migrations")))
    return config


def stored_revision(connection: Connection) -> str | None:
    """The revision the database is at; None for an empty one."""
    if not inspect(connection).has_table(_VERSION_TABLE):
        return None
    row = connection.execute(_READ_VERSION).first()
    return None if row is None else str(row[0])


def migrate(connection: Connection) -> None:
    """Bring the database to ``HEAD_REVISION``, in the caller's transaction."""
    # Two processes opening a new (or older) database at once must not both create the tables:
    # the second waits for the first's lock, then finds the head.
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({_CREATE_LOCK})"))
    elif stored_revision(connection) == HEAD_REVISION:
        return  # SQLite at the head: no lock taken, so a reader never waits for a writer
    else:
        # SQLite: the driver runs DDL outside any transaction unless one is begun explicitly;
        # IMMEDIATE takes the write lock now.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    if stored_revision(connection) == HEAD_REVISION:  # under the lock: migrated meanwhile
        return
    from alembic import command  # noqa: PLC0415 (only when migrating)

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")

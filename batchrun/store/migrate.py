"""Schema migrations: Alembic's configuration, and bringing a database to the head on open.

Opening a store reads the stored revision with plain SQL and compares it with ``HEAD_REVISION``;
Alembic (slow to import) is loaded only when there is something to migrate. A test checks that
``HEAD_REVISION`` is Alembic's head of ``migrations/versions``.

The whole upgrade is one transaction, under a lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an
advisory lock): a process killed mid-way leaves the old revision, and concurrent openers migrate
one after the other. A store an older batchrun left half-migrated is completed (``guarded.py``)
and then checked against the models; tests/test_migrations.py kills migrations to show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

from batchrun.exceptions import StoreError
from batchrun.store.database import redact_url

if TYPE_CHECKING:
    from alembic.config import Config

HEAD_REVISION = "0015"  # the newest file in migrations/versions: move it with every new one
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


@dataclass(frozen=True)
class Upgrade:
    """What opening a store did to its schema."""

    before: str | None  # the revision it was at; None for a new (or unversioned) database
    after: str
    completed: tuple[str, ...] = ()  # what an interrupted migration had already made


def migrate(connection: Connection) -> Upgrade | None:
    """Bring the database to ``HEAD_REVISION`` in the caller's transaction, which is then the
    whole upgrade: committed with it or not at all. None when it was at the head already."""
    # Two processes opening a new (or older) database at once must not both create the tables:
    # the second waits for the first's lock, then finds the head.
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({_CREATE_LOCK})"))
    elif stored_revision(connection) == HEAD_REVISION:
        return None  # SQLite at the head: no lock taken, so a reader never waits for a writer
    else:
        # SQLite: the driver (pysqlite) begins a transaction only before INSERT, UPDATE and
        # DELETE, so DDL would be committed statement by statement; a transaction begun
        # explicitly holds it all, and IMMEDIATE takes the write lock now.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    before = stored_revision(connection)
    if before == HEAD_REVISION:  # under the lock: migrated meanwhile
        return None
    return _upgrade(connection, before)


def _upgrade(connection: Connection, before: str | None) -> Upgrade:
    from alembic import command  # noqa: PLC0415 (only when migrating)
    from alembic.script import ScriptDirectory  # noqa: PLC0415
    from alembic.util import CommandError  # noqa: PLC0415

    config = alembic_config()
    try:
        if before is not None:
            ScriptDirectory.from_config(config).get_revisions(before)
    except CommandError as exc:  # "Can't locate revision identified by ..."
        raise StoreError(
            f"cannot open the database {_shown(connection)}: a newer batchrun made it (schema "
            f"{before}; this one knows up to {HEAD_REVISION}): upgrade batchrun "
            "(`pip install -U batchrun`), or give another --db"
        ) from exc
    config.attributes["connection"] = connection
    found: list[str] = []  # what the guarded steps (store/guarded.py) found already made
    config.attributes["found"] = found
    command.upgrade(config, "head")
    if found:
        _check_schema(connection)
    return Upgrade(before=before, after=HEAD_REVISION, completed=tuple(found))


def _check_schema(connection: Connection) -> None:
    """After completing an interrupted migration: the schema is the current one, or an error."""
    from alembic.autogenerate import compare_metadata  # noqa: PLC0415
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415

    from batchrun.store.tables import metadata  # noqa: PLC0415

    differences = compare_metadata(MigrationContext.configure(connection), metadata)
    if differences:
        raise StoreError(
            f"cannot open the database {_shown(connection)}: an earlier batchrun left its schema "
            f"half-migrated and it differs from the current one ({differences[0]!r}): nothing "
            "was changed; restore a backup, or give another --db"
        )


def _shown(connection: Connection) -> str:
    return redact_url(connection.engine.url.render_as_string(hide_password=False))

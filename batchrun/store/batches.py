"""Batches: stored, found by id or name, continued, and moved between statuses."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Select, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from batchrun.exceptions import BatchMoveError, BatchNotFoundError, ConfigError
from batchrun.status import OPEN_BATCHES, BatchStatus, batch_may_move
from batchrun.store.database import Database
from batchrun.store.rows import BatchInfo
from batchrun.store.tables import batches

_NOT_CONTINUED = (BatchStatus.CANCELED, BatchStatus.LOADING)


class Batches:
    """The batches table."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def create(self, row: Mapping[str, Any]) -> bool:
        """Store a new batch; False (nothing stored) when another batch holds its ``open_key``.

        The unique index on ``open_key`` decides between two processes that insert the same key
        at once, on SQLite and PostgreSQL alike: one insert wins, the other is told so.
        """
        now = time.time()
        try:
            with self.database.engine.begin() as connection:
                connection.execute(batches.insert().values(created_at=now, updated_at=now, **row))
        except IntegrityError as exc:
            key = row.get("open_key")
            if key is not None and self.holding(key) is not None:
                return False
            raise self.database.error(exc) from exc
        except SQLAlchemyError as exc:
            raise self.database.error(exc) from exc
        return True

    def holding(self, open_key: str) -> BatchInfo | None:
        """The batch that holds ``open_key`` (any status but canceled), if one does."""
        infos = self._infos(select(batches).where(batches.c.open_key == open_key))
        return infos[0] if infos else None

    def give_up_key(self, batch_id: str, seen_updated_at: float) -> bool:
        """Take ``open_key`` from a batch whose loading stopped (unchanged since it was seen at
        ``seen_updated_at``), so that the file can be loaded again; whether it was taken."""
        with self.database.begin() as connection:
            done = connection.execute(
                update(batches)
                .where(
                    batches.c.id == batch_id,
                    batches.c.status == BatchStatus.LOADING,
                    batches.c.updated_at == seen_updated_at,
                )
                .values(open_key=None)
            )
        return int(done.rowcount) == 1

    def find(self, ref: str) -> BatchInfo:
        """The batch whose id, or else whose name, is ``ref``."""
        with self.database.connect() as connection:
            row = connection.execute(select(batches).where(batches.c.id == ref)).first()
            if row is None:
                row = connection.execute(select(batches).where(batches.c.name == ref)).first()
        if row is None:
            raise BatchNotFoundError(ref)
        return BatchInfo(**row._mapping)

    def find_resumable(self, source_sha256: str, models: Sequence[str]) -> BatchInfo | None:
        """The latest batch of the same file content and models, if any.

        Canceled batches are not continued, nor batches whose loading was interrupted (they hold
        only part of the file): running the file again makes a new batch.
        """
        query = (
            select(batches)
            .where(batches.c.source_sha256 == source_sha256)
            .order_by(batches.c.created_at.desc())
        )
        for info in self._infos(query):
            if info.models == list(models) and info.status not in _NOT_CONTINUED:
                return info
        return None

    def find_named(self, name: str, source_sha256: str, models: Sequence[str]) -> BatchInfo | None:
        """The batch called ``name`` if it is one of this file and models that may be continued;
        None when no batch has the name (a new name starts a new batch).

        A name already given to another file's batch, other models' or a canceled one is refused:
        names are unique, and continuing it would not be what the command asked for.
        """
        with self.database.connect() as connection:
            row = connection.execute(select(batches).where(batches.c.name == name)).first()
        if row is None:
            return None
        info = BatchInfo(**row._mapping)
        if info.source_sha256 == source_sha256 and info.models == list(models):
            if info.status not in _NOT_CONTINUED:
                return info
            why = f"is {info.status}"
        elif info.source_sha256 != source_sha256:
            why = f"holds another file ({info.source_path}, or an older version of it)"
        else:
            shown = ", ".join(info.models) or "each line's own"
            why = f"runs other models ({shown})"
        raise ConfigError(
            f"a batch named {name!r} already exists and {why}; give another --name for a new "
            "batch, or leave --name out"
        )

    def newest_first(self) -> list[BatchInfo]:
        """Every batch, newest first."""
        return self._infos(select(batches).order_by(batches.c.created_at.desc()))

    def name_taken(self, name: str) -> bool:
        """Whether a batch already has this name."""
        with self.database.connect() as connection:
            found = connection.execute(select(batches.c.id).where(batches.c.name == name)).first()
        return found is not None

    def set(self, batch_id: str, **values: Any) -> None:
        """Update a batch's status or other fields; a status move must be an allowed one."""
        with self.database.begin() as connection:
            if "status" in values:
                self._check_move(connection, batch_id, values["status"])
                if values["status"] == BatchStatus.CANCELED:
                    values = {**values, "open_key": None}  # running the file again: a new batch
            connection.execute(
                update(batches)
                .where(batches.c.id == batch_id)
                .values(updated_at=time.time(), **values)
            )

    def open_for_workers(self) -> list[str]:
        """Ids of the open batches that ``submit`` marked for workers, oldest first."""
        query = (
            select(batches.c.id, batches.c.settings)
            .where(batches.c.status.in_(OPEN_BATCHES))
            .order_by(batches.c.created_at)
        )
        with self.database.connect() as connection:
            rows = connection.execute(query).all()
        return [row.id for row in rows if (row.settings or {}).get("workers")]

    def _infos(self, query: Select[Any]) -> list[BatchInfo]:
        with self.database.connect() as connection:
            rows = connection.execute(query).all()
        return [BatchInfo(**row._mapping) for row in rows]

    @staticmethod
    def _check_move(connection: Connection, batch_id: str, new: str) -> None:
        current = select(batches.c.status).where(batches.c.id == batch_id).with_for_update()
        old = connection.execute(current).scalar_one_or_none()
        if old is not None and not batch_may_move(old, new):  # no such batch: a no-op, as before
            raise BatchMoveError(batch_id, old, new)


def add_to_batch(connection: Connection, batch_id: str, counter: str, amount: int) -> None:
    """Add ``amount`` to one of a batch's counters, in the caller's transaction."""
    column = batches.c[counter]
    connection.execute(
        update(batches).where(batches.c.id == batch_id).values({column: column + amount})
    )

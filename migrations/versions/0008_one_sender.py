"""batches: ``open_key`` (one open batch per file and models) and ``declined_at`` (a refused
estimate)

``open_key`` names the file content and models of a batch that ``run``, ``resume``, ``submit``
and the Python API continue; a unique index lets only one batch hold it, so two processes that
load the same file at the same instant make one batch, never two (the second finds the first's
and continues it). Canceled batches and loads taken over (their process died) give it up (NULL).
The backfill gives it to the batch that would be continued today: the newest one per file and
models that is neither canceled nor still loading.

``declined_at``: when the cost estimate of the batch was last declined at the prompt (NULL: never,
or accepted since); the next run of it shows the estimate of everything still to send and asks
again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 15:20:00
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from batchrun.store import guarded

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOT_CONTINUED = ("canceled", "loading")
_BACKFILL_NEEDS = {"id", "source_sha256", "models", "status", "created_at", "open_key"}


def _key(source_sha256: str, models: object) -> str:
    """The same key as batchrun.plan.planner.batch_key (kept here: a migration never changes)."""
    text = f"{source_sha256}\n{json.dumps(models, separators=(',', ':'))}"
    return hashlib.sha256(text.encode()).hexdigest()


def upgrade() -> None:
    # Guarded steps (store/guarded.py), like every migration: what is already there is kept.
    guarded.add_column("batches", sa.Column("open_key", sa.String(64), nullable=True))
    guarded.add_column("batches", sa.Column("declined_at", sa.Float, nullable=True))
    connection = op.get_bind()
    columns = {column["name"] for column in sa.inspect(connection).get_columns("batches")}
    if columns >= _BACKFILL_NEEDS:  # else a table no batchrun made: the schema check names it
        _backfill(connection)
    indexes = {index["name"] for index in sa.inspect(connection).get_indexes("batches")}
    if "ix_batches_open_key" not in indexes:  # guarded, as above (a unique one)
        op.create_index("ix_batches_open_key", "batches", ["open_key"], unique=True)


def _backfill(connection: sa.Connection) -> None:
    """The key to the newest batch of each file and models that is neither canceled nor
    loading."""
    rows = connection.execute(
        sa.text(
            "SELECT id, source_sha256, models, status FROM batches "
            "ORDER BY created_at DESC, id DESC"
        )
    ).all()
    taken: set[str] = set()
    connection.execute(sa.text("UPDATE batches SET open_key = NULL"))  # a run cut short: again
    for batch_id, sha, models, status in rows:
        if status in _NOT_CONTINUED:
            continue
        key = _key(sha, json.loads(models) if isinstance(models, str) else models)
        if key in taken:
            continue  # an older duplicate (two runs at once made two): the newest is continued
        taken.add(key)
        connection.execute(
            sa.text("UPDATE batches SET open_key = :key WHERE id = :id"),
            {"key": key, "id": batch_id},
        )


def downgrade() -> None:
    op.drop_index("ix_batches_open_key", table_name="batches")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("declined_at")
        batch.drop_column("open_key")

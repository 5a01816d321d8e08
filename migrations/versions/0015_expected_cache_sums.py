"""expected cache sums: the batch aggregates keep the prompt-cache reads batchrun expected

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 05:00:00

Four sums join ``batch_aggregates``: the results expected to read from the prompt cache, those
of them that reported no read (the two counts of the dashboard's "cache figures possibly
under-reported" flag), the results whose expected cache tokens are known, and those tokens'
sum. Filled for the results already stored.

Frozen: the tables and the backfill query below are this revision's own copies, as the schema
was at 0015, not batchrun.store's (which follow the newest schema).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from batchrun.store import guarded

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOUR = 3600
_KEY = ("batch_id", "model", "hour", "simulated")
_NEW = ("expected_cache_hits", "unreported_cache_hits", "expected_known", "expected_cache_tokens")
# The columns of ``results`` the backfill reads, as they were at this revision.
_results = sa.table(
    "results",
    sa.column("batch_id", sa.String(32)),
    sa.column("model", sa.String(100)),
    sa.column("sent_at", sa.Float()),
    sa.column("simulated", sa.Boolean()),
    sa.column("cache_read_tokens", sa.Integer()),
    sa.column("expected_cache_tokens", sa.Integer()),
)
_aggregates = sa.table(
    "batch_aggregates",
    sa.column("batch_id", sa.String(32)),
    sa.column("model", sa.String(100)),
    sa.column("hour", sa.BigInteger()),
    sa.column("simulated", sa.Boolean()),
    *(sa.column(name, sa.BigInteger()) for name in _NEW),
)


def upgrade() -> None:
    for name in _NEW:
        guarded.add_column(
            "batch_aggregates", sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
        )
    # Every group that has results has its row already (0013 and the writer keep them): each
    # gets its four sums from one grouped scan of the results, in the upgrade's transaction.
    connection = op.get_bind()
    sums = _recomputed(connection.dialect.name)
    update = (
        _aggregates.update()
        .where(*(_aggregates.c[k] == sa.bindparam(f"k_{k}") for k in _KEY))
        .values({name: sa.bindparam(f"v_{name}") for name in _NEW})
    )
    rows = [
        {**{f"k_{k}": row[k] for k in _KEY}, **{f"v_{n}": int(row[n]) for n in _NEW}}
        for row in connection.execute(sums).mappings()
        if any(row[n] for n in _NEW)
    ]
    if rows:
        connection.execute(update, rows)


def downgrade() -> None:
    # Batch mode, as 0006 and 0010-0012: SQLite before 3.35 has no DROP COLUMN.
    with op.batch_alter_table("batch_aggregates") as batch:
        for name in reversed(_NEW):
            batch.drop_column(name)


def _recomputed(dialect: str) -> sa.Select[Any]:
    """The four sums worked out from the results per group, with the group's key (as
    batchrun.store.aggregates.recomputed was at this revision)."""
    r = _results.c
    hours = r.sent_at / HOUR
    if dialect == "postgresql":  # a float's CAST truncates in SQLite, rounds in PostgreSQL
        hours = sa.func.floor(hours)
    hour = sa.cast(sa.cast(hours, sa.BigInteger) * HOUR, sa.BigInteger).label("hour")
    hit = r.expected_cache_tokens > 0  # NULL (not known) counts as not expected

    def total(value: Any) -> sa.ColumnElement[int]:
        return sa.cast(sa.func.coalesce(sa.func.sum(value), 0), sa.BigInteger)

    return sa.select(
        r.batch_id,
        r.model,
        hour,
        r.simulated,
        total(sa.case((hit, 1), else_=0)).label("expected_cache_hits"),
        total(sa.case((hit & (r.cache_read_tokens == 0), 1), else_=0)).label(
            "unreported_cache_hits"
        ),
        sa.func.count(r.expected_cache_tokens).label("expected_known"),
        total(r.expected_cache_tokens).label("expected_cache_tokens"),
    ).group_by(r.batch_id, r.model, hour, r.simulated)

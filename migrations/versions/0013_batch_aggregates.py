"""batch aggregates: per (batch, model, UTC hour, origin) sums of the results, kept by the writer

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 22:00:00

Frozen: the tables and the backfill query below are this revision's own copies, as the schema
was at 0013, not batchrun.store's (which follow the newest schema): a later revision that
changes ``results`` or ``batch_aggregates`` must not change what upgrading through this one does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from batchrun.store import guarded

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOUR = 3600
_KEY = {"batch_id": sa.String(32), "model": sa.String(100), "hour": sa.BigInteger(),
        "simulated": sa.Boolean()}  # fmt: skip
_SUMS = (
    "results",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cached_results",
    "priced",
    "cost_nanos",
    "priced_output_tokens",
    "write_priced",
    "cache_write_cost_nanos",
    "saving_known",
    "cache_saving_nanos",
)
# The columns of ``results`` the backfill reads, as they were at this revision.
_results = sa.table(
    "results",
    sa.column("batch_id", sa.String(32)),
    sa.column("model", sa.String(100)),
    sa.column("sent_at", sa.Float()),
    sa.column("simulated", sa.Boolean()),
    sa.column("input_tokens", sa.Integer()),
    sa.column("output_tokens", sa.Integer()),
    sa.column("cache_read_tokens", sa.Integer()),
    sa.column("cache_creation_tokens", sa.Integer()),
    sa.column("cost_nanos", sa.BigInteger()),
    sa.column("uncached_cost_nanos", sa.BigInteger()),
    sa.column("cache_write_cost_nanos", sa.BigInteger()),
)
_aggregates = sa.table(
    "batch_aggregates",
    *(sa.column(name, kind) for name, kind in _KEY.items()),
    *(sa.column(name, sa.BigInteger()) for name in _SUMS),
)


def upgrade() -> None:
    guarded.create_table(
        "batch_aggregates",
        *(sa.Column(name, kind, primary_key=True) for name, kind in _KEY.items()),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _SUMS),
    )
    # The results already stored, summed in one grouped scan (in the upgrade's transaction). A
    # rebuild (emptied, then filled), so that an older batchrun's half-done run of this revision
    # (each statement committed on its own) is completed without counting anything twice.
    connection = op.get_bind()
    connection.execute(_aggregates.delete())
    query = _recomputed(connection.dialect.name)
    connection.execute(_aggregates.insert().from_select([*_KEY, *_SUMS], query))


def downgrade() -> None:
    op.drop_table("batch_aggregates")


def _recomputed(dialect: str) -> sa.Select[Any]:
    """The aggregates worked out from the results, key then sums (as
    batchrun.store.aggregates.recomputed was at this revision)."""
    r = _results.c
    cost, uncached, write = r.cost_nanos, r.uncached_cost_nanos, r.cache_write_cost_nanos
    hours = r.sent_at / HOUR
    if dialect == "postgresql":  # a float's CAST truncates in SQLite, rounds in PostgreSQL
        hours = sa.func.floor(hours)
    hour = sa.cast(sa.cast(hours, sa.BigInteger) * HOUR, sa.BigInteger).label("hour")

    def total(value: Any) -> sa.ColumnElement[int]:
        return sa.cast(sa.func.coalesce(sa.func.sum(value), 0), sa.BigInteger)

    return sa.select(
        r.batch_id,
        r.model,
        hour,
        r.simulated,
        sa.func.count().label("results"),
        total(r.input_tokens).label("input_tokens"),
        total(r.output_tokens).label("output_tokens"),
        total(r.cache_read_tokens).label("cache_read_tokens"),
        total(r.cache_creation_tokens).label("cache_creation_tokens"),
        total(sa.case((r.cache_read_tokens > 0, 1), else_=0)).label("cached_results"),
        sa.func.count(cost).label("priced"),
        total(cost).label("cost_nanos"),
        total(sa.case((cost.is_not(None), r.output_tokens))).label("priced_output_tokens"),
        sa.func.count(write).label("write_priced"),
        total(write).label("cache_write_cost_nanos"),
        sa.func.count(uncached - cost).label("saving_known"),
        total(uncached - cost).label("cache_saving_nanos"),
    ).group_by(r.batch_id, r.model, hour, r.simulated)

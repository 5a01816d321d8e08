"""batch aggregates: per (batch, model, UTC hour, origin) sums of the results, kept by the writer

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 22:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from batchrun.store import aggregates, guarded

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

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


def upgrade() -> None:
    guarded.create_table(
        "batch_aggregates",
        sa.Column("batch_id", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(100), primary_key=True),
        sa.Column("hour", sa.BigInteger(), primary_key=True),
        sa.Column("simulated", sa.Boolean(), primary_key=True),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _SUMS),
    )
    # The results already stored, summed in one grouped scan (in the upgrade's transaction). A
    # rebuild (emptied, then filled), so that an older batchrun's half-done run of this revision
    # (each statement committed on its own) is completed without counting anything twice.
    aggregates.rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("batch_aggregates")

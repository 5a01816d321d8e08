"""model budgets: a model's period budget within a batch of several, shared by its processes

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 01:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from batchrun.store import guarded

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # As budgets and budget_holds, keyed by the model too (tables of their own: changing the
    # primary key of budgets would rebuild it on SQLite).
    guarded.create_table(
        "model_budgets",
        sa.Column("batch_id", sa.String(32), sa.ForeignKey("batches.id"), primary_key=True),
        sa.Column("model", sa.String(100), primary_key=True),
        sa.Column("cap_nanos", sa.BigInteger(), nullable=False),
        sa.Column("spent_nanos", sa.BigInteger(), nullable=False),
        sa.Column("reserved_nanos", sa.BigInteger(), nullable=False),
    )
    guarded.create_table(
        "model_budget_holds",
        sa.Column("worker_id", sa.String(64), primary_key=True),
        sa.Column("batch_id", sa.String(32), sa.ForeignKey("batches.id"), primary_key=True),
        sa.Column("model", sa.String(100), primary_key=True),
        sa.Column("nanos", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("model_budget_holds")
    op.drop_table("model_budgets")

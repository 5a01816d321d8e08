"""teams: workers' heartbeats, shared pacers, budgets with per-worker holds

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 04:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from batchrun.store import guarded

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    guarded.create_index("ix_requests_claimed_by", "requests", ["claimed_by"])
    guarded.create_table(
        "workers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    guarded.create_table(
        "pacers",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_pacers")),
    )
    guarded.create_table(
        "budgets",
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("cap_nanos", sa.BigInteger(), nullable=False),
        sa.Column("spent_nanos", sa.BigInteger(), nullable=False),
        sa.Column("reserved_nanos", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_budgets_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_budgets")),
    )
    guarded.create_table(
        "budget_holds",
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("nanos", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_budget_holds_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("worker_id", "batch_id", name=op.f("pk_budget_holds")),
    )


def downgrade() -> None:
    op.drop_table("budget_holds")
    op.drop_table("budgets")
    op.drop_table("pacers")
    op.drop_table("workers")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index("ix_requests_claimed_by")

"""workers' vitals: requests sent, their rate over the last minute, event-loop stalls

Written by each worker with its heartbeat, read by ``batchrun status`` and the dashboard.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 18:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from batchrun.store import guarded

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("sent", "sent_per_min", "stall_s", "stall_max_s")


def upgrade() -> None:
    # Nullable: a worker of an older batchrun leaves them empty (shown as unknown).
    guarded.add_column("workers", sa.Column("sent", sa.Integer(), nullable=True))
    guarded.add_column("workers", sa.Column("sent_per_min", sa.Float(), nullable=True))
    guarded.add_column("workers", sa.Column("stall_s", sa.Float(), nullable=True))
    guarded.add_column("workers", sa.Column("stall_max_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column)

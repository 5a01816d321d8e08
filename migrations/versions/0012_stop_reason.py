"""stop reason: why a batch's last run ended (budget reached, interrupted, disk low, ...)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 18:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from batchrun.store import guarded

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Older batches keep NULL: readers fall back to inferring the reason, as before.
    guarded.add_column("batches", sa.Column("stop_reason", sa.String(20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_column("stop_reason")

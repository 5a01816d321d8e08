"""ratings: a person's rating (good or bad) and comment on an answer, from the Outputs grid

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 16:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from batchrun.store import guarded

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    guarded.create_table(
        "ratings",
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("rated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["results.request_id"], name=op.f("fk_ratings_request_id_results")
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_ratings")),
    )
    guarded.create_index(op.f("ix_ratings_batch_id"), "ratings", ["batch_id"])


def downgrade() -> None:
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ratings_batch_id"))

    op.drop_table("ratings")

"""grades: one per (result, grader), with a judge's model and cost

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 04:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from batchrun.store import guarded

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    guarded.create_table(
        "grades",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("grader", sa.String(length=120), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("judge_model", sa.String(length=100), nullable=True),
        sa.Column("judge_request_id", sa.Integer(), nullable=True),
        sa.Column("judge_cost_nanos", sa.BigInteger(), nullable=True),
        sa.Column("graded_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["results.request_id"], name=op.f("fk_grades_request_id_results")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grades")),
        sa.UniqueConstraint("request_id", "grader", name=op.f("uq_grades_request_id_grader")),
    )
    guarded.create_index(op.f("ix_grades_batch_id_grader"), "grades", ["batch_id", "grader"])


def downgrade() -> None:
    with op.batch_alter_table("grades", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grades_batch_id_grader"))

    op.drop_table("grades")

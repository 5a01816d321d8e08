"""team limits: the back-off every worker follows (pacers' factor, throttled_at, paused_until),
and a concurrency the team shares (slots, with each worker's slot_holds)

A 429 or 529 seen by one worker is written with the model's pacer row, so every worker slows
down and pauses with it. ``slots`` counts the calls in flight of a model whose concurrency the
team shares; ``slot_holds`` keeps each worker's part, freed when the worker dies (as budget_holds).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 18:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from batchrun.store import guarded

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for name in ("factor", "throttled_at", "paused_until"):
        guarded.add_column("pacers", sa.Column(name, sa.Float(), nullable=True))
    guarded.create_table(
        "slots",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_slots")),
    )
    guarded.create_table(
        "slot_holds",
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", "name", name=op.f("pk_slot_holds")),
    )


def downgrade() -> None:
    op.drop_table("slot_holds")
    op.drop_table("slots")
    with op.batch_alter_table("pacers") as batch:
        for name in ("paused_until", "throttled_at", "factor"):
            batch.drop_column(name)

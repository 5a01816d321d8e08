"""results.flags: what was odd about a reply (reasoning leaked as <think>, an empty reply)

The covering metrics index gains the column, so the per-model counts of flagged results are read
from the index like every other figure.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 12:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from batchrun.store import guarded

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

METRICS = [
    "batch_id",
    "request_id",
    "model",
    "sent_at",
    "first_token_s",
    "first_text_s",
    "last_token_s",
    "done_s",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cost_nanos",
]


def upgrade() -> None:
    # add_column is a plain ALTER TABLE on SQLite too (a nullable column needs no table copy).
    guarded.add_column("results", sa.Column("flags", sa.String(100), nullable=True))
    guarded.drop_index("ix_results_metrics", "results")
    guarded.create_index("ix_results_metrics", "results", [*METRICS, "flags"])


def downgrade() -> None:
    op.drop_index("ix_results_metrics", table_name="results")
    op.create_index("ix_results_metrics", "results", METRICS)
    with op.batch_alter_table("results") as batch:
        batch.drop_column("flags")

"""a covering index on the results' metric columns, for the dashboard

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 04:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from batchrun.store import guarded

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = [
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
    guarded.create_index("ix_results_metrics", "results", COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_results_metrics", table_name="results")

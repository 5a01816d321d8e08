"""results: the prompt-cache figures (expected cache tokens, uncached cost, cache-write cost)

``expected_cache_tokens``: prompt tokens batchrun expected MiniMax to read from its cache when the
request was sent (NULL: stored before batchrun kept it). ``uncached_cost_nanos``: what the same
usage would have cost with every prompt token at the input rate. ``cache_write_cost_nanos``: the
part of ``cost_nanos`` paid for cache-creation tokens. Both costs are NULL when unpriced.

The backfill is exact only: a priced result that read and wrote nothing in the cache cost exactly
what it would have cost uncached, and nothing for cache writes. Every other old result keeps NULL
until ``batchrun reprice`` computes its figures from the catalog.

The covering metrics index gains the three columns, so the cache figures are read from the index
like every other figure.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from batchrun.store import guarded

revision: str = "0006"
down_revision: str | None = "0005"
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
    "flags",
]
CACHE = ["expected_cache_tokens", "uncached_cost_nanos", "cache_write_cost_nanos"]

_BACKFILL = sa.text(
    "UPDATE results SET uncached_cost_nanos = cost_nanos, cache_write_cost_nanos = 0 "
    "WHERE cost_nanos IS NOT NULL AND cache_read_tokens = 0 AND cache_creation_tokens = 0"
)


def upgrade() -> None:
    # add_column is a plain ALTER TABLE on SQLite too (a nullable column needs no table copy).
    guarded.add_column("results", sa.Column("expected_cache_tokens", sa.Integer, nullable=True))
    guarded.add_column("results", sa.Column("uncached_cost_nanos", sa.BigInteger, nullable=True))
    guarded.add_column("results", sa.Column("cache_write_cost_nanos", sa.BigInteger, nullable=True))
    # The index goes first, so the backfill does not update it row by row.
    guarded.drop_index("ix_results_metrics", "results")
    op.execute(_BACKFILL)
    guarded.create_index("ix_results_metrics", "results", [*METRICS, *CACHE])


def downgrade() -> None:
    op.drop_index("ix_results_metrics", table_name="results")
    op.create_index("ix_results_metrics", "results", METRICS)
    with op.batch_alter_table("results") as batch:
        for column in reversed(CACHE):
            batch.drop_column(column)

"""results: ``simulated`` in the covering metrics index; attempts: an index for retry counts

Spend, status and the dashboard keep simulated results apart from real ones, so the covering
index ``ix_results_metrics`` gains ``simulated`` and they still read every figure from the index,
never the answers' text. ``status`` counts each model's retries (calls beyond a request's first)
from the attempts table; ``(batch_id, model, request_id)`` answers that from an index alone.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 15:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from batchrun.store import guarded

revision: str = "0007"
down_revision: str | None = "0006"
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
    "expected_cache_tokens",
    "uncached_cost_nanos",
    "cache_write_cost_nanos",
]
RETRIES = "ix_attempts_batch_id_model_request_id"


def upgrade() -> None:
    # Guarded steps (store/guarded.py), like every migration: what is already there is kept.
    guarded.drop_index("ix_results_metrics", "results")
    guarded.create_index("ix_results_metrics", "results", [*METRICS, "simulated"])
    guarded.create_index(RETRIES, "attempts", ["batch_id", "model", "request_id"])


def downgrade() -> None:
    op.drop_index(RETRIES, table_name="attempts")
    op.drop_index("ix_results_metrics", table_name="results")
    op.create_index("ix_results_metrics", "results", METRICS)

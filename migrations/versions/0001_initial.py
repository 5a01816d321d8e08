"""initial schema: batches, jobs, line errors, requests, attempts, results

Revision ID: 0001
Revises:
Create Date: 2026-11-22 04:24:39.928462
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from batchrun.store import guarded

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    guarded.create_table(
        "batches",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("source_sha256", sa.String(length=64), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("max_cost_nanos", sa.BigInteger(), nullable=True),
        sa.Column("jobs_total", sa.Integer(), nullable=False),
        sa.Column("lines_invalid", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
        sa.UniqueConstraint("name", name=op.f("uq_batches_name")),
    )
    guarded.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("custom_id", sa.String(length=256), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("expect", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_jobs_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("batch_id", "custom_id", name=op.f("uq_jobs_batch_id_custom_id")),
    )
    guarded.create_index(op.f("ix_jobs_batch_id_line_no"), "jobs", ["batch_id", "line_no"])

    guarded.create_table(
        "line_errors",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("custom_id", sa.String(length=256), nullable=True),
        sa.Column("field", sa.String(length=200), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_line_errors_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_line_errors")),
    )
    guarded.create_index(
        op.f("ix_line_errors_batch_id_line_no"), "line_errors", ["batch_id", "line_no"]
    )

    guarded.create_table(
        "requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("custom_id", sa.String(length=256), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("input_estimated", sa.Boolean(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.String(length=100), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_status", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_requests_batch_id_batches")
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_requests_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_requests")),
        sa.UniqueConstraint(
            "batch_id", "custom_id", "model", name=op.f("uq_requests_batch_id_custom_id_model")
        ),
    )
    guarded.create_index(
        op.f("ix_requests_batch_id_model_status_id"),
        "requests",
        ["batch_id", "model", "status", "id"],
    )
    guarded.create_index(op.f("ix_requests_job_id"), "requests", ["job_id"])

    guarded.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("error_type", sa.String(length=100), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("request_uid", sa.String(length=100), nullable=True),
        sa.Column("retry_after_s", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"], ["requests.id"], name=op.f("fk_attempts_request_id_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
    )
    guarded.create_index(
        op.f("ix_attempts_batch_id_model_started_at"),
        "attempts",
        ["batch_id", "model", "started_at"],
    )
    guarded.create_index(op.f("ix_attempts_request_id"), "attempts", ["request_id"])

    guarded.create_table(
        "results",
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("custom_id", sa.String(length=256), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=False),
        sa.Column("first_event_s", sa.Float(), nullable=True),
        sa.Column("first_token_s", sa.Float(), nullable=True),
        sa.Column("first_thinking_s", sa.Float(), nullable=True),
        sa.Column("first_text_s", sa.Float(), nullable=True),
        sa.Column("last_token_s", sa.Float(), nullable=True),
        sa.Column("done_s", sa.Float(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_read_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_creation_tokens", sa.Integer(), nullable=False),
        sa.Column("stop_reason", sa.String(length=40), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("thinking", sa.Text(), nullable=False),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.Column("cost_nanos", sa.BigInteger(), nullable=True),
        sa.Column("price_date", sa.String(length=10), nullable=True),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["requests.id"], name=op.f("fk_results_request_id_requests")
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_results")),
    )
    guarded.create_index(op.f("ix_results_batch_id_model"), "results", ["batch_id", "model"])
    guarded.create_index(op.f("ix_results_model_sent_at"), "results", ["model", "sent_at"])


def downgrade() -> None:
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_results_model_sent_at"))
        batch_op.drop_index(batch_op.f("ix_results_batch_id_model"))

    op.drop_table("results")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attempts_request_id"))
        batch_op.drop_index(batch_op.f("ix_attempts_batch_id_model_started_at"))

    op.drop_table("attempts")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_requests_job_id"))
        batch_op.drop_index(batch_op.f("ix_requests_batch_id_model_status_id"))

    op.drop_table("requests")
    with op.batch_alter_table("line_errors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_line_errors_batch_id_line_no"))

    op.drop_table("line_errors")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_batch_id_line_no"))

    op.drop_table("jobs")
    op.drop_table("batches")

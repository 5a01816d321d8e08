"""Jobs: a file's valid lines with their requests (one per model), and its invalid lines."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Text, cast, func, insert, select

from batchrun.jobs import JobSpec, LineError
from batchrun.status import RequestStatus
from batchrun.store.batches import add_to_batch
from batchrun.store.database import Database
from batchrun.store.tables import jobs, line_errors, requests


class InvalidRequest(NamedTuple):
    """A request its model cannot take, and where its line is."""

    line_no: int
    custom_id: str
    model: str
    why: str | None


class Jobs:
    """The jobs, line_errors and (as a job is stored) requests tables."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def add(self, batch_id: str, specs: Sequence[JobSpec], models: Sequence[str]) -> int:
        """Store valid lines and their requests (one per model); return requests created."""
        if not specs:
            return 0
        now = time.time()
        with self.database.begin() as connection:
            ids = connection.execute(
                insert(jobs).returning(jobs.c.id, sort_by_parameter_order=True),
                [_job_row(batch_id, spec) for spec in specs],
            ).scalars()
            request_rows = [
                _request_row(batch_id, job_id, spec, model, now)
                for job_id, spec in zip(ids, specs, strict=True)
                for model in (models or [spec.model or ""])
            ]
            connection.execute(insert(requests), request_rows)
            add_to_batch(connection, batch_id, "jobs_total", len(specs))
        return len(request_rows)

    def add_line_errors(self, batch_id: str, errors: Sequence[LineError]) -> None:
        """Store the invalid lines of a file."""
        if not errors:
            return
        rows = [
            {
                "batch_id": batch_id,
                "line_no": error.line_no,
                "custom_id": error.custom_id,
                "field": error.field,
                "message": error.message,
            }
            for error in errors
        ]
        with self.database.begin() as connection:
            connection.execute(insert(line_errors), rows)
            add_to_batch(connection, batch_id, "lines_invalid", len(errors))

    def line_error_rows(self, batch_id: str) -> list[dict[str, Any]]:
        """The invalid lines of a batch's file, in line order."""
        query = (
            select(line_errors)
            .where(line_errors.c.batch_id == batch_id)
            .order_by(line_errors.c.line_no)
        )
        with self.database.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def invalid_requests(self, batch_id: str, limit: int = 20) -> tuple[int, list[InvalidRequest]]:
        """How many requests of a batch were invalid for their model from the start (a valid line
        that one of its models cannot take), and the first ``limit`` in file order."""
        where = (requests.c.batch_id == batch_id) & (requests.c.status == RequestStatus.INVALID)
        first = (
            select(jobs.c.line_no, requests.c.custom_id, requests.c.model, requests.c.error_message)
            .join(jobs, jobs.c.id == requests.c.job_id)
            .where(where)
            .order_by(jobs.c.line_no, requests.c.model)
            .limit(limit)
        )
        with self.database.connect() as connection:
            count = connection.execute(select(func.count()).where(where)).scalar_one()
            rows = [InvalidRequest(*row) for row in connection.execute(first)]
        return count, rows

    def find(self, batch_id: str, text: str = "", limit: int = 200) -> list[dict[str, Any]]:
        """Jobs of a batch whose custom_id or request contains ``text``, in file order."""
        query = select(jobs.c.custom_id, jobs.c.line_no, jobs.c.params).where(
            jobs.c.batch_id == batch_id
        )
        if text:
            pattern = f"%{text}%"
            query = query.where(
                jobs.c.custom_id.ilike(pattern) | cast(jobs.c.params, Text).ilike(pattern)
            )
        with self.database.connect() as connection:
            rows = connection.execute(query.order_by(jobs.c.line_no).limit(limit))
            return [dict(row._mapping) for row in rows]


def _job_row(batch_id: str, spec: JobSpec) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "line_no": spec.line_no,
        "custom_id": spec.custom_id,
        "model": spec.model,
        "params": spec.params,
        "content_hash": spec.content_hash,
        "expect": spec.expect,
    }


def _request_row(
    batch_id: str, job_id: int, spec: JobSpec, model: str, now: float
) -> dict[str, Any]:
    why = spec.invalid_for.get(model)
    return {
        "batch_id": batch_id,
        "job_id": job_id,
        "custom_id": spec.custom_id,
        "model": model,
        "status": RequestStatus.INVALID if why else RequestStatus.PENDING,
        "attempts": 0,
        "error_type": "invalid_request" if why else None,
        "error_message": why,
        "updated_at": now,
    }

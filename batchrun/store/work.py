"""Work: the pending requests to send, what became of them, and moving them in bulk."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Select, bindparam, func, insert, select, update

from batchrun.redaction import redact
from batchrun.status import RequestStatus
from batchrun.store import aggregates
from batchrun.store.database import Database
from batchrun.store.rows import Outcome, WorkItem, vars_of
from batchrun.store.tables import attempts, jobs, requests, results

PENDING = requests.c.status == RequestStatus.PENDING  # a request still to send


class Work:
    """The requests table as the runner sees it: work items in, outcomes out."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def pending(
        self, batch_id: str, model: str, after_id: int, limit: int, only: Sequence[int] = ()
    ) -> list[WorkItem]:
        """Up to ``limit`` pending requests of one model, in id order, after ``after_id``.

        ``only``: just these request ids (the ones a worker has just claimed).
        """
        query = _pending_query(batch_id, model, after_id, limit)
        if only:
            query = query.where(requests.c.id.in_(only))
        with self.database.connect() as connection:
            rows = connection.execute(query).all()
        return [WorkItem(**row._mapping) for row in rows]

    def record(self, outcomes: Sequence[Outcome], claimed_by: str | None = None) -> None:
        """Write what happened to these requests, all in one transaction.

        With ``claimed_by`` (a worker's id), only requests that worker still holds are updated
        or take a result: one whose lease expired and was taken over belongs to the new holder.
        """
        if not outcomes:
            return
        mine = [] if claimed_by is None else [requests.c.claimed_by == claimed_by]
        now = time.time()
        attempt_rows = [
            {"request_id": o.request_id, "batch_id": o.batch_id, "model": o.model, **vars_of(a)}
            for o in outcomes
            for a in o.attempts
        ]
        with self.database.begin() as connection:
            if attempt_rows:
                connection.execute(insert(attempts), attempt_rows)
            self._add_results(connection, outcomes, mine)
            connection.execute(
                _UPDATE_REQUEST.where(*mine), [_request_update(o, now) for o in outcomes]
            )

    def _add_results(
        self, connection: Connection, outcomes: Sequence[Outcome], mine: list[Any]
    ) -> None:
        """Store the outcomes' results, of requests still pending (and held, with ``mine``).

        Not one canceled meanwhile, nor one another worker finished first.
        """
        rows = [_result_row(o) for o in outcomes if o.result is not None]
        if not rows:
            return
        open_ids = set(
            connection.execute(
                select(requests.c.id).where(
                    requests.c.id.in_([row["request_id"] for row in rows]), PENDING, *mine
                )
            ).scalars()
        )
        rows = [row for row in rows if row["request_id"] in open_ids]
        if not rows:
            return
        # Only the rows really inserted count in the aggregates: one a worker whose lease was
        # taken over stored first is skipped by the insert, and so by the sums.
        statement = self.database.insert_ignore(results).returning(results.c.request_id)
        stored = set(connection.execute(statement, rows).scalars())
        aggregates.add(connection, [row for row in rows if row["request_id"] in stored])

    def reset_errored(self, batch_id: str) -> int:
        """Make errored requests pending again (``resume --retry-errored``); return how many."""
        return self._move(batch_id, RequestStatus.ERRORED, RequestStatus.PENDING)

    def cancel_pending(self, batch_id: str) -> int:
        """Mark every pending request canceled; return how many."""
        return self._move(batch_id, RequestStatus.PENDING, RequestStatus.CANCELED)

    def _move(self, batch_id: str, from_status: RequestStatus, to_status: RequestStatus) -> int:
        with self.database.begin() as connection:
            done = connection.execute(
                update(requests)
                .where(requests.c.batch_id == batch_id, requests.c.status == from_status)
                .values(status=to_status, updated_at=time.time())
            )
        return int(done.rowcount)

    def set_input_tokens(self, counts: Sequence[tuple[int, int, bool]]) -> None:
        """Store pre-checked input tokens of pending requests: (request id, tokens, estimated)."""
        if not counts:
            return
        statement = (
            update(requests)
            .where(requests.c.id == bindparam("rid"), PENDING)
            .values(input_tokens=bindparam("tokens"), input_estimated=bindparam("est"))
        )
        rows = [{"rid": rid, "tokens": tokens, "est": est} for rid, tokens, est in counts]
        with self.database.begin() as connection:
            connection.execute(statement, rows)

    def batch_models(self, batch_id: str) -> list[str]:
        """The models a batch's requests go to, in the order they first appear."""
        query = (
            select(requests.c.model)
            .where(requests.c.batch_id == batch_id)
            .group_by(requests.c.model)
            .order_by(func.min(requests.c.id))
        )
        with self.database.connect() as connection:
            return list(connection.execute(query).scalars())

    def status_counts(self, batch_id: str) -> dict[str, dict[str, int]]:
        """Requests per model and status."""
        query = (
            select(requests.c.model, requests.c.status, func.count())
            .where(requests.c.batch_id == batch_id)
            .group_by(requests.c.model, requests.c.status)
        )
        counts: dict[str, dict[str, int]] = {}
        with self.database.connect() as connection:
            for model, status, count in connection.execute(query):
                counts.setdefault(model, {})[status] = count
        return counts

    def retry_counts(self, batch_id: str) -> dict[str, int]:
        """Per model: calls beyond each request's first, from the attempts table (one grouped
        count over an index: never a row per request)."""
        query = (
            select(
                attempts.c.model,
                func.count() - func.count(attempts.c.request_id.distinct()),
            )
            .where(attempts.c.batch_id == batch_id)
            .group_by(attempts.c.model)
        )
        with self.database.connect() as connection:
            return {model: int(retries) for model, retries in connection.execute(query)}


def _pending_query(batch_id: str, model: str, after_id: int, limit: int) -> Select[Any]:
    return (
        select(
            requests.c.id.label("request_id"),
            requests.c.custom_id,
            requests.c.model,
            requests.c.input_tokens,
            requests.c.input_estimated,
            requests.c.attempts,
            jobs.c.params,
            jobs.c.content_hash,
        )
        .join(jobs, jobs.c.id == requests.c.job_id)
        .where(
            requests.c.batch_id == batch_id,
            requests.c.model == model,
            PENDING,
            requests.c.id > after_id,
        )
        .order_by(requests.c.id)
        .limit(limit)
    )


def _result_row(outcome: Outcome) -> dict[str, Any]:
    return {
        "request_id": outcome.request_id,
        "batch_id": outcome.batch_id,
        "model": outcome.model,
        "custom_id": outcome.custom_id,
        **(outcome.result or {}),
    }


_UPDATE_REQUEST = (
    update(requests)
    .where(requests.c.id == bindparam("rid"), PENDING)
    .values(
        status=bindparam("new_status"),
        attempts=requests.c.attempts + bindparam("new_attempts"),
        input_tokens=func.coalesce(bindparam("new_input_tokens"), requests.c.input_tokens),
        input_estimated=func.coalesce(bindparam("new_estimated"), requests.c.input_estimated),
        error_type=bindparam("new_error_type"),
        error_message=bindparam("new_error_message"),
        error_status=bindparam("new_error_status"),
        error_code=bindparam("new_error_code"),
        updated_at=bindparam("now"),
    )
)


def _request_update(outcome: Outcome, now: float) -> dict[str, Any]:
    return {
        "rid": outcome.request_id,
        "new_status": outcome.status,
        "new_attempts": len(outcome.attempts),
        "new_input_tokens": outcome.input_tokens,
        "new_estimated": outcome.input_estimated,
        "new_error_type": outcome.error_type,
        "new_error_message": _redacted(outcome.error_message),
        "new_error_status": outcome.error_status,
        "new_error_code": outcome.error_code,
        "now": now,
    }


def _redacted(text: str | None) -> str | None:
    """The last guard before the disk: whatever path an error text came by, no secret in it."""
    return redact(text) if text else text

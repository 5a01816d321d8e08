"""The only module that writes SQL: batches, jobs, requests, attempts and results.

SQLite by default (WAL, synchronous=NORMAL: a committed result survives a crash of the process),
PostgreSQL from a URL. The store is synchronous; the runner calls it from one writer task through
a worker thread and commits results in small batches. Opening a store applies any migration it
lacks, so a store made by an older batchrun is upgraded in place.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    Engine,
    Insert,
    Select,
    Table,
    Text,
    bindparam,
    case,
    cast,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from batchrun.exceptions import BatchNotFoundError, StoreError
from batchrun.jobs import JobSpec, LineError
from batchrun.store.tables import (
    RESULT_METRICS,
    attempts,
    batches,
    grades,
    jobs,
    line_errors,
    requests,
    results,
)

_PASSWORD_PARAM = re.compile(r"([?&](?:password|api_key|apikey|key|token)=)[^&]*", re.IGNORECASE)
DEFAULT_DB = "batchrun.db"


def database_url(value: str | None) -> str:
    """A SQLAlchemy URL from ``--db``: a URL as it is, anything else a SQLite file path."""
    value = value or DEFAULT_DB
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def redact_url(url: str) -> str:
    """The URL without its password (in the credentials or the query string), for messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        rest = f"{credentials.split(':', 1)[0]}:***@{host}"
    return _PASSWORD_PARAM.sub(r"\1***", f"{scheme}{sep}{rest}")


@dataclass(frozen=True, kw_only=True)
class BatchInfo:
    """A batch as stored."""

    id: str
    name: str
    source_path: str
    source_sha256: str
    models: list[str]
    status: str
    simulated: bool
    base_url: str
    settings: dict[str, Any]
    created_at: float
    updated_at: float
    finished_at: float | None
    max_cost_nanos: int | None
    jobs_total: int
    lines_invalid: int

    def as_dict(self) -> dict[str, Any]:
        """The batch as a plain dict (what caches and frames take)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkItem:
    """One pending request with what is needed to send it."""

    request_id: int
    custom_id: str
    model: str
    params: dict[str, Any]
    content_hash: str
    input_tokens: int | None
    input_estimated: bool | None
    attempts: int


@dataclass(frozen=True, kw_only=True, slots=True)
class AttemptRecord:
    """One HTTP call of a request."""

    number: int
    started_at: float
    duration_s: float
    outcome: str  # ok, retry, failed, stopped, interrupted
    status: int | None = None
    error_type: str | None = None
    error_code: int | None = None
    message: str | None = None
    request_uid: str | None = None
    retry_after_s: float | None = None


@dataclass(kw_only=True, slots=True)
class Outcome:
    """What happened to one request in this run, written in one transaction with others."""

    request_id: int
    batch_id: str
    model: str
    custom_id: str
    status: str  # succeeded, errored, invalid, or pending (not finished: stays resumable)
    attempts: list[AttemptRecord] = field(default_factory=list)
    input_tokens: int | None = None
    input_estimated: bool | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_status: int | None = None
    error_code: int | None = None
    result: dict[str, Any] | None = None  # a row of the results table, without the keys


class Store:
    """A batchrun database."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine = _engine(url)
            with self.engine.begin() as connection:
                _migrate(connection)
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            # ValueError: a malformed URL (a port that is not a number); ImportError: the
            # database's driver is not installed (psycopg for PostgreSQL: `pip install
            # 'batchrun[postgres]'`).
            raise StoreError(f"cannot open the database {redact_url(url)}: {_reason(exc)}") from exc

    def close(self) -> None:
        """Release every connection."""
        self.engine.dispose()

    # --- batches -------------------------------------------------------------------------------

    def create_batch(self, row: Mapping[str, Any]) -> None:
        """Store a new batch."""
        now = time.time()
        with self._begin() as connection:
            connection.execute(insert(batches).values(created_at=now, updated_at=now, **row))

    def find_batch(self, ref: str) -> BatchInfo:
        """The batch whose id, or else whose name, is ``ref``."""
        with self._connect() as connection:
            row = connection.execute(select(batches).where(batches.c.id == ref)).first()
            if row is None:
                row = connection.execute(select(batches).where(batches.c.name == ref)).first()
        if row is None:
            raise BatchNotFoundError(ref)
        return BatchInfo(**row._mapping)

    def find_resumable(self, source_sha256: str, models: Sequence[str]) -> BatchInfo | None:
        """The latest batch of the same file content and models, if any.

        Canceled batches are not continued, nor batches whose loading was interrupted (they hold
        only part of the file): running the file again makes a new batch.
        """
        with self._connect() as connection:
            rows = connection.execute(
                select(batches)
                .where(batches.c.source_sha256 == source_sha256)
                .order_by(batches.c.created_at.desc())
            ).all()
        for row in rows:
            info = BatchInfo(**row._mapping)
            if info.models == list(models) and info.status not in ("canceled", "loading"):
                return info
        return None

    def list_batches(self) -> list[BatchInfo]:
        """Every batch, newest first."""
        with self._connect() as connection:
            rows = connection.execute(select(batches).order_by(batches.c.created_at.desc())).all()
        return [BatchInfo(**row._mapping) for row in rows]

    def name_taken(self, name: str) -> bool:
        """Whether a batch already has this name."""
        with self._connect() as connection:
            found = connection.execute(select(batches.c.id).where(batches.c.name == name)).first()
        return found is not None

    def set_batch(self, batch_id: str, **values: Any) -> None:
        """Update a batch's status or other fields."""
        with self._begin() as connection:
            connection.execute(
                update(batches)
                .where(batches.c.id == batch_id)
                .values(updated_at=time.time(), **values)
            )

    # --- loading a file ------------------------------------------------------------------------

    def add_jobs(self, batch_id: str, specs: Sequence[JobSpec], models: Sequence[str]) -> int:
        """Store valid lines and their requests (one per model); return requests created."""
        if not specs:
            return 0
        now = time.time()
        job_rows = [
            {
                "batch_id": batch_id,
                "line_no": spec.line_no,
                "custom_id": spec.custom_id,
                "model": spec.model,
                "params": spec.params,
                "content_hash": spec.content_hash,
                "expect": spec.expect,
            }
            for spec in specs
        ]
        with self._begin() as connection:
            ids = connection.execute(
                insert(jobs).returning(jobs.c.id, sort_by_parameter_order=True), job_rows
            ).scalars()
            request_rows = [
                _request_row(batch_id, job_id, spec, model, now)
                for job_id, spec in zip(ids, specs, strict=True)
                for model in (models or [spec.model or ""])
            ]
            connection.execute(insert(requests), request_rows)
            _add_to_batch(connection, batch_id, "jobs_total", len(specs))
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
        with self._begin() as connection:
            connection.execute(insert(line_errors), rows)
            _add_to_batch(connection, batch_id, "lines_invalid", len(errors))

    # --- work ----------------------------------------------------------------------------------

    def pending(
        self, batch_id: str, model: str, after_id: int, limit: int, only: Sequence[int] = ()
    ) -> list[WorkItem]:
        """Up to ``limit`` pending requests of one model, in id order, after ``after_id``.

        ``only``: just these request ids (the ones a worker has just claimed).
        """
        query = (
            select(
                requests.c.id,
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
                requests.c.status == "pending",
                requests.c.id > after_id,
            )
            .order_by(requests.c.id)
            .limit(limit)
        )
        if only:
            query = query.where(requests.c.id.in_(only))
        with self._connect() as connection:
            rows = connection.execute(query).all()
        return [
            WorkItem(
                request_id=row.id,
                custom_id=row.custom_id,
                model=row.model,
                params=row.params,
                content_hash=row.content_hash,
                input_tokens=row.input_tokens,
                input_estimated=row.input_estimated,
                attempts=row.attempts,
            )
            for row in rows
        ]

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
        result_rows = [
            {
                "request_id": o.request_id,
                "batch_id": o.batch_id,
                "model": o.model,
                "custom_id": o.custom_id,
                **o.result,
            }
            for o in outcomes
            if o.result is not None
        ]
        with self._begin() as connection:
            if attempt_rows:
                connection.execute(insert(attempts), attempt_rows)
            if result_rows:
                # Only a request still pending takes a result: not one canceled meanwhile, nor
                # one another worker finished first.
                open_ids = set(
                    connection.execute(
                        select(requests.c.id).where(
                            requests.c.id.in_([row["request_id"] for row in result_rows]),
                            requests.c.status == "pending",
                            *mine,
                        )
                    ).scalars()
                )
                result_rows = [row for row in result_rows if row["request_id"] in open_ids]
            if result_rows:
                connection.execute(self._insert_ignore(results), result_rows)
            connection.execute(
                _UPDATE_REQUEST.where(*mine), [_request_update(o, now) for o in outcomes]
            )

    def reset_errored(self, batch_id: str) -> int:
        """Make errored requests pending again (``resume --retry-errored``); return how many."""
        return self._move(batch_id, "errored", "pending")

    def cancel_pending(self, batch_id: str) -> int:
        """Mark every pending request canceled; return how many."""
        return self._move(batch_id, "pending", "canceled")

    def _move(self, batch_id: str, from_status: str, to_status: str) -> int:
        with self._begin() as connection:
            done = connection.execute(
                update(requests)
                .where(requests.c.batch_id == batch_id, requests.c.status == from_status)
                .values(status=to_status, updated_at=time.time())
            )
        return int(done.rowcount)

    # --- reading -------------------------------------------------------------------------------

    def output_history(self) -> dict[str, tuple[int, float]]:
        """Per model: how many results the store has, and their mean output tokens."""
        query = select(results.c.model, func.count(), func.avg(results.c.output_tokens)).group_by(
            results.c.model
        )
        with self._connect() as connection:
            return {model: (int(n), float(mean)) for model, n, mean in connection.execute(query)}

    def set_input_tokens(self, counts: Sequence[tuple[int, int, bool]]) -> None:
        """Store pre-checked input tokens of pending requests: (request id, tokens, estimated)."""
        if not counts:
            return
        statement = (
            update(requests)
            .where(requests.c.id == bindparam("rid"), requests.c.status == "pending")
            .values(input_tokens=bindparam("tokens"), input_estimated=bindparam("est"))
        )
        rows = [{"rid": rid, "tokens": tokens, "est": est} for rid, tokens, est in counts]
        with self._begin() as connection:
            connection.execute(statement, rows)

    def batch_spend(self, batch_id: str) -> int:
        """Nano-dollars spent on a batch's priced results so far."""
        query = select(func.coalesce(func.sum(results.c.cost_nanos), 0)).where(
            results.c.batch_id == batch_id
        )
        with self._connect() as connection:
            return int(connection.execute(query).scalar_one())

    def batch_models(self, batch_id: str) -> list[str]:
        """The models a batch's requests go to, in the order they first appear."""
        query = (
            select(requests.c.model)
            .where(requests.c.batch_id == batch_id)
            .group_by(requests.c.model)
            .order_by(func.min(requests.c.id))
        )
        with self._connect() as connection:
            return list(connection.execute(query).scalars())

    def status_counts(self, batch_id: str) -> dict[str, dict[str, int]]:
        """Requests per model and status."""
        query = (
            select(requests.c.model, requests.c.status, func.count())
            .where(requests.c.batch_id == batch_id)
            .group_by(requests.c.model, requests.c.status)
        )
        counts: dict[str, dict[str, int]] = {}
        with self._connect() as connection:
            for model, status, count in connection.execute(query):
                counts.setdefault(model, {})[status] = count
        return counts

    def result_rows(
        self, batch_id: str | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        """Results of one batch or of all, sent at or after ``since`` (epoch seconds)."""
        query = select(results, batches.c.name.label("batch_name")).join(
            batches, batches.c.id == results.c.batch_id
        )
        if batch_id is not None:
            query = query.where(results.c.batch_id == batch_id)
        if since is not None:
            query = query.where(results.c.sent_at >= since)
        with self._connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def pricing_rows(self, batch_id: str | None) -> list[dict[str, Any]]:
        """What repricing needs of each result: usage, day, model, and the request's params."""
        query = _results_with_jobs(
            results.c.request_id,
            results.c.model,
            results.c.sent_at,
            results.c.input_tokens,
            results.c.output_tokens,
            results.c.cache_read_tokens,
            results.c.cache_creation_tokens,
            results.c.cost_nanos,
            results.c.price_date,
            jobs.c.params,
        )
        if batch_id is not None:
            query = query.where(results.c.batch_id == batch_id)
        with self._connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def update_costs(self, updates: Sequence[tuple[int, int | None, str | None]]) -> None:
        """Store recomputed costs: (request id, nano-dollars or None, price date)."""
        if not updates:
            return
        statement = (
            update(results)
            .where(results.c.request_id == bindparam("rid"))
            .values(cost_nanos=bindparam("new_cost"), price_date=bindparam("new_date"))
        )
        rows = [{"rid": rid, "new_cost": cost, "new_date": day} for rid, cost, day in updates]
        with self._begin() as connection:
            connection.execute(statement, rows)

    def export_rows(self, batch: BatchInfo, page: int = 2000) -> Iterator[dict[str, Any]]:
        """Every request of a batch in input-file order, then model order, with its result."""
        rank = {model: n for n, model in enumerate(batch.models)}
        order = case(rank, value=requests.c.model, else_=len(rank)) if rank else requests.c.model
        query = (
            _with_results(
                jobs.c.line_no,
                requests.c.custom_id,
                *_OUTCOME,
                requests.c.error_status,
                requests.c.error_code,
            )
            .where(requests.c.batch_id == batch.id)
            .order_by(jobs.c.line_no, order, requests.c.model)
            .execution_options(yield_per=page)
        )
        with self._connect() as connection:
            for row in connection.execute(query):
                yield dict(row._mapping)

    def line_error_rows(self, batch_id: str) -> list[dict[str, Any]]:
        """The invalid lines of a batch's file, in line order."""
        query = (
            select(line_errors)
            .where(line_errors.c.batch_id == batch_id)
            .order_by(line_errors.c.line_no)
        )
        with self._connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    # --- dashboard reads -----------------------------------------------------------------------

    def metric_rows(
        self, batch_ids: Sequence[str] | None = None, page: int = 50_000
    ) -> tuple[Iterator[list[tuple[Any, ...]]], Iterator[list[tuple[Any, ...]]]]:
        """Every request (of some batches, or all), and the metric columns of their results, as
        pages of rows: read one after the other, so a million requests never sit in memory as
        Python rows at once.

        Two narrow scans, in the column orders of ``analytics.REQUEST_COLUMNS`` and
        ``analytics.RESULT_COLUMNS``; the second reads only the covering index
        ``ix_results_metrics``, never the answers' text.
        """
        request_query = select(
            requests.c.id,
            requests.c.batch_id,
            requests.c.custom_id,
            requests.c.model,
            requests.c.status,
            requests.c.attempts,
            requests.c.error_type,
            requests.c.error_message,
        )
        if batch_ids is not None:
            request_query = request_query.where(requests.c.batch_id.in_(list(batch_ids)))
        return self._plain_pages(request_query, page), self.result_metric_rows(batch_ids, page)

    def result_metric_rows(
        self, batch_ids: Sequence[str] | None = None, page: int = 50_000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The results' metric columns (``analytics.RESULT_COLUMNS``), in pages, from the
        covering index alone."""
        query = select(
            results.c.request_id, results.c.model, *(results.c[c] for c in RESULT_METRICS)
        )
        if batch_ids is not None:
            query = query.where(results.c.batch_id.in_(list(batch_ids)))
        return self._plain_pages(query, page)

    def _plain_pages(self, query: Select[Any], page: int) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of a read, in pages, as the driver's own tuples: half the time of
        SQLAlchemy's rows, which matters at a million. Literal binds: the only values are our
        own batch ids."""
        sql = str(query.compile(self.engine, compile_kwargs={"literal_binds": True}))
        with self._connect() as connection:
            cursor = connection.connection.driver_connection.cursor()
            try:
                cursor.execute(sql)
                while rows := cursor.fetchmany(page):
                    yield list(rows)
            finally:
                cursor.close()

    def find_jobs(self, batch_id: str, text: str = "", limit: int = 200) -> list[dict[str, Any]]:
        """Jobs of a batch whose custom_id or request contains ``text``, in file order."""
        query = select(jobs.c.custom_id, jobs.c.line_no, jobs.c.params).where(
            jobs.c.batch_id == batch_id
        )
        if text:
            pattern = f"%{text}%"
            query = query.where(
                jobs.c.custom_id.ilike(pattern) | cast(jobs.c.params, Text).ilike(pattern)
            )
        with self._connect() as connection:
            rows = connection.execute(query.order_by(jobs.c.line_no).limit(limit))
            return [dict(row._mapping) for row in rows]

    def job_answers(self, batch_id: str, custom_id: str) -> list[dict[str, Any]]:
        """Each model's request for one job: its params, status, error and, where it succeeded, the
        result."""
        query = (
            _with_results(*_OUTCOME, jobs.c.params)
            .where(requests.c.batch_id == batch_id, requests.c.custom_id == custom_id)
            .order_by(requests.c.model)
        )
        with self._connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    # --- grades --------------------------------------------------------------------------------

    def grading_rows(self, batch_id: str) -> list[dict[str, Any]]:
        """A batch's results with what grading needs: the answer, the job's expect and params."""
        query = (
            _results_with_jobs(
                results.c.request_id,
                results.c.model,
                results.c.custom_id,
                results.c.text,
                jobs.c.line_no,
                jobs.c.expect,
                jobs.c.params,
            )
            .where(results.c.batch_id == batch_id)
            .order_by(jobs.c.line_no, results.c.model)
        )
        with self._connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def replace_grades(self, batch_id: str, grader: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Store one grader's grades of these results, replacing its earlier ones; return count.

        Each row has request_id, score, passed, reason, and optionally error, judge_model,
        judge_request_id and judge_cost_nanos.
        """
        if not rows:
            return 0
        now = time.time()
        ids = [row["request_id"] for row in rows]
        new = [{"batch_id": batch_id, "grader": grader, "graded_at": now, **row} for row in rows]
        with self._begin() as connection:
            for start in range(0, len(ids), 500):
                connection.execute(
                    delete(grades).where(
                        grades.c.grader == grader, grades.c.request_id.in_(ids[start : start + 500])
                    )
                )
            connection.execute(insert(grades), new)
        return len(new)

    def grade_rows(self, batch_id: str, grader: str | None = None) -> list[dict[str, Any]]:
        """Grades of a batch (of one grader or all) with their result's model, timings and cost."""
        query = (
            select(
                grades,
                results.c.model,
                results.c.custom_id,
                results.c.sent_at,
                results.c.first_token_s,
                results.c.first_text_s,
                results.c.last_token_s,
                results.c.done_s,
                results.c.output_tokens,
                results.c.cost_nanos,
            )
            .join(results, results.c.request_id == grades.c.request_id)
            .where(grades.c.batch_id == batch_id)
            .order_by(grades.c.request_id, grades.c.grader)
        )
        if grader is not None:
            query = query.where(grades.c.grader == grader)
        with self._connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def judge_spend(self, batch_id: str) -> int:
        """Nano-dollars spent judging a batch's answers (kept apart from the answers' cost)."""
        query = select(func.coalesce(func.sum(grades.c.judge_cost_nanos), 0)).where(
            grades.c.batch_id == batch_id
        )
        with self._connect() as connection:
            return int(connection.execute(query).scalar_one())

    # --- plumbing ------------------------------------------------------------------------------

    def _insert_ignore(self, table: Table) -> Insert:
        """INSERT that skips rows whose key exists: a request never gets two results."""
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        return sqlite.insert(table).on_conflict_do_nothing()

    def _connect(self) -> Any:
        return _Guard(self, self.engine.connect())

    def _begin(self) -> Any:
        return _Guard(self, self.engine.begin())


# What became of a request: its model, status, attempts and error.
_OUTCOME = (
    requests.c.model,
    requests.c.status,
    requests.c.attempts,
    requests.c.error_type,
    requests.c.error_message,
)


def _with_results(*columns: Any) -> Select[Any]:
    """Requests (with their job) and, where they have one, their result's columns."""
    return (
        select(*columns, results)
        .join(jobs, jobs.c.id == requests.c.job_id)
        .outerjoin(results, results.c.request_id == requests.c.id)
    )


def _results_with_jobs(*columns: Any) -> Select[Any]:
    """Results with their request's job (for its params and expectations)."""
    return (
        select(*columns)
        .join(requests, requests.c.id == results.c.request_id)
        .join(jobs, jobs.c.id == requests.c.job_id)
    )


class _Guard:
    """Turns database errors into StoreError with what failed, for the CLI to report."""

    def __init__(self, store: Store, inner: Any) -> None:
        self._store = store
        self._inner = inner

    def __enter__(self) -> Connection:
        try:
            connection: Connection = self._inner.__enter__()
        except SQLAlchemyError as exc:
            raise StoreError(f"database {redact_url(self._store.url)}: {_reason(exc)}") from exc
        return connection

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self._inner.__exit__(*exc_info)
        except SQLAlchemyError as exc:
            raise StoreError(f"database {redact_url(self._store.url)}: {_reason(exc)}") from exc
        if isinstance(exc_info[1], SQLAlchemyError):
            reason = _reason(exc_info[1])
            raise StoreError(f"database {redact_url(self._store.url)}: {reason}") from exc_info[1]


def _add_to_batch(connection: Connection, batch_id: str, counter: str, amount: int) -> None:
    """Add ``amount`` to one of a batch's counters, in the caller's transaction."""
    column = batches.c[counter]
    connection.execute(
        update(batches).where(batches.c.id == batch_id).values({column: column + amount})
    )


def vars_of(record: AttemptRecord) -> dict[str, Any]:
    """An attempt as a row."""
    return {name: getattr(record, name) for name in AttemptRecord.__slots__}


_UPDATE_REQUEST = (
    update(requests)
    .where(requests.c.id == bindparam("rid"), requests.c.status == "pending")
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
        "new_error_message": outcome.error_message,
        "new_error_status": outcome.error_status,
        "new_error_code": outcome.error_code,
        "now": now,
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
        "status": "invalid" if why else "pending",
        "attempts": 0,
        "error_type": "invalid_request" if why else None,
        "error_message": why,
        "updated_at": now,
    }


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config() -> Config:
    """Alembic's configuration for batchrun's migrations."""
    config = Config()
    # The package's own copy (the top-level migrations/ folder, shipped as batchrun.migrations):
    # the same in a checkout and in an installed wheel.
    config.set_main_option("script_location", str(resources.files("batchrun.migrations")))
    return config


def _migrate(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Two processes opening a new database at once must not both create the tables.
        connection.execute(text("SELECT pg_advisory_xact_lock(7219034451)"))
    config = alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    current = MigrationContext.configure(connection).get_current_revision()
    if current == head:
        return
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None)
    lines = str(original or exc).splitlines() or [type(exc).__name__]
    return redact_url(lines[0]) if "://" in lines[0] else lines[0]


__all__ = ["Outcome", "Store", "WorkItem", "database_url"]

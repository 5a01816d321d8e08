"""Results: reads for export, repricing, metrics and the dashboard, and their costs."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Select, Text, bindparam, case, cast, func, select, update

from batchrun.store import aggregates
from batchrun.store.database import Database
from batchrun.store.rows import BatchInfo, CostUpdate
from batchrun.store.tables import RESULT_METRICS, batches, jobs, requests, results

_TOUCH_CHUNK = 900  # request ids per lookup: under SQLite's limit of bound values


def _touch(connection: Connection, request_ids: Sequence[int]) -> None:
    """Mark the batches of these results changed (their ``updated_at``), in the costs'
    transaction: what was computed from their figures (the dashboard's frames, kept on disk
    per batch version) is then computed again."""
    touched: set[str] = set()
    for first in range(0, len(request_ids), _TOUCH_CHUNK):
        chunk = list(request_ids[first : first + _TOUCH_CHUNK])
        query = select(results.c.batch_id).where(results.c.request_id.in_(chunk)).distinct()
        touched.update(connection.execute(query).scalars())
    if touched:
        statement = update(batches).where(batches.c.id.in_(sorted(touched)))
        connection.execute(statement.values(updated_at=time.time()))


_FIGURES = (
    results.c.request_id,
    results.c.batch_id,
    results.c.model,
    results.c.sent_at,
    results.c.simulated,
    results.c.input_tokens,
    results.c.output_tokens,
    results.c.cache_read_tokens,
    results.c.cache_creation_tokens,
    results.c.cost_nanos,
    results.c.uncached_cost_nanos,
    results.c.cache_write_cost_nanos,
    results.c.expected_cache_tokens,
)  # what the aggregates sum


def _locked_figures(connection: Connection, request_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The summed figures of these results as stored now, locked until the transaction ends
    (PostgreSQL): their old part of the aggregates."""
    found: list[dict[str, Any]] = []
    for first in range(0, len(request_ids), _TOUCH_CHUNK):
        chunk = list(request_ids[first : first + _TOUCH_CHUNK])
        query = select(*_FIGURES).where(results.c.request_id.in_(chunk))
        if connection.dialect.name == "postgresql":
            query = query.with_for_update()
        found.extend(dict(row._mapping) for row in connection.execute(query))
    return found


def _with_costs(
    before: Sequence[dict[str, Any]], updates: Sequence[CostUpdate]
) -> list[dict[str, Any]]:
    """The rows with their new cost figures."""
    new = {u.request_id: u for u in updates}
    return [
        {
            **row,
            "cost_nanos": new[row["request_id"]].cost_nanos,
            "uncached_cost_nanos": new[row["request_id"]].uncached_cost_nanos,
            "cache_write_cost_nanos": new[row["request_id"]].cache_write_cost_nanos,
        }
        for row in before
    ]


class Results:
    """The results table, read with their requests and jobs."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def output_history(self, simulated: bool) -> dict[str, tuple[int, float]]:
        """Per model: how many simulated (or real) results the store has, and their mean output
        tokens."""
        query = (
            select(results.c.model, func.count(), func.avg(results.c.output_tokens))
            .where(results.c.simulated == simulated)
            .group_by(results.c.model)
        )
        with self.database.connect() as connection:
            return {model: (int(n), float(mean)) for model, n, mean in connection.execute(query)}

    def spend_since(self, since: float, simulated: bool) -> dict[str, int]:
        """Per model: nano-dollars of the priced results (simulated or real) sent since then."""
        query = (
            select(results.c.model, func.coalesce(func.sum(results.c.cost_nanos), 0))
            .where(results.c.sent_at >= since, results.c.simulated == simulated)
            .group_by(results.c.model)
        )
        with self.database.connect() as connection:
            return {model: int(nanos) for model, nanos in connection.execute(query)}

    def batch_spend(self, batch_id: str, model: str | None = None) -> int:
        """Nano-dollars spent on a batch's priced results so far (of one model, or all)."""
        query = select(func.coalesce(func.sum(results.c.cost_nanos), 0)).where(
            results.c.batch_id == batch_id
        )
        if model is not None:
            query = query.where(results.c.model == model)
        with self.database.connect() as connection:
            return int(connection.execute(query).scalar_one())

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
        with self.database.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def pricing_rows(self, batch_id: str | None) -> list[dict[str, Any]]:
        """What repricing needs of each result: usage, day, model, and the request's params."""
        query = results_with_jobs(
            results.c.request_id,
            results.c.model,
            results.c.sent_at,
            results.c.input_tokens,
            results.c.output_tokens,
            results.c.cache_read_tokens,
            results.c.cache_creation_tokens,
            results.c.cost_nanos,
            results.c.price_date,
            results.c.uncached_cost_nanos,
            results.c.cache_write_cost_nanos,
            jobs.c.params,
        )
        if batch_id is not None:
            query = query.where(results.c.batch_id == batch_id)
        with self.database.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def update_costs(self, updates: Sequence[CostUpdate]) -> None:
        """Store recomputed costs: the cost, its price date, the uncached and cache-write costs."""
        if not updates:
            return
        statement = (
            update(results)
            .where(results.c.request_id == bindparam("rid"))
            .values(
                cost_nanos=bindparam("new_cost"),
                price_date=bindparam("new_date"),
                uncached_cost_nanos=bindparam("new_uncached"),
                cache_write_cost_nanos=bindparam("new_write"),
            )
        )
        rows = [
            {
                "rid": u.request_id,
                "new_cost": u.cost_nanos,
                "new_date": u.price_date,
                "new_uncached": u.uncached_cost_nanos,
                "new_write": u.cache_write_cost_nanos,
            }
            for u in updates
        ]
        with self.database.begin() as connection:
            before = _locked_figures(connection, [u.request_id for u in updates])
            connection.execute(statement, rows)
            aggregates.replace(connection, before, _with_costs(before, updates))
            _touch(connection, [u.request_id for u in updates])

    def export_rows(self, batch: BatchInfo, page: int = 2000) -> Iterator[dict[str, Any]]:
        """Every request of a batch in input-file order, then model order, with its result."""
        rank = {model: n for n, model in enumerate(batch.models)}
        order = case(rank, value=requests.c.model, else_=len(rank)) if rank else requests.c.model
        query = (
            with_results(
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
        with self.database.connect() as connection:
            for row in connection.execute(query):
                yield dict(row._mapping)

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
        return self.database.plain_pages(request_query, page), self.result_metric_rows(
            batch_ids, page
        )

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
        return self.database.plain_pages(query, page)

    def job_answers(self, batch_id: str, custom_id: str) -> list[dict[str, Any]]:
        """Each model's request for one job: its params, status, error and, where it succeeded, the
        result."""
        query = (
            with_results(*_OUTCOME, jobs.c.params)
            .where(requests.c.batch_id == batch_id, requests.c.custom_id == custom_id)
            .order_by(requests.c.model)
        )
        with self.database.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def grid_answers(self, batch_id: str, custom_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The Outputs grid's page: each model's request for these jobs (a page of them, never a
        whole batch), with its answer where it succeeded and the job's line and params."""
        if not custom_ids:
            return []
        query = (
            select(
                requests.c.id.label("request_id"),
                requests.c.custom_id,
                *_OUTCOME,
                jobs.c.line_no,
                jobs.c.params,
                results.c.text,
                results.c.thinking,
            )
            .join(jobs, jobs.c.id == requests.c.job_id)
            .outerjoin(results, results.c.request_id == requests.c.id)
            .where(requests.c.batch_id == batch_id, requests.c.custom_id.in_(list(custom_ids)))
            .order_by(jobs.c.line_no, requests.c.model)
        )
        with self.database.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def differing_jobs(self, batch_id: str) -> list[str]:
        """The custom_ids of a batch's jobs whose answers are not all the same text (one grouped
        read)."""
        query = (
            select(results.c.custom_id)
            .where(results.c.batch_id == batch_id)
            .group_by(results.c.custom_id)
            .having(func.count(func.distinct(results.c.text)) > 1)
        )
        with self.database.connect() as connection:
            return [str(row[0]) for row in connection.execute(query)]

    def answer_text_pages(
        self, batch_id: str, page: int = 20_000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """(custom_id, answer text) of a batch's results, in pages (for a search)."""
        query = select(results.c.custom_id, results.c.text).where(results.c.batch_id == batch_id)
        return self.database.plain_pages(query, page)

    def prompt_text_pages(
        self, batch_id: str, page: int = 20_000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """(custom_id, params as JSON text) of a batch's jobs, in pages (for a search)."""
        query = select(jobs.c.custom_id, cast(jobs.c.params, Text)).where(
            jobs.c.batch_id == batch_id
        )
        return self.database.plain_pages(query, page)


# What became of a request: its model, status, attempts and error.
_OUTCOME = (
    requests.c.model,
    requests.c.status,
    requests.c.attempts,
    requests.c.error_type,
    requests.c.error_message,
)


def with_results(*columns: Any) -> Select[Any]:
    """Requests (with their job) and, where they have one, their result's columns."""
    return (
        select(*columns, results)
        .join(jobs, jobs.c.id == requests.c.job_id)
        .outerjoin(results, results.c.request_id == requests.c.id)
    )


def results_with_jobs(*columns: Any) -> Select[Any]:
    """Results with their request's job (for its params and expectations)."""
    return (
        select(*columns)
        .join(requests, requests.c.id == results.c.request_id)
        .join(jobs, jobs.c.id == requests.c.job_id)
    )

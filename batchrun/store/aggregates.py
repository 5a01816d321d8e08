"""Per-batch aggregates: the results' counts, tokens, cost sums and expected prompt-cache reads
per (batch, model, UTC hour, origin), kept in the transaction that writes or reprices the
results (``batch_aggregates``).

Whatever adds results calls ``add`` with their rows; whatever changes their costs calls
``replace`` with the rows before and after. Both turn the rows into per-group increments and
apply them as one UPSERT per group (``x = x + excluded.x``), so concurrent writers (teams
workers on one PostgreSQL store) never lose each other's updates; groups are written in key
order, so two writers never wait on each other in a cycle. ``recomputed`` is the same sums
worked out from the results table (``rebuild``'s query, and the tests' reference; migrations 0013
and 0015 keep their own frozen copies).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import BigInteger, Connection, Insert, Select, case, cast, func, select
from sqlalchemy.sql.elements import ColumnElement

from batchrun.store.database import dialect_insert
from batchrun.store.tables import batch_aggregates, results

KEY = ("batch_id", "model", "hour", "simulated")
SUMS = tuple(c.name for c in batch_aggregates.columns if c.name not in KEY)
HOUR = 3600
Key = tuple[str, str, int, bool]


def hour_of(sent_at: float) -> int:
    """Epoch seconds of the UTC hour ``sent_at`` falls in (as the SQL of ``recomputed``)."""
    return math.floor(sent_at / HOUR) * HOUR


def figures(row: Mapping[str, Any]) -> dict[str, int]:
    """One result's part of each sum."""
    cost = row.get("cost_nanos")
    uncached = row.get("uncached_cost_nanos")
    write = row.get("cache_write_cost_nanos")
    output = int(row["output_tokens"])
    both = cost is not None and uncached is not None
    expected = row.get("expected_cache_tokens")  # None: stored before batchrun kept it
    hit = expected is not None and expected > 0
    return {
        "results": 1,
        "input_tokens": int(row["input_tokens"]),
        "output_tokens": output,
        "cache_read_tokens": int(row["cache_read_tokens"]),
        "cache_creation_tokens": int(row["cache_creation_tokens"]),
        "cached_results": int(row["cache_read_tokens"] > 0),
        "priced": int(cost is not None),
        "cost_nanos": int(cost or 0),
        "priced_output_tokens": output if cost is not None else 0,
        "write_priced": int(write is not None),
        "cache_write_cost_nanos": int(write or 0),
        "saving_known": int(both),
        "cache_saving_nanos": int(uncached) - int(cost) if both else 0,  # type: ignore[arg-type]
        "expected_cache_hits": int(hit),
        "unreported_cache_hits": int(hit and row["cache_read_tokens"] == 0),
        "expected_known": int(expected is not None),
        "expected_cache_tokens": int(expected or 0),
    }


def increments(rows: Iterable[Mapping[str, Any]], sign: int = 1) -> dict[Key, dict[str, int]]:
    """The rows' sums per group, times ``sign`` (-1: rows taken away)."""
    groups: dict[Key, dict[str, int]] = {}
    for row in rows:
        key = (row["batch_id"], row["model"], hour_of(row["sent_at"]), bool(row["simulated"]))
        sums = groups.setdefault(key, dict.fromkeys(SUMS, 0))
        for name, value in figures(row).items():
            sums[name] += sign * value
    return groups


def add(connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Count these newly stored results in their groups' sums (in the caller's transaction)."""
    apply(connection, increments(rows))


def replace(
    connection: Connection,
    before: Sequence[Mapping[str, Any]],
    after: Sequence[Mapping[str, Any]],
) -> None:
    """Results changed (repriced): take the old rows' figures out and put the new ones in."""
    groups = increments(before, -1)
    for key, sums in increments(after).items():
        into = groups.setdefault(key, dict.fromkeys(SUMS, 0))
        for name, value in sums.items():
            into[name] += value
    apply(connection, groups)


def apply(connection: Connection, groups: Mapping[Key, Mapping[str, int]]) -> None:
    """Add each group's increments to its row (made when missing), in key order."""
    changed = [
        {**dict(zip(KEY, key, strict=True)), **sums}
        for key, sums in sorted(groups.items())
        if any(sums.values())
    ]
    if changed:
        connection.execute(_upsert(connection.dialect.name), changed)


@functools.cache
def _upsert(dialect: str) -> Insert:
    """The increment, built once per dialect: building it at every commit was 3-5 % of a run's
    CPU (py-spy at time scale 0)."""
    statement = dialect_insert(dialect, batch_aggregates)
    upsert: Insert = statement.on_conflict_do_update(
        index_elements=list(KEY),
        set_={name: batch_aggregates.c[name] + statement.excluded[name] for name in SUMS},
    )
    return upsert


def hour_column(dialect: str) -> ColumnElement[int]:
    """The UTC hour of a result's sent_at, as SQL (a float's CAST truncates in SQLite, rounds in
    PostgreSQL: there, FLOOR first)."""
    hours = results.c.sent_at / HOUR
    if dialect == "postgresql":
        hours = func.floor(hours)
    return cast(cast(hours, BigInteger) * HOUR, BigInteger)


def recomputed(dialect: str, batch_ids: Sequence[str] | None = None) -> Select[Any]:
    """The aggregates worked out from the results, in the columns of ``batch_aggregates``."""
    cost = results.c.cost_nanos
    uncached = results.c.uncached_cost_nanos
    write = results.c.cache_write_cost_nanos
    expected = results.c.expected_cache_tokens
    hit = expected > 0  # NULL (not known) counts as not expected
    hour = hour_column(dialect).label("hour")

    def total(value: Any) -> ColumnElement[int]:
        return cast(func.coalesce(func.sum(value), 0), BigInteger)

    query = select(
        results.c.batch_id,
        results.c.model,
        hour,
        results.c.simulated,
        func.count().label("results"),
        total(results.c.input_tokens).label("input_tokens"),
        total(results.c.output_tokens).label("output_tokens"),
        total(results.c.cache_read_tokens).label("cache_read_tokens"),
        total(results.c.cache_creation_tokens).label("cache_creation_tokens"),
        total(case((results.c.cache_read_tokens > 0, 1), else_=0)).label("cached_results"),
        func.count(cost).label("priced"),
        total(cost).label("cost_nanos"),
        total(case((cost.is_not(None), results.c.output_tokens))).label("priced_output_tokens"),
        func.count(write).label("write_priced"),
        total(write).label("cache_write_cost_nanos"),
        func.count(uncached - cost).label("saving_known"),
        total(uncached - cost).label("cache_saving_nanos"),
        total(case((hit, 1), else_=0)).label("expected_cache_hits"),
        total(case((hit & (results.c.cache_read_tokens == 0), 1), else_=0)).label(
            "unreported_cache_hits"
        ),
        func.count(expected).label("expected_known"),
        total(expected).label("expected_cache_tokens"),
    ).group_by(results.c.batch_id, results.c.model, hour, results.c.simulated)
    if batch_ids is not None:
        query = query.where(results.c.batch_id.in_(list(batch_ids)))
    return query


def rebuild(connection: Connection) -> None:
    """Work the aggregates out again from the results (after results were changed outside
    batchrun, by hand in SQL): in the caller's transaction."""
    connection.execute(batch_aggregates.delete())
    backfill(connection)


def backfill(connection: Connection) -> None:
    """Fill the (empty) aggregates from the results already stored (rebuild empties them first)."""
    query = recomputed(connection.dialect.name)
    connection.execute(
        batch_aggregates.insert().from_select(list(query.selected_columns.keys()), query)
    )


def rows(connection: Connection, batch_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The aggregates (of some batches, or all), as dicts."""
    query = select(batch_aggregates)
    if batch_ids is not None:
        query = query.where(batch_aggregates.c.batch_id.in_(list(batch_ids)))
    return [dict(row._mapping) for row in connection.execute(query)]

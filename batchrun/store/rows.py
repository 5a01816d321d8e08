"""The rows the store hands out and takes: a batch, a request to send, an attempt, an outcome."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from batchrun.redaction import redact


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
    open_key: str | None = None  # held while it is the batch of its file and models continued
    declined_at: float | None = None  # its cost estimate was declined then (not accepted since)
    stop_reason: str | None = None  # why its last run ended (StopReason); None before 0012

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


@dataclass(frozen=True, kw_only=True, slots=True)
class CostUpdate:
    """A result's recomputed cost figures (None: unpriced)."""

    request_id: int
    cost_nanos: int | None
    price_date: str | None
    uncached_cost_nanos: int | None
    cache_write_cost_nanos: int | None


def vars_of(record: AttemptRecord) -> dict[str, Any]:
    """An attempt as a row (its message redacted: the last guard before the disk)."""
    row = {name: getattr(record, name) for name in AttemptRecord.__slots__}
    if row["message"]:
        row["message"] = redact(row["message"])
    return row

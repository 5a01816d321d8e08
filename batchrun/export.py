"""Results of a batch as JSONL (Anthropic's batch result shape), CSV or Parquet.

Rows come in input-file order, then model order, so output joins back to input. Invalid lines of
the file appear at their line as ``errored`` results. A request that has not run yet is
``{"type": "pending"}``: batchrun's addition to Anthropic's four result types.

A succeeded result keeps the message as received; the record's ``answer`` (batchrun's addition)
holds the visible answer and its thinking, with reasoning leaked into the text as
``<think>...</think>`` moved to the thinking, and the text fields of CSV and Parquet are those.
``metrics.flags`` lists what was odd about the reply (``think_leaked``, ``empty_reply``).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any

import orjson

from batchrun.pricing import NANOS_PER_USD
from batchrun.status import RequestStatus

if TYPE_CHECKING:
    from batchrun.store import BatchInfo, Store

FORMATS = ("jsonl", "csv", "parquet")


def result_records(store: Store, batch: BatchInfo) -> Iterator[dict[str, Any]]:
    """Every result of the batch in Anthropic's batch result shape plus model and metrics."""
    requests = (
        (row["line_no"], 1, _request_record(row, batch)) for row in store.export_rows(batch)
    )
    invalid = ((row["line_no"], 0, _line_record(row)) for row in store.line_error_rows(batch.id))
    for _, _, record in heapq.merge(invalid, requests, key=lambda item: (item[0], item[1])):
        yield record


def write_jsonl(records: Iterator[dict[str, Any]], out: IO[bytes]) -> int:
    """Write records one per line; return how many."""
    count = 0
    for record in records:
        out.write(orjson.dumps(record) + b"\n")
        count += 1
    return count


def write_table(records: Iterator[dict[str, Any]], path: str, fmt: str) -> int:
    """Write records flattened to one row each, as CSV or Parquet; return how many."""
    import polars as pl  # noqa: PLC0415 - only tables need it: JSONL output starts fast

    frame = pl.DataFrame([flatten(record) for record in records], infer_schema_length=None)
    if fmt == "csv":
        frame.write_csv(path)
    else:
        frame.write_parquet(path)
    return frame.height


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One result as a flat row: ids, outcome, visible answer text and every metric."""
    result = record["result"]
    message = result.get("message") or {}
    error = result.get("error") or {}
    answer = record.get("answer") or {}
    metrics = dict(record.get("metrics") or {})
    if "flags" in metrics:
        metrics["flags"] = ",".join(metrics["flags"]) or None
    return {
        "line": record.get("line"),
        "custom_id": record["custom_id"],
        "model": record["model"],
        "result_type": result["type"],
        "stop_reason": message.get("stop_reason"),
        "text": answer.get("text"),
        "thinking": answer.get("thinking") or None,
        "error_type": error.get("type"),
        "error_message": error.get("message"),
        **metrics,
    }


def _request_record(row: dict[str, Any], batch: BatchInfo) -> dict[str, Any]:
    return {
        "custom_id": row["custom_id"],
        "model": row["model"],
        "line": row["line_no"],
        "result": _result(row),
        "answer": _answer(row),
        "metrics": _metrics(row, batch),
    }


def _answer(row: dict[str, Any]) -> dict[str, str] | None:
    """The visible answer and its thinking, as stored (leaked reasoning moved to thinking)."""
    if row["status"] != RequestStatus.SUCCEEDED or row.get("message") is None:
        return None
    return {"text": row.get("text") or "", "thinking": row.get("thinking") or ""}


def _result(row: dict[str, Any]) -> dict[str, Any]:
    status = row["status"]
    if status == RequestStatus.SUCCEEDED and row.get("message") is not None:
        return {"type": "succeeded", "message": row["message"]}
    if status in (RequestStatus.ERRORED, RequestStatus.INVALID):
        error_type = (
            "invalid_request_error" if status == RequestStatus.INVALID else row["error_type"]
        )
        error = {"type": error_type, "message": row["error_message"]}
        if row.get("error_status") is not None:
            error["status"] = row["error_status"]
        if row.get("error_code") is not None:
            error["minimax_code"] = row["error_code"]
        return {"type": "errored", "error": error}
    return {"type": status if status == RequestStatus.CANCELED else "pending"}


def _metrics(row: dict[str, Any], batch: BatchInfo) -> dict[str, Any]:
    done, first, last = row.get("done_s"), row.get("first_token_s"), row.get("last_token_s")
    output = row.get("output_tokens")
    generating = (last - first) if last is not None and first is not None else None
    cost = row.get("cost_nanos")
    return {
        "attempts": row["attempts"],
        "latency_s": done,
        "ttft_s": first,
        "ttft_text_s": row.get("first_text_s"),
        "output_tps": output / generating if output and generating else None,
        "e2e_tps": output / done if output and done else None,
        "input_tokens": row.get("input_tokens"),
        "output_tokens": output,
        "cache_read_tokens": row.get("cache_read_tokens"),
        "cache_creation_tokens": row.get("cache_creation_tokens"),
        "cost_usd": str(Decimal(cost) / NANOS_PER_USD) if cost is not None else None,
        "cost_status": _cost_status(row, cost),
        "simulated": row.get("simulated", batch.simulated) if row.get("message") else None,
        "flags": row["flags"].split(",") if row.get("flags") else [],
    }


def _cost_status(row: dict[str, Any], cost: int | None) -> str | None:
    if row.get("message") is None:
        return None
    return "priced" if cost is not None else "unpriced"


def _line_record(row: dict[str, Any]) -> dict[str, Any]:
    where = f"line {row['line_no']}" + (f", {row['field']}" if row["field"] else "")
    return {
        "custom_id": row["custom_id"],
        "model": None,
        "line": row["line_no"],
        "result": {
            "type": "errored",
            "error": {"type": "invalid_request_error", "message": f"{where}: {row['message']}"},
        },
        "answer": None,
        "metrics": None,
    }

"""Results of a batch as JSONL (Anthropic's batch result shape), CSV, TSV or Parquet.

Rows come in input-file order, then model order, so output joins back to input. Invalid lines of
the file appear at their line as ``errored`` results. A request that has not run yet is
``{"type": "pending"}``: batchrun's addition to Anthropic's four result types.

A succeeded result keeps the message as received; the record's ``answer`` (batchrun's addition)
holds the visible answer and its thinking, with reasoning leaked into the text as
``<think>...</think>`` moved to the thinking, and the text fields of CSV and Parquet are those.
``metrics.flags`` lists what was odd about the reply (``think_leaked``, ``empty_reply``).
``rating`` (batchrun's addition) is a person's rating of the answer from the dashboard's Outputs
grid: ``{"verdict": "good" | "bad" | null, "comment": "..."}``, or null when it has none; in CSV,
TSV and Parquet the columns ``rating`` and ``rating_comment``.

A CSV or TSV text cell that a spreadsheet would run as a formula (it starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return: OWASP's CSV-injection list) is written with a ``'``
in front, which spreadsheets show as text.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from decimal import Decimal
from pathlib import PurePath
from typing import IO, TYPE_CHECKING, Any

import orjson

from batchrun.exceptions import ConfigError
from batchrun.pricing import NANOS_PER_USD
from batchrun.status import RequestStatus

if TYPE_CHECKING:
    import polars as pl

    from batchrun.store import BatchInfo, Store

FORMATS = ("jsonl", "csv", "tsv", "parquet")
# The format a file name's extension stands for (``results -o`` without ``--format``).
EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}
SEPARATORS = {"csv": ",", "tsv": "\t"}
# What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_START = r"^[=+\-@\t\r]"


def result_records(store: Store, batch: BatchInfo) -> Iterator[dict[str, Any]]:
    """Every result of the batch in Anthropic's batch result shape plus model, metrics and the
    answer's rating."""
    # A batch's ratings are few (a person gives each): held in memory while the rows stream.
    rated = {row["request_id"]: row for row in store.ratings.of_batch(batch.id)}
    requests = (
        (row["line_no"], 1, _request_record(row, batch, rated)) for row in store.export_rows(batch)
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


def format_for(file_name: str, given: str | None) -> str:
    """The format to write ``file_name`` in: ``given``, else the one its extension names, else
    JSONL; a ``given`` format that its extension contradicts is refused."""
    if given is not None and given not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, not {given!r}")
    suffix = PurePath(file_name).suffix.lower()
    named = EXTENSIONS.get(suffix)
    if given is None and suffix == ".json":
        raise ConfigError(
            f"{file_name}: batchrun writes JSON Lines (one result per line), not one JSON "
            "document; name the file .jsonl, or add --format jsonl to write JSON Lines under "
            "this name"
        )
    if given is not None and named is not None and named != given:
        raise ConfigError(
            f"--format {given} does not match the file name {file_name} ({suffix} means "
            f"{named}): leave out --format, or name the file "
            f"{PurePath(file_name).with_suffix('.' + given).name}"
        )
    return given or named or "jsonl"


def write_records(records: Iterator[dict[str, Any]], out: IO[bytes], fmt: str) -> int:
    """Write records in ``fmt`` (one of FORMATS); return how many."""
    if fmt == "jsonl":
        return write_jsonl(records, out)
    return write_table(records, out, fmt)


def write_table(records: Iterator[dict[str, Any]], out: IO[bytes], fmt: str) -> int:
    """Write records flattened to one row each, as CSV, TSV or Parquet; return how many."""
    import polars as pl  # noqa: PLC0415 - only tables need it: JSONL output starts fast

    frame = pl.DataFrame([flatten(record) for record in records], infer_schema_length=None)
    if fmt in SEPARATORS:
        defuse_formulas(frame).write_csv(out, separator=SEPARATORS[fmt])
    else:
        frame.write_parquet(out)
    return frame.height


def defuse_formulas(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with a ``'`` before every text cell a spreadsheet would run as a formula."""
    import polars as pl  # noqa: PLC0415

    texts = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns(
        pl.when(pl.col(name).str.contains(FORMULA_START))
        .then(pl.lit("'") + pl.col(name))
        .otherwise(pl.col(name))
        .alias(name)
        for name in texts
    )


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One result as a flat row: ids, outcome, visible answer text and every metric."""
    result = record["result"]
    message = result.get("message") or {}
    error = result.get("error") or {}
    answer = record.get("answer") or {}
    metrics = dict(record.get("metrics") or {})
    rating = record.get("rating") or {}
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
        "rating": rating.get("verdict"),
        "rating_comment": rating.get("comment"),
        **metrics,
    }


def _request_record(
    row: dict[str, Any], batch: BatchInfo, rated: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    return {
        "custom_id": row["custom_id"],
        "model": row["model"],
        "line": row["line_no"],
        "result": _result(row),
        "answer": _answer(row),
        "metrics": _metrics(row, batch),
        "rating": _rating(rated.get(row["request_id"])) if row.get("request_id") else None,
    }


def _rating(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A rating as exported: its verdict in words and the comment."""
    if row is None:
        return None
    return {"verdict": verdict(row["rating"]), "comment": row["comment"]}


def verdict(rating: int | None) -> str | None:
    """A stored rating in words: ``good`` (1), ``bad`` (-1), None when there is none."""
    return {1: "good", -1: "bad"}.get(rating) if rating is not None else None


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
        "rating": None,
    }

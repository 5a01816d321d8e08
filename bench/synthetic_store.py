"""A store full of plausible results, for timing the dashboard and its analytics at scale.

Rows are written through the store's own tables (SQLAlchemy Core), in one transaction per
chunk: batches of three models, most requests succeeded, some errored after retries, a few
pending; latencies, TTFTs and token counts drawn from a seeded generator so two runs make the
same store. One model has no price (its cost is NULL, as for an unpriced model).

    python bench/synthetic_store.py --results 1000000 --db /tmp/big.db
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from sqlalchemy import insert

from batchrun.store import Store, aggregates, database_url
from batchrun.store.tables import attempts, batches, jobs, requests, results

MODELS = ("MiniMax-M2.7", "MiniMax-M2.7-highspeed", "MiniMax-M3")
SPEED = {"MiniMax-M2.7": 60.0, "MiniMax-M2.7-highspeed": 100.0, "MiniMax-M3": 45.0}
PRICE_NANOS = {"MiniMax-M2.7": 1200, "MiniMax-M2.7-highspeed": 2400, "MiniMax-M3": None}
ERRORS = (("overloaded_error", 529), ("api_error", 500), ("rate_limit_error", 429))
CHUNK = 20_000
DAY = 86_400.0


def build(url: str, total_results: int, batch_count: int = 4, seed: int = 7) -> float:
    """Fill the store at ``url`` with about ``total_results`` requests; return seconds taken."""
    started = time.perf_counter()
    store = Store(url)
    rng = random.Random(seed)
    per_batch = max(1, total_results // (batch_count * len(MODELS)))
    start = time.time() - 14 * DAY
    request_id = 0
    job_id = 0
    for b in range(batch_count):
        batch_id = f"synthetic{b:04d}"
        _add_batch(store, batch_id, b, start + b * 3 * DAY)
        for first in range(0, per_batch, CHUNK):
            rows = _chunk(
                rng,
                batch_id=batch_id,
                first=first,
                count=min(CHUNK, per_batch - first),
                job_base=job_id,
                request_base=request_id,
            )
            rows["sent_base"] = start + b * 3 * DAY
            _write(store, rows)
            job_id += len(rows["jobs"])
            request_id += len(rows["requests"])
    store.close()
    return time.perf_counter() - started


def _add_batch(store: Store, batch_id: str, number: int, created: float) -> None:
    with store.engine.begin() as connection:
        connection.execute(
            insert(batches).values(
                id=batch_id,
                name=f"synthetic-{number}",
                source_path=f"jobs/synthetic-{number}.jsonl",
                source_sha256="0" * 64,
                models=list(MODELS),
                status="completed",
                simulated=True,
                base_url="http://127.0.0.1/anthropic",
                settings={},
                created_at=created,
                updated_at=created,
                max_cost_nanos=50_000_000_000 if number == 0 else None,
                jobs_total=0,
                lines_invalid=0,
            )
        )


def _chunk(
    rng: random.Random, *, batch_id: str, first: int, count: int, job_base: int, request_base: int
) -> dict[str, Any]:
    job_rows: list[dict[str, Any]] = []
    request_rows: list[dict[str, Any]] = []
    result_rows: list[dict[str, Any]] = []
    attempt_rows: list[dict[str, Any]] = []
    for n in range(count):
        job_id = job_base + n + 1
        custom_id = f"job-{first + n:07d}"
        prompt = f"Synthetic question {first + n}: explain topic {rng.randrange(500)}."
        job_rows.append(
            {
                "id": job_id,
                "batch_id": batch_id,
                "line_no": first + n + 1,
                "custom_id": custom_id,
                "model": None,
                "params": {"messages": [{"role": "user", "content": prompt}], "max_tokens": 512},
                "content_hash": f"{job_id:064d}",
                "expect": None,
            }
        )
        for model in MODELS:
            request_id = request_base + len(request_rows) + 1
            row, result, tries = _request(
                rng,
                batch_id=batch_id,
                job_id=job_id,
                request_id=request_id,
                custom_id=custom_id,
                model=model,
            )
            request_rows.append(row)
            attempt_rows.extend(tries)
            if result is not None:
                result_rows.append(result)
    return {
        "jobs": job_rows,
        "requests": request_rows,
        "results": result_rows,
        "attempts": attempt_rows,
    }


def _request(
    rng: random.Random, *, batch_id: str, job_id: int, request_id: int, custom_id: str, model: str
) -> tuple[dict[str, Any], dict[str, Any] | None, list[dict[str, Any]]]:
    roll = rng.random()
    status = "succeeded" if roll < 0.96 else ("errored" if roll < 0.99 else "pending")
    retries = 0 if rng.random() < 0.9 else rng.randint(1, 3)
    error = ERRORS[rng.randrange(len(ERRORS))] if status == "errored" else None
    sent = rng.random() * 3 * DAY
    row = {
        "id": request_id,
        "batch_id": batch_id,
        "job_id": job_id,
        "custom_id": custom_id,
        "model": model,
        "status": status,
        "input_tokens": 40,
        "input_estimated": False,
        "attempts": 0 if status == "pending" else retries + 1,
        "error_type": error[0] if error else None,
        "error_message": f"HTTP {error[1]}" if error else None,
        "error_status": error[1] if error else None,
        "error_code": None,
        "updated_at": sent,
    }
    tries = [
        {
            "request_id": request_id,
            "batch_id": batch_id,
            "model": model,
            "number": k + 1,
            "started_at": sent,
            "duration_s": 0.5,
            "outcome": "retry"
            if k < row["attempts"] - 1
            else ("ok" if error is None else "failed"),
            "status": 529 if k < row["attempts"] - 1 else (error[1] if error else 200),
        }
        for k in range(row["attempts"])
    ]
    if status != "succeeded":
        return row, None, tries
    return row, _result(rng, row, sent), tries


def _result(rng: random.Random, row: dict[str, Any], sent: float) -> dict[str, Any]:
    model = row["model"]
    output = rng.randint(20, 900)
    ttft = rng.lognormvariate(-0.2, 0.5)
    generating = output / (SPEED[model] * rng.uniform(0.7, 1.3))
    price = PRICE_NANOS[model]
    text = f"Answer about {row['custom_id']}: " + "lorem ipsum " * (output // 8)
    return {
        "request_id": row["id"],
        "batch_id": row["batch_id"],
        "model": model,
        "custom_id": row["custom_id"],
        "sent_at": sent,
        "first_event_s": ttft * 0.9,
        "first_token_s": ttft,
        "first_thinking_s": ttft,
        "first_text_s": ttft + 0.2,
        "last_token_s": ttft + generating,
        "done_s": ttft + generating + 0.01,
        "input_tokens": 40,
        "output_tokens": output,
        "cache_read_tokens": 0,
        "cache_creation_tokens": 0,
        "stop_reason": "end_turn",
        "text": text,
        "thinking": "",
        "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
        "cost_nanos": None if price is None else 300 * 40 + price * output,
        "price_date": None if price is None else "2026-11-22",
        "simulated": True,
    }


def _write(store: Store, rows: dict[str, Any]) -> None:
    base = rows["sent_base"]
    for result in rows["results"]:
        result["sent_at"] += base
    for attempt in rows["attempts"]:
        attempt["started_at"] += base
    for request in rows["requests"]:
        request["updated_at"] += base
    with store.engine.begin() as connection:
        for table, key in ((jobs, "jobs"), (requests, "requests"), (results, "results")):
            connection.execute(insert(table), rows[key])
        connection.execute(insert(attempts), rows["attempts"])
        aggregates.add(connection, rows["results"])  # as the writer keeps them


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=1_000_000, help="requests to create")
    parser.add_argument("--db", default="/tmp/batchrun-synthetic.db", help="SQLite path or URL")
    args = parser.parse_args()
    seconds = build(database_url(args.db), args.results)
    print(f"built {args.results:,} requests in {args.db} in {seconds:.1f}s")


if __name__ == "__main__":
    main()

"""The dashboard at scale: a store of N results (default 1,000,000), the time of each analytics
function over it, and of each dashboard page (first open, which reads the store, and each later
render, which computes from memory), through streamlit's AppTest in this process.

    python bench/dashboard_speed.py [--results 1000000] [--db /tmp/batchrun-synthetic.db]
                                    [--out bench/results/dashboard_speed.md]

The store is made by bench/synthetic_store.py when the file does not exist yet.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import streamlit as st
from streamlit.testing.v1 import AppTest

from batchrun import analytics
from batchrun.store import Store, database_url
from bench.synthetic_store import build

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
PAGES = ("overview", "compare", "outputs", "spend", "batch")


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = action()
    return time.perf_counter() - started, value


def analytics_times(url: str) -> tuple[list[tuple[str, float]], int]:
    store = Store(url)
    batches = [b.as_dict() for b in store.list_batches()]
    read, frame = timed(lambda: analytics.requests_frame(*store.metric_rows(), batches))
    one_batch = frame.filter(pl.col("batch_id") == batches[0]["id"])
    rows = [("read every request and result into the requests frame", read)]
    functions: list[tuple[str, Callable[[], Any]]] = [
        ("model_metrics by model", lambda: analytics.model_metrics(frame)),
        ("model_metrics by day, model", lambda: analytics.model_metrics(frame, ("day", "model"))),
        ("error_breakdown", lambda: analytics.error_breakdown(frame)),
        ("distribution (latency)", lambda: analytics.distribution(frame, "latency_s")),
        ("spend_over_time (hour)", lambda: analytics.spend_over_time(frame, "hour")),
        ("spend (by day)", lambda: analytics.spend(frame, "day")),
        ("budget_use", lambda: analytics.budget_use(batches, frame)),
        ("job_spread (one batch)", lambda: analytics.job_spread(one_batch)),
    ]
    rows += [(name, timed(function)[0]) for name, function in functions]
    store.close()
    return rows, frame.height


def page_times(db: str) -> list[tuple[str, float, float]]:
    os.environ["BATCHRUN_DB"] = db
    st.cache_data.clear()
    st.cache_resource.clear()
    rows = []
    for page in PAGES:
        app = AppTest.from_file(APP, default_timeout=600)
        app.query_params["page"] = page
        first, _ = timed(app.run)
        again, _ = timed(app.run)
        if app.exception:
            raise SystemExit(f"{page}: {[e.value for e in app.exception]}")
        rows.append((page, first, again))
    return rows


def report(
    results: int, db_bytes: int, functions: list[tuple[str, float]], pages: list[Any]
) -> str:
    lines = [
        f"Store: {results:,} requests ({db_bytes / 1e6:,.0f} MB of SQLite, "
        f"{db_bytes / results * 1000 / 1e6:.2f} MB per 1,000 results with their answers); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} when done.",
        "",
        "| analytics step | seconds |",
        "|---|---:|",
        *[f"| {name} | {seconds:.2f} |" for name, seconds in functions],
        "",
        "| page | first open (reads the store) s | each later render s |",
        "|---|---:|---:|",
        *[f"| {page} | {first:.2f} | {again:.2f} |" for page, first, again in pages],
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=1_000_000)
    parser.add_argument("--db", default="/tmp/batchrun-synthetic.db")
    parser.add_argument("--out", default="bench/results/dashboard_speed.md")
    args = parser.parse_args()
    if not Path(args.db).exists():
        print(f"building {args.results:,} requests in {args.db} ...", flush=True)
        build(database_url(args.db), args.results)
    functions, height = analytics_times(database_url(args.db))
    pages = page_times(args.db)
    table = report(height, Path(args.db).stat().st_size, functions, pages)
    Path(args.out).write_text(table)
    print(table)


if __name__ == "__main__":
    main()

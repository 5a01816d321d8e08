"""A 10,000-request batch through `batchrun run` against the simulator: wall time, requests/s, 429s.

The simulator runs in its own process (pinned to core 1 where there are two cores), the runner
is the real CLI in another process. Two settings: time scale 0 with limits out of the way (what
the runner itself can do), and the catalog's rate limits on both sides (no 429 expected).

    python bench/run_10k.py [--requests 10000] [--out bench/results/run_10k.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from batchrun.sim import SimSettings, simulator_process

MODELS = ("MiniMax-M2.7", "MiniMax-M2.7-highspeed", "MiniMax-M3")


def write_jobs(path: Path, count: int) -> None:
    with path.open("wb") as handle:
        for i in range(count):
            job = {
                "custom_id": f"job-{i:06d}",
                "prompt": f"Benchmark question {i}",
                "max_tokens": 300,
            }
            handle.write(orjson.dumps(job) + b"\n")


def run_case(label: str, jobs: int, sim: SimSettings, runner_args: list[str]) -> str:
    with tempfile.TemporaryDirectory() as tmp, simulator_process(sim) as server:
        if server.pid is not None and len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(server.pid, {1})
        work = Path(tmp)
        write_jobs(work / "jobs.jsonl", jobs)
        env = {**os.environ, "MINIMAX_API_KEY": "bench"}
        command = [
            sys.executable, "-m", "batchrun.cli", "run", "jobs.jsonl", "--models", ",".join(MODELS),
            "--base-url", f"{server.base_url}/anthropic", *runner_args,
        ]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{label}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
        with sqlite3.connect(work / "batchrun.db") as db:
            results = db.execute("select count(*) from results").fetchone()[0]
            limited = db.execute("select count(*) from attempts where status = 429").fetchone()[0]
        stats = server.fetch_stats()
    served_429 = sum(model["429"] for model in stats["models"].values())
    rate = results / wall
    return f"| {label} | {results:,} | {wall:.1f} s | {rate:,.0f} | {limited} | {served_429} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/run_10k.md"))
    parser.add_argument("--skip-limited", action="store_true", help="only the time scale 0 case")
    args = parser.parse_args()
    jobs = -(-args.requests // len(MODELS))
    rows = [
        run_case(
            "time scale 0, limits off",
            jobs,
            SimSettings(time_scale=0, limits=False),
            ["--rpm", "1000000", "--tpm", "1000000000000", "--concurrency", "64"],
        )
    ]
    if not args.skip_limited:
        rows.append(
            run_case(
                "time scale 0.05, catalog limits on both sides (RPM 500 / 200)",
                jobs // 10,
                SimSettings(time_scale=0.05),
                [],
            )
        )
    lines = [
        f"`batchrun run` of {jobs:,} jobs x {len(MODELS)} models against the simulator "
        f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}).",
        "",
        "| case | results | wall time | requests/s | 429s recorded | 429s served |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

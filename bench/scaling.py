"""Latency-bound scaling: `batchrun run` throughput against concurrency at a realistic pace.

The simulator (its own process, core 1, limits off) answers at MiniMax's real pace by default
(time scale 1): 300-token answers of about 5 s. The runner's limits are out of the way, so the
only bound is latency: the ideal throughput is concurrency / unloaded latency (measured first, at
concurrency 4). Throughput is counted over the whole run, from the first request sent to the
last answer, so the ramp and the last wave's stragglers count against it (more --waves, less of
that). Target: achieved / ideal >= 0.95 up to the point where a rate limit binds (none here).

    python bench/scaling.py [--concurrency 16,64,256,1024] [--waves 4] [--time-scale 1]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from outfile import add_out, check_new, write_table
from procstat import cpu_seconds, load, machine, pin
from runcli import run_batchrun, write_jobs

from batchrun.sim import RunningSimulator, SimSettings, simulator_process

MODEL = "MiniMax-M2.7"
TOKENS = 300


@dataclass(frozen=True)
class Point:
    runner_cpu: float  # seconds
    server_cpu: float
    mean_latency: float
    rate: float  # answers per second over the whole run
    measured: float  # seconds from the first request sent to the last answer


def run_at(server: RunningSimulator, concurrency: int, requests: int) -> Point:
    """One `batchrun run` of ``requests`` at ``concurrency``."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_jobs(work / "jobs.jsonl", requests, max_tokens=TOKENS)
        args = ["--models", MODEL, "--concurrency", str(concurrency), "--no-precheck"]
        before = cpu_seconds(server.pid) if server.pid else 0.0
        run = run_batchrun(
            work,
            f"{server.base_url}/anthropic",
            [*args, "--rpm", "10000000", "--tpm", "10000000000000"],
        )
        served = (cpu_seconds(server.pid) if server.pid else 0.0) - before
        mean, rate, measured = latency_and_rate(work / "batchrun.db")
    return Point(run.cpu, served, mean, rate, measured)


def latency_and_rate(db: Path) -> tuple[float, float, float]:
    """(mean latency, answers/s, seconds) from a run's results, over the whole run.

    From the first request sent to the last answer: the ramp and the last wave's stragglers
    count against the runner, so the figure errs low, never high.
    """
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select sent_at, done_s from results").fetchall()
    mean = sum(done for _, done in rows) / len(rows)
    span = max(sent + done for sent, done in rows) - min(sent for sent, _ in rows)
    return mean, len(rows) / span, span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="16,64,256,1024")
    parser.add_argument("--waves", type=int, default=4, help="requests = waves x concurrency")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--tick", type=float, default=0.05, help="simulator write interval")
    add_out(parser, Path("bench/results/scaling.md"))
    args = parser.parse_args()
    check_new(args.out, force=args.force)
    sim = SimSettings(
        time_scale=args.time_scale, limits=False, output_median=10**6, seed=1, tick=args.tick
    )
    rows = []
    with simulator_process(sim) as server:
        pin(server.pid, 1)
        nominal = run_at(server, 4, 12).mean_latency
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            requests = args.waves * concurrency
            point = run_at(server, concurrency, requests)
            ideal = concurrency / nominal
            rows.append(
                f"| {concurrency:,} | {requests:,} | {point.rate:,.1f}/s over "
                f"{point.measured:.0f} s | {ideal:,.1f}/s | {point.rate / ideal:.2f} | "
                f"{point.mean_latency:.2f} s | {1000 * point.runner_cpu / requests:.1f} ms | "
                f"{1000 * point.server_cpu / requests:.1f} ms | {load()} |"
            )
    write_table(
        args.out,
        [
            f"Latency-bound scaling ({machine()}): `batchrun run` on {MODEL}, {TOKENS}-token "
            f"streamed answers at time scale {args.time_scale:g} (simulator writes every "
            f"{args.tick:g} s), limits out of the way. Unloaded latency {nominal:.2f} s.",
            "",
            "| concurrency | requests | achieved | ideal (concurrency / latency) "
            "| achieved / ideal | mean latency | runner CPU per request "
            "| simulator CPU per request | load |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ],
        force=args.force,
    )


if __name__ == "__main__":
    main()

"""A 10,000-request batch through `batchrun run` against the simulator: wall time, requests/s, 429s.

The simulator runs in its own process (pinned to core 1 where there are two cores), the runner
is the real CLI in another process. Two settings: time scale 0 with limits out of the way (what
the runner itself can do), and the catalog's rate limits on both sides (no 429 expected).

    python bench/run_10k.py [--requests 10000] [--out bench/results/run_10k.md]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from outfile import add_out, check_new, write_table
from procstat import load, machine, pin
from runcli import run_batchrun, write_jobs

from batchrun.sim import SimSettings, simulator_process

MODELS = ("MiniMax-M2.7", "MiniMax-M2.7-highspeed", "MiniMax-M3")


def run_case(label: str, jobs: int, sim: SimSettings, runner_args: list[str]) -> str:
    with tempfile.TemporaryDirectory() as tmp, simulator_process(sim) as server:
        pin(server.pid, 1)
        work = Path(tmp)
        write_jobs(work / "jobs.jsonl", jobs)
        run = run_batchrun(
            work, f"{server.base_url}/anthropic", ["--models", ",".join(MODELS), *runner_args]
        )
        stats = server.fetch_stats()
    served_429 = sum(model["429"] for model in stats["models"].values())
    rate = run.results / run.wall
    return (
        f"| {label} | {run.results:,} | {run.wall:.1f} s | {rate:,.0f} | {run.limited} | "
        f"{served_429} | {load()} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    add_out(parser, Path("bench/results/run_10k.md"))
    parser.add_argument("--skip-limited", action="store_true", help="only the time scale 0 case")
    args = parser.parse_args()
    check_new(args.out, force=args.force)
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
        f"({machine()}).",
        "",
        "| case | results | wall time | requests/s | 429s recorded | 429s served | load |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    write_table(args.out, lines, force=args.force)


if __name__ == "__main__":
    main()

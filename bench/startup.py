"""Fixed costs of the CLI as whole processes, start-up and imports included.

Each command runs ``--runs`` times as a fresh ``python -m batchrun.cli`` process on core 0: CPU is
user plus system time of the process and of the children it waited for (``wait4``; for ``run``
that includes its built-in simulator), wall is start to exit. The commands: ``--help``; ``status``
and ``results`` on a small synthetic store (2 batches, about 200 results); a 6-request ``run`` on
the built-in simulator at time scale 0 (no API key), each in a fresh directory.

    python bench/startup.py [--runs 5] [--out bench/results/startup.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from outfile import add_out, check_new, write_table
from procstat import load, machine
from runcli import Finished, run_measured, write_jobs
from synthetic_store import build

from batchrun.store import database_url

RESULTS = Path(__file__).with_name("results")


def environment() -> dict[str, str]:
    """This environment without an API key or a database, so ``run`` uses the simulator."""
    hidden = ("MINIMAX_API_KEY", "ANTHROPIC_API_KEY", "BATCHRUN_DB")
    return {k: v for k, v in os.environ.items() if k not in hidden}


def measure(label: str, args: Sequence[str], runs: int, work: Path) -> list[Finished]:
    """``batchrun ARGS`` ``runs`` times; ``run`` gets a fresh directory each time."""
    finished = []
    for n in range(runs):
        cwd = work
        if args[0] == "run":
            cwd = work / f"{label}-{n}"
            cwd.mkdir()
            write_jobs(cwd / "jobs.jsonl", 6, max_tokens=200)
        done = run_measured(
            [sys.executable, "-m", "batchrun.cli", *args], cwd=cwd, env=environment()
        )
        if done.code != 0:
            raise SystemExit(f"batchrun {' '.join(args)}: exit {done.code}\n{done.output[-3000:]}")
        finished.append(done)
    return finished


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    add_out(parser, RESULTS / "startup.md")
    args = parser.parse_args()
    check_new(args.out, force=args.force)
    cases = [
        ("--help", ["--help"]),
        ("status", ["status", "--db", "small.db"]),
        ("results", ["results", "synthetic0001", "--db", "small.db", "-o", "out.jsonl"]),
        (
            "run",
            ["run", "jobs.jsonl", "--models", "MiniMax-M2.7", "--sim-time-scale", "0", "--yes"],
        ),
    ]
    lines = [
        f"# CLI start-up and fixed costs ({time.strftime('%Y-%m-%d')}, {machine()}, {load()})",
        "",
        f"Whole processes, {args.runs} runs each: min / median / max seconds.",
        "",
        "| command | CPU (user+sys, with children) | wall |",
        "|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build(database_url(str(work / "small.db")), 200, batch_count=2)
        for label, command in cases:
            finished = measure(label, command, args.runs, work)
            cpu = spread([f.cpu for f in finished])
            wall = spread([f.wall for f in finished])
            lines.append(f"| `batchrun {' '.join(command)}` | {cpu} | {wall} |")
    lines += ["", f"Load after the runs: {load()}."]
    write_table(args.out, lines, force=args.force)


if __name__ == "__main__":
    main()

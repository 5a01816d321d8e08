"""Scale: a large job file (1,000,000 lines by default) through `batchrun run` at time scale 0.

Reports the time until the batch is parsed and enqueued (the CLI's "Batch ..." line, Python's
start included), until sending began (after the cost estimate), the whole run's wall time, the
runner's peak resident memory (wait4; target < 300 MB) and the SQLite database's size per 1,000
results. Short answers (16 tokens) keep a million requests short; --send-seconds interrupts the
run (as Ctrl-C) that long after sending began, for a file too large to finish in the time at
hand. "Per 1,000 results" counts the pages of the results and attempts tables and their indexes
(SQLite's dbstat), over the results stored. The simulator runs on core 1, the runner on core 0.

    python bench/scale.py [--lines 1000000] [--tokens 16] [--concurrency 256]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from outfile import add_out, check_new, write_table
from procstat import load, machine, pin
from runcli import run_batchrun, table_bytes, write_jobs

from batchrun.sim import SimSettings, simulator_process

MODEL = "MiniMax-M2.7"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--tokens", type=int, default=16, help="streamed tokens per answer")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument(
        "--send-seconds",
        type=float,
        help="interrupt the run (Ctrl-C) this long after sending began; default: run every line",
    )
    add_out(parser, Path("bench/results/scale.md"))
    args = parser.parse_args()
    check_new(args.out, force=args.force)
    sim = SimSettings(time_scale=0, limits=False, output_median=10**6, seed=1)
    with tempfile.TemporaryDirectory() as tmp, simulator_process(sim) as server:
        pin(server.pid, 1)
        work = Path(tmp)
        started = time.perf_counter()
        write_jobs(work / "jobs.jsonl", args.lines, max_tokens=args.tokens)
        written = time.perf_counter() - started
        size = (work / "jobs.jsonl").stat().st_size
        flags = ["--models", MODEL, "--concurrency", str(args.concurrency), "--no-precheck"]
        run = run_batchrun(
            work,
            f"{server.base_url}/anthropic",
            [*flags, "--rpm", "1000000000", "--tpm", "10000000000000"],
            stop_after=args.send_seconds,
        )
        stored = table_bytes(work / "batchrun.db", ["results", "attempts"])
    per_result = stored / max(run.results, 1) * 1000
    loaded = f"{run.loaded:.1f} s" if run.loaded is not None else "not seen"
    sending = f"{run.sending:.1f} s" if run.sending is not None else "not seen"
    per_1000 = f"{per_result / 1e6:.2f} MB" if run.results else "-"
    write_table(
        args.out,
        [
            f"Scale ({machine()}): a {args.lines:,}-line job file ({size / 1e6:.0f} MB, written "
            f"in {written:.0f} s) through `batchrun run` on {MODEL}, {args.tokens}-token "
            f"answers, time scale 0, concurrency {args.concurrency}, no pre-check.",
            "",
            "| lines | parsed and enqueued | sending from | results | whole run | peak RSS "
            "| database | results + attempts per 1,000 results | load |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {args.lines:,} | {loaded} | {sending} | {run.results:,} | {run.wall:.0f} s | "
            f"{run.max_rss_mb:.0f} MB | {run.db_bytes / 1e6:.0f} MB | {per_1000} | {load()} |",
        ],
        force=args.force,
    )


if __name__ == "__main__":
    main()

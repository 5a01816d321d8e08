"""CPU per request of the `batchrun run` process, and where it goes (py-spy).

Runs the real CLI against the simulator at time scale 0 (simulator on core 1, runner on core 0),
limits out of the way, and reads the runner's CPU time with wait4 (getrusage of that process).
A small run is subtracted from a large one, so Python's start and imports are left out: what
remains is the marginal CPU per request. With --profile a third run, as large, is sampled by
py-spy and the functions with the most CPU (self time) are listed. --code DIR runs another
checkout's batchrun (for example an older commit) for a before/after comparison.

    python bench/cpu_per_request.py [--requests 3000] [--tokens 300] [--profile] [--code DIR]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
from pathlib import Path

from outfile import add_out, check_new, write_table
from procstat import load, machine, pin
from runcli import RunOutcome, run_batchrun, write_jobs

from batchrun.sim import SimSettings, simulator_process

MODEL = "MiniMax-M2.7"
SMALL = 50


def run(base_url: str, requests: int, args: argparse.Namespace, wrap: list[str]) -> RunOutcome:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_jobs(work / "jobs.jsonl", requests, max_tokens=args.tokens)
        flags = ["--models", MODEL, "--concurrency", "64", "--rpm", "10000000"]
        flags += ["--tpm", "10000000000000", *([] if args.precheck else ["--no-precheck"])]
        return run_batchrun(work, base_url, flags, code=args.code, wrap=wrap)


def summarize(raw: Path, top: int) -> list[str]:
    """The functions with the most self time in py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frame = stack.rsplit(";", 1)[-1]
        name, _, where = frame.partition(" (")
        place = where.rsplit(":", 1)[0].rsplit("site-packages/", 1)[-1]
        own[f"{name} ({place})"] += int(count)
        total += int(count)
    return [f"| {share / total:.1%} | `{name}` |" for name, share in own.most_common(top)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--tokens", type=int, default=300, help="streamed tokens per answer")
    parser.add_argument("--precheck", action="store_true", help="count_tokens before each call")
    parser.add_argument("--profile", action="store_true", help="sample the large run (py-spy)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--code", type=Path, help="run this checkout's batchrun instead")
    add_out(parser, Path("bench/results/cpu_per_request.md"))
    args = parser.parse_args()
    check_new(args.out, force=args.force)
    sim = SimSettings(time_scale=0, limits=False, output_median=10**6, seed=1)
    with simulator_process(sim) as server, tempfile.TemporaryDirectory() as tmp:
        pin(server.pid, 1)
        url = f"{server.base_url}/anthropic"
        small = run(url, SMALL, args, [])
        large = run(url, args.requests, args, [])
        raw = Path(tmp) / "profile.txt"
        if args.profile:  # a separate run: py-spy's own CPU would count in wait4's figures
            spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            run(
                url,
                args.requests,
                args,
                [spy, "record", "-r", "250", "--format", "raw", "-o", str(raw), "--"],
            )
        marginal = (large.cpu - small.cpu) / (args.requests - SMALL)
        lines = [
            f"CPU of the `batchrun run` process ({machine()}): {args.requests:,} requests of "
            f"{args.tokens} streamed tokens at time scale 0, concurrency 64, "
            f"{'with' if args.precheck else 'without'} the count_tokens pre-check, code: "
            f"{args.code or 'this checkout'}.",
            "",
            "| requests | CPU | CPU per request (marginal) | peak RSS | requests/s | load |",
            "|---|---|---|---|---|---|",
            f"| {SMALL} | {small.cpu:.2f} s | - | {small.max_rss_mb:.0f} MB | - | - |",
            f"| {args.requests:,} | {large.cpu:.2f} s | {1000 * marginal:.2f} ms | "
            f"{large.max_rss_mb:.0f} MB | {large.results / large.wall:,.0f} | {load()} |",
        ]
        if args.profile:
            lines += ["", "Self time by function (py-spy, the large run):", ""]
            lines += ["| share | function |", "|---|---|", *summarize(raw, args.top)]
    write_table(args.out, lines, force=args.force)


if __name__ == "__main__":
    main()

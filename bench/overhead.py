"""Overhead of `batchrun run` against the bare SDK: the same requests, run alternately.

(a) bench/bare_sdk.py, the script a user would write (AsyncAnthropic, semaphore, gather,
streaming, nothing stored), on the SDK's default transport and on its aiohttp transport;
(b) the real `batchrun run` CLI with storage on and limits out of the way (--rpm/--tpm far above
the load, --no-precheck so that both send exactly one call per job). The simulator runs at time
scale 0 on core 1, each client in its own process on core 0. Requests/s count from the first
request sent to the last answer (Python's start and imports left out for both). Ratio = batchrun /
bare SDK requests/s, taken within one round; the table gives the median over rounds.

    python bench/overhead.py [--requests 3000] [--concurrency 16,64,256] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from outfile import add_out, check_new, write_table
from procstat import load, machine, pin
from runcli import run_batchrun, send_span, write_jobs

from batchrun.sim import SimSettings, simulator_process

MODEL = "MiniMax-M2.7"
BARE = Path(__file__).with_name("bare_sdk.py")


def bare(work: Path, base_url: str, concurrency: int, aiohttp: bool) -> float:
    """Seconds the hand-written script took to send everything."""
    command = [sys.executable, str(BARE), "jobs.jsonl", base_url, MODEL, str(concurrency)]
    with subprocess.Popen(
        [*command, *(["--aiohttp"] if aiohttp else [])],
        cwd=work,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        pin(child.pid, 0)
        said, _ = child.communicate()
    if child.returncode != 0 or not said.startswith("sending took"):
        raise SystemExit(f"bare_sdk.py failed: {said}")
    return float(said.split()[2])


def ours(work: Path, base_url: str, concurrency: int) -> float:
    """Seconds `batchrun run` took from its first request sent to its last answer."""
    for old in work.glob("batchrun.db*"):
        old.unlink()
    args = ["--models", MODEL, "--concurrency", str(concurrency), "--no-precheck"]
    run_batchrun(work, base_url, [*args, "--rpm", "10000000", "--tpm", "10000000000000"])
    return send_span(work / "batchrun.db")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", default="16,64,256")
    parser.add_argument("--rounds", type=int, default=2)
    add_out(parser, Path("bench/results/overhead.md"))
    args = parser.parse_args()
    check_new(args.out, force=args.force)
    rows = []
    sim = SimSettings(time_scale=0, limits=False, seed=1)
    with tempfile.TemporaryDirectory() as tmp, simulator_process(sim) as server:
        pin(server.pid, 1)
        work, url = Path(tmp), f"{server.base_url}/anthropic"
        write_jobs(work / "jobs.jsonl", args.requests)
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            rates: dict[str, list[float]] = {"sdk": [], "aio": [], "ours": []}
            ratios: list[float] = []
            for _ in range(args.rounds):
                walls = {
                    "sdk": bare(work, url, concurrency, aiohttp=False),
                    "aio": bare(work, url, concurrency, aiohttp=True),
                    "ours": ours(work, url, concurrency),
                }
                for key, wall in walls.items():
                    rates[key].append(args.requests / wall)
                ratios.append(walls["aio"] / walls["ours"])
            cells = [f"{statistics.median(rates[k]):,.0f}" for k in ("sdk", "aio", "ours")]
            sdk_ratio = statistics.median(
                s / o for s, o in zip(rates["ours"], rates["sdk"], strict=True)
            )
            rows.append(
                f"| {concurrency} | {' | '.join(cells)} | {sdk_ratio:.2f} | "
                f"{statistics.median(ratios):.2f} | {load()} |"
            )
    write_table(
        args.out,
        [
            f"Overhead against the bare SDK ({machine()}): {args.requests:,} requests of "
            f"about 300 streamed tokens, time scale 0, {args.rounds} alternating rounds "
            "(medians; requests/s from the first request sent to the last answer).",
            "",
            "| concurrency | bare SDK (default transport) | bare SDK (aiohttp) | `batchrun run` "
            "| ratio vs default SDK | ratio vs SDK on aiohttp | load |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ],
        force=args.force,
    )


if __name__ == "__main__":
    main()

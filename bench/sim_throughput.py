"""How many requests per second the simulator serves, streamed and not, at time scale 0.

The simulator runs as its own process pinned to core 1; the load comes from this process on
core 0 through bare aiohttp (the cheapest Python client, so that the server is what is measured).
The table also shows the server's CPU per request and how busy each core was: whichever side is
near 100% set the pace. 1000 / (server CPU per request) is what the simulator could serve with a
faster client.

    python bench/sim_throughput.py [--rounds 2] [--concurrency 64] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from outfile import add_out, check_new, write_table
from procstat import cpu_seconds
from simload import drive

from batchrun.sim import SimSettings, simulator_process
from batchrun.sim.loop import run_fast

MODEL = "MiniMax-M3"

CASES = [  # (label, stream, answer tokens, requests per round)
    ("non-streamed, 20 tokens", False, 20, 6000),
    ("streamed, 20 deltas", True, 20, 4000),
    ("streamed, 500 deltas", True, 500, 1200),
    ("streamed, 2000 deltas", True, 2000, 400),
]


@dataclass
class Measure:
    requests_per_s: float
    server_cpu_ms: float
    server_busy: float
    client_busy: float


def measure(case: tuple[str, bool, int, int], concurrency: int) -> Measure:
    _, stream, tokens, count = case
    settings = SimSettings(time_scale=0, limits=False, output_median=1_000_000, seed=1)
    with simulator_process(settings) as sim:
        assert sim.pid is not None
        os.sched_setaffinity(sim.pid, {1})
        url = f"{sim.base_url}/v1/messages"
        run_fast(
            drive(
                url,
                model=MODEL,
                tokens=tokens,
                count=min(200, count),
                concurrency=concurrency,
                stream=stream,
            )
        )  # warm-up
        before, client_before = cpu_seconds(sim.pid), cpu_seconds(os.getpid())
        wall = run_fast(
            drive(
                url, model=MODEL, tokens=tokens, count=count, concurrency=concurrency, stream=stream
            )
        )
        used = cpu_seconds(sim.pid) - before
        client = cpu_seconds(os.getpid()) - client_before
    return Measure(count / wall, 1000 * used / count, used / wall, client / wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    add_out(parser, Path("bench/results/sim_throughput.md"))
    args = parser.parse_args()
    check_new(args.out, force=args.force)
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs 2 cores: one for the simulator, one for the load")
    os.sched_setaffinity(0, {0})
    lines = [
        f"Simulator throughput at time scale 0, concurrency {args.concurrency}, "
        f"{args.rounds} rounds ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}).",
        "",
        "| case | requests/s (each round) | server CPU per request | server core busy "
        "| client core busy |",
        "|---|---|---|---|---|",
    ]
    for case in CASES:
        rounds = [measure(case, args.concurrency) for _ in range(args.rounds)]
        rates = " / ".join(f"{m.requests_per_s:,.0f}" for m in rounds)
        cpu = min(m.server_cpu_ms for m in rounds)
        busy = max(m.server_busy for m in rounds)
        client = max(m.client_busy for m in rounds)
        lines.append(f"| {case[0]} | {rates} | {cpu:.2f} ms | {busy:.0%} | {client:.0%} |")
        print(lines[-1], flush=True)
    write_table(args.out, lines, force=args.force)


if __name__ == "__main__":
    main()

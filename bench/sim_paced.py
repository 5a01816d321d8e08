"""The simulator's CPU per event written at real pace: many streams at time scale 1.

bench/sim_throughput.py measures time scale 0, where a whole answer goes out in one write; at
MiniMax's full rate (time scale 1, ~1,100 streams at 60-100 tokens/s) each token is one write
and what a write costs the simulator is what limits it. Here bare aiohttp keeps --concurrency
streams open (answers capped at --tokens) until --requests have ended, and the table gives the
simulator's CPU per output token served (every stream ends, so every token counted was written).
With --compare DIR the same rounds also run a simulator from the source tree DIR (e.g. an older
commit's `batchrun/`, unpacked with `git archive COMMIT batchrun | tar -x -C DIR`), alternating,
so that both are measured under the same machine load; --processes N adds rounds of this tree's
simulator on N processes (`batchrun sim --processes N`).

    python bench/sim_paced.py [--rounds 2] [--concurrency 400] [--requests 1200] [--compare DIR]
        [--processes N]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from full_rate import tree_cpu
from outfile import add_out, check_new, write_table
from procstat import load, machine
from simload import drive

from batchrun.sim import SimSettings, simulator_process
from batchrun.sim.loop import run_fast

MODEL = "MiniMax-M2.7"


def served_tokens(stats: dict[str, object]) -> int:
    models = stats["models"]
    assert isinstance(models, dict)
    return sum(int(m.get("output_tokens", 0)) for m in models.values())


def one_round(
    source: Path | None, processes: int, args: argparse.Namespace
) -> tuple[float, float, float]:
    """(simulator CPU µs per token, tokens written per second, simulator CPU share of a core);
    the CPU is that of the simulator's whole process tree (its workers with --processes)."""
    if source is not None:
        os.environ["PYTHONPATH"] = str(source)
    try:
        settings = SimSettings(
            time_scale=1.0, limits=False, seed=1, output_median=10_000, processes=processes
        )
        with simulator_process(settings) as sim:
            assert sim.pid is not None
            url = f"{sim.base_url}/anthropic/v1/messages"
            before, tokens_before = tree_cpu(sim.pid), served_tokens(sim.fetch_stats())
            started = time.monotonic()
            run_fast(
                drive(
                    url,
                    model=MODEL,
                    tokens=args.tokens,
                    count=args.requests,
                    concurrency=args.concurrency,
                )
            )
            wall = time.monotonic() - started
            used = tree_cpu(sim.pid) - before
            tokens = served_tokens(sim.fetch_stats()) - tokens_before
    finally:
        os.environ.pop("PYTHONPATH", None)
    return 1e6 * used / tokens, tokens / wall, used / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=400)
    parser.add_argument("--requests", type=int, default=1200)
    parser.add_argument("--tokens", type=int, default=300, help="max_tokens of each answer")
    parser.add_argument("--compare", type=Path, default=None, help="another source tree")
    parser.add_argument(
        "--processes", type=int, default=1, help="also this tree's simulator on N processes"
    )
    add_out(parser, Path("bench/results/sim_paced.md"))
    args = parser.parse_args()
    check_new(args.out, force=args.force)
    before = load()
    sources: list[tuple[str, Path | None, int]] = [("this tree", None, 1)]
    if args.compare is not None:
        sources.append((str(args.compare), args.compare.resolve(), 1))
    if args.processes > 1:
        sources.append((f"this tree, --processes {args.processes}", None, args.processes))
    found: dict[str, list[tuple[float, float, float]]] = {label: [] for label, _, _ in sources}
    for _ in range(args.rounds):
        for label, source, processes in sources:
            found[label].append(one_round(source, processes, args))
            print(label, found[label][-1], flush=True)
    lines = [
        f"Simulator at real pace ({machine()}, {before} before, {load()} after): "
        f"{args.concurrency} streams at a time, {args.requests} answers of up to {args.tokens} "
        f"tokens, time scale 1, {args.rounds} rounds. Command: `python bench/sim_paced.py "
        f"--rounds {args.rounds} --concurrency {args.concurrency} --requests {args.requests}"
        f"{' --compare DIR' if args.compare else ''}"
        f"{f' --processes {args.processes}' if args.processes > 1 else ''}`.",
        "",
        "| simulator | CPU per token written, each round | tokens/s | simulator core busy |",
        "|---|---|---|---|",
    ]
    for label, rounds in found.items():
        cpu = " / ".join(f"{r[0]:.1f} µs" for r in rounds)
        rate = " / ".join(f"{r[1]:,.0f}" for r in rounds)
        busy = " / ".join(f"{r[2]:.0%}" for r in rounds)
        lines.append(f"| {label} | {cpu} | {rate} | {busy} |")
    write_table(args.out, lines, force=args.force)


if __name__ == "__main__":
    main()

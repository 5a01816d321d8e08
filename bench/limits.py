"""Rate-limit adherence: `batchrun run` and the simulator set to the same limit, sustained.

Two cases, each a real `batchrun run` against the simulator (its own process, core 1), with
enough jobs to keep the limit binding for the whole measured window:
- RPM: both sides at the same requests per minute (MiniMax-M2.7's 500 by default);
- TPM: both sides at the same tokens per minute, requests per minute out of the way, answers
  that always reach max_tokens (so the runner's worst case, input + max_tokens, is what is used).
The achieved rate is counted over a sustained window (default 60 s, after a 5 s start), from the
attempts' send times; the simulator refuses over its own 60 s sliding window. Target: achieved /
limit >= 0.97 with zero 429s.

    python bench/limits.py [--rpm 500] [--tpm 30000] [--window 60]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
from pathlib import Path

from outfile import add_out, check_new, write_table
from procstat import load, machine, pin
from runcli import run_batchrun, write_jobs

from batchrun.sim import SimSettings, simulator_process

MODEL = "MiniMax-M2.7"
WARM = 5.0  # seconds left out at the start
MAX_TOKENS = 200


def window_usage(db: Path, window: float) -> tuple[int, int]:
    """(attempts sent, tokens of the results sent) within [first send + WARM, + window]."""
    with sqlite3.connect(db) as conn:
        first = conn.execute("select min(started_at) from attempts").fetchone()[0]
        start, end = first + WARM, first + WARM + window
        sent = conn.execute(
            "select count(*) from attempts where started_at >= ? and started_at < ?", (start, end)
        ).fetchone()[0]
        tokens = conn.execute(
            "select coalesce(sum(input_tokens + output_tokens), 0) from results "
            "where sent_at >= ? and sent_at < ?",
            (start, end),
        ).fetchone()[0]
    return int(sent), int(tokens)


def case(
    label: str,
    *,
    limit: int,
    kind: str,
    jobs: int,
    sim: SimSettings,
    args: list[str],
    window: float,
) -> str:
    with tempfile.TemporaryDirectory() as tmp, simulator_process(sim) as server:
        pin(server.pid, 1)
        work = Path(tmp)
        write_jobs(work / "jobs.jsonl", jobs, max_tokens=MAX_TOKENS)
        run = run_batchrun(work, f"{server.base_url}/anthropic", ["--models", MODEL, *args])
        served_429 = sum(model["429"] for model in server.fetch_stats()["models"].values())
        sent, tokens = window_usage(work / "batchrun.db", window)
    per_minute = (sent if kind == "RPM" else tokens) * 60 / window
    return (
        f"| {label} | {limit:,} {kind} | {per_minute:,.0f} {kind} | {per_minute / limit:.3f} | "
        f"{run.results:,} in {run.wall:.0f} s | {run.limited} | {served_429} | {load()} |"
    )


def sim_at(rpm: dict[str, int], tpm: dict[str, int]) -> SimSettings:
    """The simulator at these limits: answers always reach max_tokens, 20x faster than real."""
    return SimSettings(rpm=rpm, tpm=tpm, time_scale=0.05, output_median=10**6, seed=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpm", type=int, default=500)
    parser.add_argument("--tpm", type=int, default=30_000)
    parser.add_argument("--window", type=float, default=60.0, help="measured seconds")
    add_out(parser, Path("bench/results/limits.md"))
    args = parser.parse_args()
    check_new(args.out, force=args.force)
    span = WARM + args.window + 5  # minutes of work: the window, its start and some to spare
    rpm_row = case(
        "requests per minute",
        limit=args.rpm,
        kind="RPM",
        jobs=int(args.rpm * span / 60),
        sim=sim_at({MODEL: args.rpm}, {MODEL: 10**12}),
        args=["--rpm", str(args.rpm), "--tpm", "10000000000000"],
        window=args.window,
    )
    per_request = MAX_TOKENS + 20  # output reaches max_tokens; the prompt is about 15 tokens
    tpm_row = case(
        "tokens per minute",
        limit=args.tpm,
        kind="TPM",
        jobs=int(args.tpm / per_request * span / 60),
        sim=sim_at({MODEL: 10**7}, {MODEL: args.tpm}),
        args=["--rpm", "10000000", "--tpm", str(args.tpm)],
        window=args.window,
    )
    write_table(
        args.out,
        [
            f"Rate-limit adherence ({machine()}): `batchrun run` and the simulator at the same "
            f"limit on {MODEL}, {MAX_TOKENS}-token answers at time scale 0.05, measured over "
            f"{args.window:g} s after a {WARM:g} s start.",
            "",
            "| limit | set | achieved | achieved / limit | results | 429s recorded "
            "| 429s served | load |",
            "|---|---|---|---|---|---|---|---|",
            rpm_row,
            tpm_row,
        ],
        force=args.force,
    )


if __name__ == "__main__":
    main()

"""Full rate at real pace (issue 19): every catalog model at its published RPM, time scale 1.

One real `batchrun run` (pinned to core 0; with --processes, not pinned) against the simulator
(its own process, pinned to core 1), both at the
catalog's limits (500 RPM per M2.x model, 200 for M3: about 62 requests/s), with answers of about
TOKENS tokens at the catalog's 60-100 tokens/s (about 1,000 streams in flight), for --seconds;
then the run is interrupted (as Ctrl-C). Reported:
- achieved RPM / limit per model over the steady part (from WARM s after the first send to the
  stop), from the attempts' send times; 429s the runner recorded and the simulator served;
- CPU of each process as a share of one core over the run, the runner's peak RSS;
- the timing error: the simulator's --timing-log says when it wrote each stream's first content
  token and last byte; against it, p50/p99 of (stored TTFT - true TTFT) and of (stored done -
  true last byte), results matched by message id;
- the event loops' lag (p50/p99/max) of the runner and of the simulator, from bench/lagprobe
  (batchrun's own LoopLag, waking every 10 ms, every lateness kept).

With --sim-processes N the simulator serves from N worker processes on one port (`batchrun sim
--processes N`; the limits still hold across them) and nothing is pinned; its CPU is that of the
whole process tree.

    python bench/full_rate.py [--seconds 180] [--quick] [--processes N] [--sim-processes N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import quantiles

import orjson
from outfile import add_out, check_new, write_table
from procstat import cpu_seconds, load, machine, pin
from runcli import RunOutcome, run_batchrun, write_jobs

from batchrun.catalog import load_catalog
from batchrun.sim import RunningSimulator, SimSettings, simulator_process
from batchrun.sim.timing import read_timing_log

TOKENS = 1000  # median answer: 10-17 s at 60-100 tokens/s, so ~1,000 streams in flight
MAX_TOKENS = 1500
WARM = 20.0  # seconds after the first send left out of the steady part
PROBE = Path(__file__).parent / "lagprobe"


@dataclass(frozen=True)
class Measured:
    run: RunOutcome
    sim_cpu: float
    served_429: int | None
    served_tokens: int | None  # output tokens of the replies served to their end
    rates: dict[str, float]  # achieved RPM per model over the steady part
    ttft_errors: list[float]
    done_errors: list[float]
    matched: int
    lags: dict[str, list[float]]  # lateness samples of each process's loop, by role


def catalog_rpm() -> dict[str, int]:
    """Each catalog model's published requests per minute."""
    return {m.name: m.rpm for m in load_catalog() if m.rpm}


def steady_rates(db: Path, seconds: float) -> dict[str, float]:
    """Requests per minute sent per model, from WARM s after the first send to the stop."""
    with sqlite3.connect(db) as conn:
        first = conn.execute("select min(started_at) from attempts").fetchone()[0]
        start, end = first + WARM, first + seconds
        rows = conn.execute(
            "select model, count(*) from attempts where started_at >= ? and started_at < ? "
            "group by model",
            (start, end),
        ).fetchall()
    return {model: count * 60 / (end - start) for model, count in rows}


def timing_errors(db: Path, log: Path) -> tuple[list[float], list[float], int]:
    """(stored TTFT - true TTFT, stored done - true last byte) for every result in the log."""
    truth = read_timing_log(log)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select message, sent_at, first_token_s, done_s from results")
        ttft, done = [], []
        for message, sent_at, first_s, done_s in rows:
            true = truth.get(orjson.loads(message)["id"])
            if true is None or true["first_token"] is None or first_s is None:
                continue
            ttft.append(first_s - (true["first_token"] - sent_at))
            done.append(done_s - (true["last_byte"] - sent_at))
    return ttft, done, len(ttft)


def read_lags(folder: Path) -> dict[str, list[float]]:
    """The probe's lateness samples, by role: 'runner' (batchrun.cli) or 'simulator'."""
    lags: dict[str, list[float]] = {}
    for path in folder.glob("lag-*.json"):
        record = orjson.loads(path.read_bytes())
        sim = any("batchrun.sim" in a or "batchrun/sim/" in a for a in record["argv"])
        role = "simulator" if sim else "runner"
        lags.setdefault(role, []).extend(record["late"])
    return lags


def record_profile(work: Path, out: Path, seconds: float) -> None:
    """py-spy's collapsed stacks of the runner in ``work`` while it sends (it must be on PATH)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = [p for p in Path("/proc").glob("[0-9]*") if _runs_in(p, work)]
        if pids and (work / "batchrun.db").exists():
            break
        time.sleep(0.2)
    else:
        return
    time.sleep(WARM)  # the steady part only
    span = str(int(seconds - WARM))
    command = ["py-spy", "record", "--pid", pids[0].name, "--duration", span, "--rate", "50",
               "--nonblocking", "--format", "raw", "--output", str(out)]  # fmt: skip
    subprocess.run(command, check=False, capture_output=True)


def _runs_in(proc: Path, work: Path) -> bool:
    """Whether /proc/PID is a batchrun.cli process with ``work`` as its directory."""
    try:
        return proc.joinpath("cwd").resolve() == work.resolve() and b"batchrun.cli" in (
            proc.joinpath("cmdline").read_bytes()
        )
    except OSError:
        return False


def served_counts(server: RunningSimulator) -> tuple[int, int] | None:
    """(429s, output tokens of finished replies) the simulator served; None if it is too busy
    to say (its stats time out)."""
    for _ in range(3):
        with contextlib.suppress(TimeoutError, OSError):
            models = server.fetch_stats()["models"].values()
            return sum(m["429"] for m in models), sum(m.get("output_tokens", 0) for m in models)
    return None


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and every live process below it (a simulator and its workers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            parents[int(entry.name)] = int(
                (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            )
    tree, grew = {pid}, True
    while grew:
        below = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    total = 0.0
    for member in tree:
        with contextlib.suppress(OSError):
            total += cpu_seconds(member)
    return total


def measure(
    seconds: float,
    processes: int,
    keep: Path | None,
    profile: Path | None,
    sim_processes: int = 1,
) -> Measured:
    rpm = catalog_rpm()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        log, lag_dir = work / "timing.jsonl", work / "lag"
        lag_dir.mkdir()
        os.environ["BENCH_LOOPLAG_DIR"] = str(lag_dir)  # both children inherit the probe
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(PROBE), os.environ.get("PYTHONPATH")])
        )
        jobs = int(max(rpm.values()) * (seconds + 60) / 60)
        write_jobs(work / "jobs.jsonl", jobs, max_tokens=MAX_TOKENS)
        sim = SimSettings(
            time_scale=1.0,
            seed=1,
            output_median=TOKENS,
            timing_log=log,
            processes=sim_processes,
        )
        args = ["--models", ",".join(rpm), "--no-precheck", "--concurrency", "400"]
        if processes > 1:
            args += ["--processes", str(processes)]
        pinned = processes == 1 and sim_processes == 1
        with simulator_process(sim) as server:
            assert server.pid is not None
            if pinned:
                pin(server.pid, 1)
            if profile is not None:
                threading.Thread(target=record_profile, args=(work, profile, seconds)).start()
            run = run_batchrun(
                work,
                f"{server.base_url}/anthropic",
                args,
                stop_after=seconds,
                core=0 if pinned else None,
            )
            sim_cpu = tree_cpu(server.pid)
            counts = served_counts(server)
        db = work / "batchrun.db"
        if keep is not None:  # the raw material, for a closer look
            shutil.copytree(work, keep, ignore=shutil.ignore_patterns("jobs.jsonl"))
        ttft, done, matched = timing_errors(db, log)
        return Measured(
            run=run,
            sim_cpu=sim_cpu,
            served_429=counts[0] if counts else None,
            served_tokens=counts[1] if counts else None,
            rates=steady_rates(db, seconds),
            ttft_errors=ttft,
            done_errors=done,
            matched=matched,
            lags=read_lags(lag_dir),
        )


def ms(values: list[float]) -> str:
    """p50 / p99 / max of ``values`` (seconds) in milliseconds."""
    if len(values) < 2:
        return "n/a"
    cuts = quantiles(values, n=100, method="inclusive")
    return f"{1000 * cuts[49]:.1f} / {1000 * cuts[98]:.1f} / {1000 * max(values):.1f}"


def report(
    found: Measured, seconds: float, processes: int, loads: str, sim_processes: int = 1
) -> list[str]:
    rpm = catalog_rpm()
    rows = [
        f"| {model} | {limit} | {found.rates.get(model, 0):.0f} | "
        f"{found.rates.get(model, 0) / limit:.3f} |"
        for model, limit in rpm.items()
    ]
    total = sum(found.rates.values())
    wall = found.run.wall
    served = "n/a" if found.served_429 is None else found.served_429
    options = f"{f' --processes {processes}' if processes > 1 else ''}"
    options += f"{f' --sim-processes {sim_processes}' if sim_processes > 1 else ''}"
    sim_note = f" ({sim_processes} processes)" if sim_processes > 1 else ""
    tokens = found.served_tokens
    per_token = f"{1e6 * found.sim_cpu / tokens:.1f} µs" if tokens else "n/a"
    return [
        f"Full rate at real pace ({machine()}, {loads}): `batchrun run --no-precheck"
        f"{f' --processes {processes}' if processes > 1 else ''}` on every catalog model at "
        f"its published RPM (runner and simulator{sim_note}), time scale 1, answers of about "
        f"{TOKENS} tokens (max_tokens {MAX_TOKENS}), stopped after {seconds:g} s; steady part from "
        f"{WARM:g} s. Command: `python bench/full_rate.py --seconds {seconds:g}{options}`.",
        "",
        "| model | limit RPM | achieved RPM | achieved / limit |",
        "|---|---|---|---|",
        *rows,
        f"| all | {sum(rpm.values())} | {total:.0f} | {total / sum(rpm.values()):.3f} |",
        "",
        "| figure | value |",
        "|---|---|",
        f"| 429s recorded / served | {found.run.limited} / {served} |",
        f"| results stored | {found.run.results:,} ({found.matched:,} matched in the timing log) |",
        f"| runner CPU, share of one core | {found.run.cpu / wall:.2f} ({found.run.cpu:.0f} s "
        f"over {wall:.0f} s) |",
        f"| simulator CPU{sim_note}, share of one core | {found.sim_cpu / wall:.2f} |",
        f"| simulator CPU per output token served (one event each) | {per_token} |",
        f"| runner peak RSS | {found.run.max_rss_mb:.0f} MB |",
        f"| TTFT error, stored - true, p50 / p99 / max ms | {ms(found.ttft_errors)} |",
        f"| done error, stored - true last byte, p50 / p99 / max ms | {ms(found.done_errors)} |",
        f"| runner event-loop lag p50 / p99 / max ms | {ms(found.lags.get('runner', []))} |",
        f"| simulator event-loop lag p50 / p99 / max ms | {ms(found.lags.get('simulator', []))} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="how long to send")
    parser.add_argument("--quick", action="store_true", help="30 s, for development")
    parser.add_argument("--processes", type=int, default=1, help="batchrun run --processes")
    parser.add_argument(
        "--sim-processes", type=int, default=1, help="batchrun sim --processes (the simulator)"
    )
    add_out(parser, None)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy raw stacks here")
    parser.add_argument("--keep", type=Path, default=None, help="copy the run's files here")
    args = parser.parse_args()
    seconds = 30.0 if args.quick else args.seconds
    out = args.out or Path("bench/results") / (
        "full_rate_quick.md" if args.quick else "full_rate.md"
    )
    check_new(out, force=args.force)
    before = load()
    found = measure(seconds, args.processes, args.keep, args.profile, args.sim_processes)
    loads = f"{before} before, {load()} after"
    write_table(
        out, report(found, seconds, args.processes, loads, args.sim_processes), force=args.force
    )


if __name__ == "__main__":
    main()

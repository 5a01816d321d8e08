"""A team at scale on the real PostgreSQL: 4 `batchrun worker` processes under one shared RPM.

A simulator (`batchrun sim`, its own process) allows --rpm requests a minute for one model and
answers 429 past it. Three workers start with the batch, a fourth joins --late-after seconds in,
and the first is SIGKILLed --kill-after seconds in. Every figure is read from the store (and the
workers' heartbeat rows, sampled every second):

- achieved rate / shared limit over the steady part (the middle of the batch, from the late
  worker's join to the last tenth of the sends; target >= 0.95), and 429s (target 0);
- each worker's share of the requests (who holds each result's claim), and what each held
  ten seconds in (how greedy the claims are);
- how long the killed worker's requests waited: from the kill to their next attempt;
- the late worker's wait for its first claim after it joined;
- event-loop stalls: the longest late wake-up of each worker's loop (its heartbeat row);
- one result per request, checked at the end.

    python bench/teams_scale.py [--quick] [--rpm 240] [--jobs 600] [--label before]

--quick: ~40 s (160 requests, the kill at 15 s, a 10 s lease). A fresh database is made on
127.0.0.1:5432 (user postgres) and dropped afterwards; --keep keeps it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from outfile import add_out, check_new, write_table
from procstat import load, machine
from runcli import write_jobs

from batchrun.sim import SimSettings, simulator_process

MODEL = "MiniMax-M3"
KEY = "sk-bench-teams-0123456789"
ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Team:
    """The worker processes, their start times and what the benchmark saw of them."""

    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: list[float] = field(default_factory=list)
    stall: dict[int, float] = field(default_factory=dict)  # pid -> longest loop stall seen
    held_at_10s: dict[int, int] = field(default_factory=dict)
    first_claim: dict[int, float] = field(default_factory=dict)  # pid -> when it first held one
    registered: dict[int, float] = field(default_factory=dict)  # pid -> its heartbeat row's start
    first_sent: float | None = None  # the batch's first attempt: the timeline starts there
    killed_at: float | None = None
    killed_held: list[int] = field(default_factory=list)
    lease_left: list[float] = field(default_factory=list)  # their leases' time left at the kill


@contextmanager
def database(keep: bool) -> Iterator[str]:
    """A fresh PostgreSQL database's psycopg URL; dropped afterwards unless ``keep``."""
    name = f"batchrun_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        if not keep:
            with psycopg.connect(ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as connection:
        return connection.execute(sql).fetchall()  # type: ignore[arg-type]


def one(url: str, sql: str) -> float:
    return float(rows(url, sql)[0][0] or 0)  # type: ignore[arg-type]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    return {**env, "MINIMAX_API_KEY": KEY}


def start_worker(work: Path, team: Team, args: list[str], logs: Path) -> None:
    log = (logs / f"worker-{len(team.processes)}.log").open("w")
    command = [sys.executable, "-m", "batchrun.cli", "worker", "--once", *args]
    process = subprocess.Popen(command, cwd=work, env=environment(), stdout=log, stderr=log)
    team.processes.append(process)
    team.started.append(time.time())


SAMPLE = (
    "select w.id, w.stall_max_s, (select count(*) from requests r where r.claimed_by = w.id "
    "and r.status = 'pending'), w.started_at from workers w"
)


def sample(url: str, team: Team, t0: float | None) -> None:
    """One look at the workers' rows: stalls, claims held, first claims."""
    try:
        found = rows(url, SAMPLE)
    except psycopg.errors.UndefinedTable:
        return
    for wid, stall, held, registered in found:
        pid = int(str(wid).split("-")[-2])
        team.stall[pid] = max(team.stall.get(pid, 0.0), float(stall or 0))  # type: ignore[arg-type]
        team.registered.setdefault(pid, float(registered))  # type: ignore[arg-type]
        if int(held) and pid not in team.first_claim:  # type: ignore[call-overload]
            team.first_claim[pid] = time.time()
        if t0 is not None and time.time() - t0 <= 10:
            team.held_at_10s[pid] = int(held)  # type: ignore[call-overload]


def first_sent(url: str) -> float | None:
    """When the batch's first attempt started; None before."""
    try:
        found = rows(url, "select min(started_at) from attempts")[0][0]
    except psycopg.errors.UndefinedTable:
        return None
    return None if found is None else float(found)  # type: ignore[arg-type]


def kill_first(url: str, team: Team) -> None:
    victim = team.processes[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    team.killed_at = time.time()
    mine = f"claimed_by like '%-{victim.pid}-%' and status = 'pending'"
    held = rows(url, f"select id, lease_until from requests where {mine}")
    team.killed_held = [int(i) for i, _ in held]  # type: ignore[call-overload]
    team.lease_left = [float(until) - team.killed_at for _, until in held]  # type: ignore[arg-type]


def drive(url: str, work: Path, args: argparse.Namespace, base_url: str) -> Team:
    """Start the team, join the late one, kill the first, wait for the batch to finish."""
    common = ["--db", url.replace("postgresql://", "postgresql+psycopg://"), "--base-url",
              base_url, "--rpm", str(args.rpm), "--tpm", "1000000000", "--lease",
              str(args.lease), "--poll", str(args.poll)]  # fmt: skip
    team = Team()
    for _ in range(args.workers - 1):
        start_worker(work, team, common, args.logs or work)
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        # From the first request sent: starting a worker takes seconds on a busy machine.
        t0 = team.first_sent = team.first_sent or first_sent(url)
        age = -1.0 if t0 is None else time.time() - t0
        if len(team.processes) < args.workers and age >= args.late_after:
            start_worker(work, team, common, args.logs or work)
        if team.killed_at is None and age >= args.kill_after:
            kill_first(url, team)
        sample(url, team, t0)
        if all(p.poll() is not None for p in team.processes[1:]) and team.killed_at:
            break
        time.sleep(1.0)
    for process in team.processes:
        if process.poll() is None:
            process.kill()
        process.wait()
    return team


def submit(work: Path, url: str, base_url: str, jobs: int, tokens: int = 200) -> None:
    write_jobs(work / "jobs.jsonl", jobs, max_tokens=tokens)
    done = subprocess.run(
        [sys.executable, "-m", "batchrun.cli", "submit", "jobs.jsonl", "--models", MODEL,
         "--db", url.replace("postgresql://", "postgresql+psycopg://"), "--base-url", base_url],
        cwd=work, env=environment(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(done.stdout + done.stderr)


def steady_rate(url: str, team: Team) -> tuple[float, float, float]:
    """(attempts per minute, window start, window end) from the late join to the last tenth."""
    sent = sorted(float(t) for (t,) in rows(url, "select started_at from attempts"))  # type: ignore[arg-type]
    start = max(team.started[-1], sent[0])
    end = sent[int(len(sent) * 0.9)]
    inside = sum(1 for t in sent if start <= t <= end)
    return (inside / (end - start) * 60 if end > start else 0.0), start, end


def killed_waits(url: str, team: Team) -> list[float]:
    """Seconds from the kill to each of the killed worker's requests' next attempt."""
    if not team.killed_held or team.killed_at is None:
        return []
    ids = ",".join(map(str, team.killed_held))
    found = rows(url, f"select request_id, min(started_at) from attempts where request_id in "
                      f"({ids}) and started_at > {team.killed_at} group by request_id")  # fmt: skip
    return [float(t) - team.killed_at for _, t in found]  # type: ignore[arg-type]


PER_REQUEST = (
    "select count(r.request_id) from requests q left join results r on r.request_id = q.id "
    "group by q.id"
)


def report(url: str, team: Team, args: argparse.Namespace, label: str) -> list[str]:
    rate, start, end = steady_rate(url, team)
    throttled = int(one(url, "select count(*) from attempts where status = 429"))
    per_request = {int(n) for (n,) in rows(url, PER_REQUEST)}  # type: ignore[call-overload]
    shares = dict(rows(url, "select claimed_by, count(*) from requests where status = "
                            "'succeeded' group by claimed_by"))  # fmt: skip
    waits = killed_waits(url, team)
    roles = ["killed", *["start"] * (args.workers - 2), "late"]
    lines = [
        f"## teams_scale ({label}): {args.workers} workers, {args.jobs} requests, "
        f"{args.rpm} RPM shared, lease {args.lease:g}s",
        "",
        f"{machine()}; {load()} at the end; `python bench/teams_scale.py "
        f"{'--quick ' if args.quick else ''}--rpm {args.rpm} --jobs {args.jobs}`",
        "",
        f"- steady rate {rate:.1f} RPM over {end - start:.0f}s = **{rate / args.rpm:.3f}** "
        f"of the shared limit; 429s: **{throttled}**",
        f"- one result per request: {per_request == {1}} (results per request: {per_request})",
        f"- killed worker held {len(team.killed_held)} pending requests; they waited "
        + (f"median {statistics.median(waits):.1f}s, max {max(waits):.1f}s" if waits else "-")
        + " before another worker sent them"
        + (
            f" (their leases ran out {max(team.lease_left):.1f}s after the kill)"
            if team.lease_left
            else ""
        ),
        "",
        "| worker | role | held 10 s in | first claim after joining (s) | results | share "
        "| longest loop stall (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    total = sum(int(n) for n in shares.values()) or 1  # type: ignore[call-overload]
    for n, (process, role) in enumerate(zip(team.processes, roles, strict=True)):
        done = sum(int(c) for w, c in shares.items() if f"-{process.pid}-" in str(w))  # type: ignore[call-overload]
        first = team.first_claim.get(process.pid)
        lines.append(
            f"| w{n} | {role} | {team.held_at_10s.get(process.pid, '-')} | "
            f"{_since(first, team.registered.get(process.pid))} | {done} | "
            f"{done / total:.0%} | {team.stall.get(process.pid, 0.0):.3f} |"
        )
    return lines


def _since(then: float | None, start: float | None) -> str:
    return "-" if then is None or start is None else f"{max(0.0, then - start):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~40 s run")
    parser.add_argument("--rpm", type=int, default=240)
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--late-after", type=float, default=30.0)
    parser.add_argument("--kill-after", type=float, default=60.0)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--time-scale", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--label", default="today's code")
    add_out(parser, Path(__file__).parent / "results" / "teams_scale.md")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--logs", type=Path, help="write the workers' output there (kept)")
    args = parser.parse_args()
    check_new(args.out, force=args.force)
    if args.quick:
        args.jobs, args.late_after, args.kill_after, args.lease = 160, 8.0, 15.0, 10.0
    sim = SimSettings(time_scale=args.time_scale, seed=20, api_key=KEY, rpm={MODEL: args.rpm},
                      tpm={MODEL: 10**9}, limit_window=60.0)  # fmt: skip
    with (
        database(args.keep) as url,
        simulator_process(sim) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        base_url = f"{server.base_url}/anthropic"
        submit(Path(tmp), url, base_url, args.jobs)
        team = drive(url, Path(tmp), args, base_url)
        lines = report(url, team, args, args.label)
    write_table(args.out, lines, force=args.force)


if __name__ == "__main__":
    main()

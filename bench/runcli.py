"""Run the real ``batchrun run`` CLI as a child process and read what it did.

Shared by the benchmarks that measure the whole runner: the child's CPU time and peak memory
come from ``wait4`` (getrusage of exactly that process), when it printed its batch line (the
file parsed and enqueued), and what its database holds afterwards.
"""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson


def write_jobs(path: Path, count: int, max_tokens: int = 300, prompt: str = "") -> None:
    """``count`` job lines, written in blocks (a million lines take a few seconds)."""
    with path.open("wb") as handle:
        block: list[bytes] = []
        for i in range(count):
            job = {
                "custom_id": f"job-{i:07d}",
                "prompt": f"Benchmark question {i}. {prompt}",
                "max_tokens": max_tokens,
            }
            block.append(orjson.dumps(job))
            if len(block) == 10_000:
                handle.write(b"\n".join(block) + b"\n")
                block.clear()
        if block:
            handle.write(b"\n".join(block) + b"\n")


@dataclass(frozen=True, kw_only=True)
class RunOutcome:
    wall: float  # seconds from start to exit
    loaded: float | None  # seconds until the batch line: file parsed and enqueued
    sending: float | None  # seconds until the first progress line: estimate done, sending
    cpu: float  # user + system seconds of the runner process
    max_rss_mb: float  # peak resident memory of the runner process
    results: int
    limited: int  # attempts answered 429
    db_bytes: int
    output: str


def run_batchrun(
    work: Path,
    base_url: str,
    args: Sequence[str],
    *,
    jobs_file: str = "jobs.jsonl",
    code: Path | None = None,
    wrap: Sequence[str] = (),
    core: int | None = 0,
    stop_after: float | None = None,
) -> RunOutcome:
    """``batchrun run JOBS --base-url URL ARGS`` in ``work``; ``code``: another checkout's code.

    ``stop_after``: interrupt the run (SIGINT, as Ctrl-C) that many seconds after its first
    progress line (when sending has begun).
    """
    env = {**os.environ, "MINIMAX_API_KEY": "bench"}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    command = [
        *wrap, sys.executable, "-m", "batchrun.cli", "run", jobs_file, "--base-url", base_url,
        "--yes", *args,
    ]  # fmt: skip
    loaded = sending = None

    def note(line: str, child: subprocess.Popen[str], elapsed: float) -> None:
        nonlocal loaded, sending
        if loaded is None and line.startswith("Batch "):
            loaded = elapsed
        elif sending is None and line.startswith("[") and " done, " in line:
            sending = elapsed
            if stop_after is not None:
                threading.Timer(stop_after, child.send_signal, [signal.SIGINT]).start()

    finished = run_measured(command, cwd=work, env=env, core=core, on_line=note)
    output, usage = finished.output, finished.usage
    if finished.code != 0 and stop_after is None:
        raise SystemExit(f"batchrun run: exit {finished.code}\n{output[-3000:]}")
    db = work / "batchrun.db"
    with sqlite3.connect(db) as conn:
        results = conn.execute("select count(*) from results").fetchone()[0]
        limited = conn.execute("select count(*) from attempts where status = 429").fetchone()[0]
    return RunOutcome(
        wall=finished.wall,
        loaded=loaded,
        sending=sending,
        cpu=finished.cpu,
        max_rss_mb=usage.ru_maxrss / 1024,
        results=results,
        limited=limited,
        db_bytes=sum(p.stat().st_size for p in work.glob("batchrun.db*")),
        output=output,
    )


@dataclass(frozen=True)
class Finished:
    """A child process that has exited, with its resource usage from ``wait4``."""

    code: int
    output: str  # standard output and error, interleaved
    wall: float  # seconds from start to exit
    usage: resource.struct_rusage  # the process and the children it waited for

    @property
    def cpu(self) -> float:
        """User plus system seconds of the process and of its waited-for children."""
        return self.usage.ru_utime + self.usage.ru_stime


def run_measured(
    command: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    core: int | None = 0,
    on_line: Callable[[str, subprocess.Popen[str], float], None] | None = None,
) -> Finished:
    """Run ``command`` to its end (pinned to ``core`` where there are two); ``on_line`` sees each
    output line with the child and the seconds since the start."""
    started = time.perf_counter()
    lines = []
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as child:
        if core is not None and len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(child.pid, {core})
        assert child.stdout is not None
        for line in child.stdout:
            if on_line is not None:
                on_line(line, child, time.perf_counter() - started)
            lines.append(line)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    return Finished(
        code=child.returncode,
        output="".join(lines),
        wall=time.perf_counter() - started,
        usage=usage,
    )


def table_bytes(db: Path, tables: Sequence[str]) -> int:
    """Bytes of these tables and their indexes in a SQLite file (its dbstat table)."""
    marks = ",".join("?" * len(tables))
    with sqlite3.connect(db) as conn:
        names = [
            row[0]
            for row in conn.execute(
                f"select name from sqlite_master where tbl_name in ({marks})",
                tuple(tables),
            )
        ]
        placeholders = ",".join("?" * len(names))
        total = conn.execute(
            f"select coalesce(sum(pgsize), 0) from dbstat where name in ({placeholders})",
            tuple(names),
        ).fetchone()[0]
    return int(total)


def send_span(db: Path) -> float:
    """Seconds from the first attempt sent to the last answer finished."""
    with sqlite3.connect(db) as conn:
        first = conn.execute("select min(started_at) from attempts").fetchone()[0]
        last = conn.execute("select max(sent_at + done_s) from results").fetchone()[0]
    return float(last - first)


def send_times(db: Path) -> list[float]:
    """When each attempt was sent (epoch seconds), sorted."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select started_at from attempts order by started_at").fetchall()
    return [row[0] for row in rows]

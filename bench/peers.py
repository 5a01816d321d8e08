"""batchrun against its peers on the same work, in one run: whole processes, interleaved rounds.

Every peer sends the same streamed answers (about --tokens each) to one simulator at time scale 0
(its own process on core 1; each client a child process on core 0), --concurrency at a time:

- batchrun ``run`` (the count_tokens pre-check on, storage on) and ``run --no-precheck``;
- bench/bare_sdk.py, the script a user writes (AsyncAnthropic + a semaphore, nothing stored);
- Bespoke Curator (``bespokelabs-curator``) on its anthropic backend and on its LiteLLM backend;
- LiteLLM ``acompletion`` streaming (given --litellm-answers only: it is slow per token).

Curator and LiteLLM are installed by this script, each in its own virtual environment under
--venvs (pip from the package index); one that cannot be installed is skipped, with the reason in
the table. The peers' code is bench/peer_clients.py. Figures per peer, medians over rounds: CPU
of the whole process and the children it waited for (wait4), wall, requests/s of the whole
process, peak RSS, answers that ended (the client's count; the simulator's count of completed
streams must equal the answers asked: every answer ended exactly once), 429s (the simulator's).

    python bench/peers.py [--quick] [--rounds 3] [--answers 2000] [--concurrency 64]
                          [--peers batchrun,bare-sdk,...] [--out bench/results/peers.md] [--force]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from outfile import add_out, check_new, write_table
from procstat import load, machine, pin
from runcli import Finished, run_measured, write_jobs

from batchrun.sim import SimSettings, simulator_process

HERE = Path(__file__).parent
MODEL = "MiniMax-M2.7"
KEY = "bench"
# The peers installed here: their environment, what pip installs, and a module to import once
# (compiling the library's bytecode outside the measured runs).
VENVS = {
    "curator": (("bespokelabs-curator", "anthropic"), "bespokelabs.curator"),
    "litellm": (("litellm",), "litellm"),
}
PEER_VENV = {"curator-anthropic": "curator", "curator-litellm": "curator", "litellm": "litellm"}
LABELS = {
    "batchrun": "batchrun `run` (pre-check, storage on)",
    "batchrun-no-precheck": "batchrun `run --no-precheck`",
    "bare-sdk": "bare SDK script (AsyncAnthropic + semaphore, nothing stored)",
    "curator-anthropic": "Bespoke Curator, anthropic backend (no streaming)",
    "curator-litellm": "Bespoke Curator, LiteLLM backend (no streaming)",
    "litellm": "LiteLLM `acompletion` streaming",
}
BATCHRUN_FLAGS = ["--models", MODEL, "--rpm", "10000000", "--tpm", "10000000000000"]


@dataclass(frozen=True, kw_only=True)
class Figures:
    """One peer's run: its process's figures and what the simulator saw meanwhile."""

    asked: int
    cpu: float
    wall: float
    rss_mb: float
    answered: int  # distinct answers the client says ended
    completed: int  # streams the simulator completed
    limited: int  # 429s the simulator answered
    output_tokens: int
    load: str


def ensure_venv(root: Path, name: str) -> Path | str:
    """The Python of the peer's environment (made and installed once), or why it cannot be."""
    packages, module = VENVS[name]
    home = root / name
    python = home / "bin" / "python"
    if (home / ".installed").exists():
        return python
    print(f"installing {', '.join(packages)} into {home} ...", flush=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(home)],
        [str(python), "-m", "pip", "install", "--quiet", *packages],
        [str(python), "-c", f"import {module}"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, env=peer_env(), check=False)
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            return f"could not install ({' '.join(step[2:4])}): {said[-1] if said else 'no output'}"
    (home / ".installed").touch()
    return python


def peer_env() -> dict[str, str]:
    """The peers' environment: nothing of batchrun's, no network look-ups, the simulator's key."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "ANTHROPIC_API_KEY": KEY}
    env["TELEMETRY_ENABLED"] = "false"  # Curator's: its upload would wait on a network it lacks
    return env


class Simulator:
    """The running simulator's stats, read and reset between runs."""

    def __init__(self, root: str) -> None:
        self.root = root

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.root}/_sim/reset", method="POST"))

    def seen(self) -> tuple[int, int, int]:
        """(completed streams, 429s, output tokens) since the last reset."""
        with urllib.request.urlopen(f"{self.root}/_sim/stats") as answer:
            models = json.loads(answer.read())["models"].values()
        return tuple(sum(int(m.get(k, 0)) for m in models) for k in ("ok", "429", "output_tokens"))  # type: ignore[return-value]


def batchrun_peer(
    extra: list[str], code: Path | None = None
) -> Callable[[Path, str, int, Path], Finished | str]:
    """A runner of ``batchrun run`` with ``extra`` flags, in a fresh directory (a fresh store);
    ``code``: another checkout's batchrun (a before/after comparison in one run)."""

    def run(jobs: Path, url: str, concurrency: int, work: Path) -> Finished | str:
        env = {**os.environ, "MINIMAX_API_KEY": KEY}
        if code is not None:
            env["PYTHONPATH"] = str(code)
        command = [sys.executable, "-m", "batchrun.cli", "run", str(jobs), "--base-url", url]
        flags = [*BATCHRUN_FLAGS, "--concurrency", str(concurrency), "--yes", *extra]
        return run_measured([*command, *flags], cwd=work, env=env)

    return run


def bare_peer(jobs: Path, url: str, concurrency: int, work: Path) -> Finished | str:
    """bench/bare_sdk.py, on this checkout's SDK (the one batchrun uses)."""
    command = [sys.executable, str(HERE / "bare_sdk.py"), str(jobs), url, MODEL, str(concurrency)]
    return run_measured(command, cwd=work, env=peer_env())


def venv_peer(name: str, python: Path) -> Callable[[Path, str, int, Path], Finished | str]:
    """A runner of bench/peer_clients.py NAME in the peer's environment."""

    def run(jobs: Path, url: str, concurrency: int, work: Path) -> Finished | str:
        command = [str(python), str(HERE / "peer_clients.py"), name, str(jobs), url, MODEL]
        return run_measured([*command, str(concurrency)], cwd=work, env=peer_env())

    return run


def answered(peer: str, finished: Finished, work: Path, asked: int) -> int:
    """The distinct answers the client says ended (batchrun: the results in its store)."""
    if peer.startswith(("batchrun", "before")):
        import sqlite3

        with sqlite3.connect(work / "batchrun.db") as db:
            return int(db.execute("select count(distinct request_id) from results").fetchone()[0])
    for line in finished.output.splitlines():
        if line.startswith("answers "):
            return int(line.split()[1])
    return asked if peer == "bare-sdk" and finished.code == 0 else 0  # it stops at an error


def measure(
    peer: str,
    runner: Callable[..., Finished | str],
    jobs: Path,
    *,
    url: str,
    sim: Simulator,
    concurrency: int,
) -> Figures | str:
    """One run of one peer: its figures, or what went wrong."""
    asked = sum(1 for _ in jobs.open())
    sim.reset()
    with tempfile.TemporaryDirectory() as tmp:
        finished = runner(jobs, url, concurrency, Path(tmp))
        if isinstance(finished, str):
            return finished
        if finished.code != 0:
            print(finished.output[-3000:])
            return f"exit {finished.code}: {_last_error(finished.output)}"
        completed, limited, tokens = sim.seen()
        return Figures(
            asked=asked,
            cpu=finished.cpu,
            wall=finished.wall,
            rss_mb=finished.usage.ru_maxrss / 1024,
            answered=answered(peer, finished, Path(tmp), asked),
            completed=completed,
            limited=limited,
            output_tokens=tokens,
            load=load(),
        )


def _last_error(output: str) -> str:
    """The last line of the output that names an error (a traceback's last line)."""
    lines = [line.strip() for line in output.splitlines() if "Error" in line]
    return (lines or ["no error in its output"])[-1][:300]


def runners(args: argparse.Namespace) -> dict[str, Callable[..., Finished | str] | str]:
    """Each chosen peer's runner, or the reason it is skipped."""
    made: dict[str, Callable[..., Finished | str] | str] = {}
    if args.before is not None:  # first, so that each round runs the old code just before the new
        LABELS["before"] = f"batchrun `run`, code of {args.before}"
        LABELS["before-no-precheck"] = f"batchrun `run --no-precheck`, code of {args.before}"
        made["before"] = batchrun_peer([], args.before)
        made["before-no-precheck"] = batchrun_peer(["--no-precheck"], args.before)
    for peer in args.peers.split(","):
        if peer == "batchrun":
            made[peer] = batchrun_peer([])
        elif peer == "batchrun-no-precheck":
            made[peer] = batchrun_peer(["--no-precheck"])
        elif peer == "bare-sdk":
            made[peer] = bare_peer
        elif peer in PEER_VENV:
            python = ensure_venv(args.venvs, PEER_VENV[peer])
            made[peer] = python if isinstance(python, str) else venv_peer(peer, python)
        else:
            raise SystemExit(f"unknown peer {peer!r}; known: {', '.join(LABELS)}")
    return made


def median(runs: list[Figures], value: Callable[[Figures], float]) -> float:
    return statistics.median(value(f) for f in runs)


def per_answer(runs: list[Figures]) -> float:
    """Median CPU seconds per answer."""
    return median(runs, lambda f: f.cpu / f.asked)


def per_token(runs: list[Figures]) -> float:
    """Median CPU seconds per output token."""
    return median(runs, lambda f: f.cpu / max(1, f.output_tokens))


def rate(runs: list[Figures]) -> float:
    """Median requests/s of the whole process (start to exit)."""
    return median(runs, lambda f: f.asked / f.wall)


def row(peer: str, runs: list[Figures] | str) -> str:
    """One table row: the medians, or why the peer has none."""
    if isinstance(runs, str):
        return f"| {LABELS[peer]} | skipped: {runs} |" + " |" * 9
    once = all(f.answered == f.asked == f.completed for f in runs)
    loads = ", ".join(f.load.removeprefix("load ") for f in runs)
    return (
        f"| {LABELS[peer]} | {runs[0].asked:,} | {'yes' if once else _ended(runs)} | "
        f"{max(f.limited for f in runs)} | {median(runs, lambda f: f.cpu):.2f} s | "
        f"{1000 * per_answer(runs):.2f} ms | {1e6 * per_token(runs):.1f} µs | "
        f"{median(runs, lambda f: f.wall):.2f} s | {rate(runs):,.1f} | "
        f"{median(runs, lambda f: f.rss_mb):.0f} MB | {loads} |"
    )


def _ended(runs: list[Figures]) -> str:
    return "no: " + "; ".join(f"{f.answered} ended, {f.completed} completed" for f in runs)


def targets(results: dict[str, list[Figures] | str]) -> list[str]:
    """batchrun's figures against the issue's targets, each a ratio of medians."""
    ours = results.get("batchrun")
    peers = {p: r for p, r in results.items() if not p.startswith(("batchrun", "before")) and r}
    peers = {p: r for p, r in peers.items() if not isinstance(r, str)}
    if isinstance(ours, str) or not ours or not peers:
        return ["Targets: not computed (batchrun or every peer missing)."]
    cheapest = min(peers, key=lambda p: per_answer(peers[p]))  # type: ignore[arg-type]
    fastest = max(peers, key=lambda p: rate(peers[p]))  # type: ignore[arg-type]
    lines = [
        f"- CPU per answer: batchrun / best peer ({LABELS[cheapest]}) = "
        f"{per_answer(ours) / per_answer(peers[cheapest]):.2f} (target <= 0.5)",  # type: ignore[arg-type]
        f"- requests/s: batchrun / best peer ({LABELS[fastest]}) = "
        f"{rate(ours) / rate(peers[fastest]):.2f} (target >= 1.5)",  # type: ignore[arg-type]
    ]
    before = results.get("before")
    if before and not isinstance(before, str):
        cpu, speed = per_answer(ours) / per_answer(before), rate(ours) / rate(before)
        lines.append(f"- this checkout / --before: CPU per answer {cpu:.2f}, req/s {speed:.2f}")
    bare = peers.get("bare-sdk")
    if bare and not isinstance(bare, str):
        ratio = per_token(ours) / per_token(bare)
        lines.append(f"- CPU per output token: batchrun / bare SDK = {ratio:.2f} (target <= 0.33)")
    return lines


def rounds(args: argparse.Namespace, work: Path) -> dict[str, list[Figures] | str]:
    """Every peer once per round, in the same order each round, against one simulator."""
    made = runners(args)
    results: dict[str, list[Figures] | str] = {
        p: r if isinstance(r, str) else [] for p, r in made.items()
    }
    settings = SimSettings(
        time_scale=0, limits=False, output_median=args.tokens, seed=1, accept_x_api_key=True
    )
    with simulator_process(settings) as server:
        pin(server.pid, 1)
        sim, url = Simulator(server.base_url), f"{server.base_url}/anthropic"
        for number in range(args.rounds):
            for peer, runner in made.items():
                if isinstance(runner, str) or isinstance(results[peer], str):
                    continue
                jobs = work / ("litellm.jsonl" if peer == "litellm" else "jobs.jsonl")
                got = measure(peer, runner, jobs, url=url, sim=sim, concurrency=args.concurrency)
                print(f"round {number + 1}, {peer}: {got}", flush=True)
                kept = results[peer]
                results[peer] = got if isinstance(got, str) else [*kept, got]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=2000)
    parser.add_argument("--litellm-answers", type=int, default=150)
    parser.add_argument("--tokens", type=int, default=500, help="median output tokens per answer")
    parser.add_argument("--concurrency", type=int, default=64, help="64, or 256")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200 answers, 1 round")
    parser.add_argument("--peers", default=",".join(LABELS))
    parser.add_argument("--before", type=Path, help="also run this checkout's batchrun")
    parser.add_argument("--venvs", type=Path, default=Path.home() / ".cache/batchrun-bench/venvs")
    add_out(parser, HERE / "results" / "peers.md")
    args = parser.parse_args()
    check_new(args.out, force=args.force)
    if args.quick:
        args.answers, args.litellm_answers, args.rounds = 200, 50, 1
    pin(0, 0)  # this process and so its children (each client) on core 0
    command = " ".join(["python", "bench/peers.py", *sys.argv[1:]])
    started = load()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # max_tokens far above the median: an answer cut at its cap ends as a failure in Curator
        cap = 8 * args.tokens  # as report() says
        write_jobs(work / "jobs.jsonl", args.answers, max_tokens=cap)
        write_jobs(work / "litellm.jsonl", min(args.answers, args.litellm_answers), cap)
        results = rounds(args, work)
    write_table(args.out, report(args, results, command, started), force=args.force)


def report(
    args: argparse.Namespace, results: dict[str, list[Figures] | str], command: str, started: str
) -> list[str]:
    """The markdown table, with the machine, the load and the command."""
    fewer = min(args.answers, args.litellm_answers)
    litellm = f" (LiteLLM: {fewer})" if "litellm" in results else ""
    return [
        f"batchrun and its peers ({machine()}; {started} at the start, {load()} at the end): "
        f"{args.answers:,} streamed answers of about {args.tokens} tokens{litellm}, "
        f"max_tokens {8 * args.tokens:,}, {MODEL} on the simulator at time scale 0 "
        f"(core 1), each client on core 0, concurrency {args.concurrency}, {args.rounds} "
        "interleaved rounds, medians. CPU: whole process and its children (wait4).",
        "",
        f"Command: `{command}`",
        "",
        "| client | answers | each ended once | 429s | CPU | CPU per answer | CPU per output "
        "token | wall | requests/s (whole process) | peak RSS | load (1/5 min) per round |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(row(peer, runs) for peer, runs in results.items()),
        "",
        "Against the targets (ratios of medians, per answer, so LiteLLM's fewer answers compare):",
        "",
        *targets(results),
    ]


if __name__ == "__main__":
    main()

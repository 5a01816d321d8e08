"""Stores for the dashboard tests, made the way users make them: `batchrun run` on the simulator."""

from __future__ import annotations

from pathlib import Path

from batchrun.sim import FaultRates, SimSettings, simulator_process
from tests.helpers import batchrun
from tests.runharness import prompts, write_jobs

MODELS = ("MiniMax-M2.7", "MiniMax-M2.7-highspeed", "MiniMax-M3")
KEY = "sk-dashboard-test-0123456789-secret"


def run_cli(cwd: Path, *args: str, key: str | None = None) -> str:
    """Run the CLI like a user; fail the test with its output when it crashes."""
    done = batchrun(cwd, *args, key=key, timeout=180)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.stdout


def seed_store(work: Path, time_scale: float = 0.0) -> Path:
    """Three batches in ``work/dash.db``: the graded sample set on the simulator, graded; a
    batch with a key against a simulator where M3 always fails (errors and retries to show);
    then (the newest) a capped demo on the built-in simulator (no key). ``time_scale`` 1 gives
    realistic latencies (for screenshots)."""
    jobs = prompts(12)
    del jobs[3]["prompt"]
    jobs[3]["messages"] = [{"role": "user", "content": "Name three rivers of Europe."}]
    lines = write_jobs(work / "jobs.jsonl", jobs).read_text()
    (work / "jobs.jsonl").write_text(lines + '{"custom_id": "broken", "max_tokens": "many"}\n')
    models = ",".join(MODELS)
    db = work / "dash.db"
    common = ("--db", str(db), "--yes")
    faulty = SimSettings(
        time_scale=time_scale,
        seed=11,
        api_key=KEY,
        model_faults={"MiniMax-M3": FaultRates(server_error=1.0)},
    )
    graded = Path(__file__).resolve().parent.parent / "jobs" / "graded-sim.jsonl"
    run_cli(work, "run", str(graded), "--models", models, "--name", "graded",
             "--sim-time-scale", str(time_scale), *common)  # fmt: skip
    run_cli(work, "grade", "graded", "--db", str(db))
    write_jobs(work / "other.jsonl", prompts(6))
    with simulator_process(faulty) as sim:
        run_cli(work, "run", "other.jsonl", "--models", models, "--name", "faulty",
                 "--base-url", f"{sim.base_url}/anthropic", "--max-attempts", "2", *common,
                 key=KEY)  # fmt: skip
    run_cli(work, "run", "jobs.jsonl", "--models", models, "--name", "demo",
             "--sim-time-scale", str(time_scale), "--max-cost", "5", *common)  # fmt: skip
    return db

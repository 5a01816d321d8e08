"""Stores for the dashboard tests, made the way users make them: `batchrun run` on the simulator."""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from batchrun.pricing import usd
from batchrun.sim import FaultRates, SimSettings, simulator_process
from batchrun.store import Store, database_url
from tests.helpers import batchrun
from tests.runharness import prompts, write_jobs

MODELS = ("MiniMax-M2.7", "MiniMax-M2.7-highspeed", "MiniMax-M3")
KEY = "sk-dashboard-test-0123456789-secret"
# The demo batch's shared system prompt: 720 simulator tokens, past the 512 from which MiniMax
# (and the simulator) caches passively, so every line after a model's first reads it from the
# cache. Marked with cache_control, so the M2.7 models also report (and are billed) a cache write.
SYSTEM = " ".join(
    f"Rule {i}: answer in plain words, name your sources, and keep each answer short."
    for i in range(1, 41)
)
SYSTEM_BLOCKS = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]


def run_cli(cwd: Path, *args: str, key: str | None = None) -> str:
    """Run the CLI like a user; fail the test with its output when it crashes."""
    done = batchrun(cwd, *args, key=key, timeout=180)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.stdout


def seed_store(work: Path, time_scale: float = 0.0) -> Path:
    """Three batches in ``work/dash.db``: the graded sample set on the simulator, graded; a
    batch with a key against a simulator where M3 always fails (errors and retries to show);
    then (the newest) a capped demo on the built-in simulator (no key) whose lines share a long
    system prompt (cache reads and writes to show). ``time_scale`` 1 gives realistic latencies
    (for screenshots)."""
    jobs = prompts(12, system=SYSTEM_BLOCKS)
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


def seeded_copy(factory: pytest.TempPathFactory, name: str, time_scale: float = 0.0) -> Path:
    """A copy of ``seed_store``'s store in a new directory ``name``: the store is made once per
    test session for each time scale (three CLI runs and a grade, ~25 s) and each module gets its
    own copy (the job files beside it, the database through SQLite's backup, so a module that
    rates or grades never changes another's)."""
    template = factory.getbasetemp() / f"seed-template-{time_scale}"
    if not (template / "dash.db").exists():
        building = factory.mktemp(f"seed-building-{time_scale}")
        seed_store(building, time_scale)
        building.rename(template)
    work = factory.mktemp(name)
    for job_file in template.glob("*.jsonl"):
        shutil.copyfile(job_file, work / job_file.name)
    db = work / "dash.db"
    source, target = sqlite3.connect(template / "dash.db"), sqlite3.connect(db)
    with closing(source), closing(target):
        source.backup(target)
    return db


def under_reported_store(work: Path) -> Path:
    """One batch in ``work/quirk.db`` whose lines share SYSTEM, run with a key against a
    simulator with the streamed-usage quirk (``stream_cache_read_zero``: streamed answers report
    no cache reads), so every result reports 0 cache-read tokens.

    batchrun stores, per result, the cache reads it expected when it sent the request. They are
    set here as batchrun's expectation would be for MiniMax-M2.7 (every line after the first
    expects the shared prefix) and as none for MiniMax-M3, so that M2.7's figures are flagged as
    under-reported and M3's are not, whatever the runner itself stored.
    """
    write_jobs(work / "shared.jsonl", prompts(8, system=SYSTEM))
    db = work / "quirk.db"
    quirked = SimSettings(
        time_scale=0.0, seed=5, api_key=KEY, quirks=frozenset({"stream_cache_read_zero"})
    )
    with simulator_process(quirked) as sim:
        run_cli(work, "run", "shared.jsonl", "--models", "MiniMax-M2.7,MiniMax-M3",
                "--name", "quirk", "--base-url", f"{sim.base_url}/anthropic", "--db", str(db),
                "--yes", key=KEY)  # fmt: skip
    with closing(sqlite3.connect(db)) as connection, connection:
        first = "(SELECT request_id FROM results WHERE model = ? ORDER BY sent_at LIMIT 1)"
        connection.execute(
            "UPDATE results SET expected_cache_tokens = CASE WHEN model = ? AND request_id != "
            f"{first} THEN ? ELSE 0 END",
            ("MiniMax-M2.7", "MiniMax-M2.7", 720),  # SYSTEM's tokens, the shared prefix
        )
    store = Store(database_url(str(db)))  # the results changed in SQL: their sums with them
    store.rebuild_aggregates()
    store.close()
    return db


def cache_figures(db: Path, batch: str | None = None) -> dict[str, dict[str, str]]:
    """Per model, the caching figures of one batch (or of all) as the dashboard should show
    them, computed here from the store's result rows (not by analytics)."""
    query = (
        "SELECT r.model, r.input_tokens, r.cache_read_tokens, r.cache_creation_tokens, "
        "r.cost_nanos, r.uncached_cost_nanos, r.cache_write_cost_nanos FROM results r "
        "JOIN batches b ON b.id = r.batch_id WHERE ? IS NULL OR b.name = ?"
    )
    with closing(sqlite3.connect(db)) as connection:
        rows = connection.execute(query, (batch, batch)).fetchall()
    shown: dict[str, dict[str, str]] = {}
    for model in sorted({row[0] for row in rows}):
        mine = [row[1:] for row in rows if row[0] == model]
        prompt = sum(i + r + c for i, r, c, *_ in mine)
        writes = [w for *_, w in mine if w is not None]
        savings = [u - cost for *_, cost, u, _ in mine if cost is not None and u is not None]
        shown[model] = {
            "prompt tokens": f"{prompt:,}",
            "cache hit rate": f"{sum(r for _, r, *_ in mine) / prompt:.1%}",
            "cached requests": f"{sum(1 for _, r, *_ in mine if r > 0)} of {len(mine)}",
            "cache write tokens": f"{sum(c for _, _, c, *_ in mine):,}",
            "cache write cost": usd(sum(writes)) if writes else "unpriced",
            "cache saving": usd(sum(savings)) if savings else "unpriced",
        }
    return shown


def hostile_texts(origin: str) -> dict[str, str]:
    """Text an attacker could put in a store through a job file, a model or a server, each one
    trying to make the dashboard's viewer fetch ``origin`` (a listener the test watches)."""
    return {
        "answer": f"![x]({origin}/leak?a) <img src={origin}/leak2> [click](javascript:alert(1)) "
        f"**bold** [ref][1]\n\n[1]: {origin}/leak-ref",
        "thinking": f"![t]({origin}/leak-thinking) *thought*",
        "prompt_first": "First line with **bold** and `code`",
        "prompt_second": f"second line <img src={origin}/leak-prompt> ![p]({origin}/leak-p)",
        "system": f"System ![s]({origin}/leak-system) :red[red]",
        "custom_id": f"![c]({origin}/leak-id)",
        "invalid_id": f"<img src={origin}/leak-invalid>",
        "batch": f"**evil** ![b]({origin}/leak-batch)",
        "model": f"M3 **x** ![m]({origin}/leak-model)",
        "error_type": f"![e]({origin}/leak-etype)",
        "error": f"Server said: ![e]({origin}/leak-error) <img src={origin}/leak-error2>",
        "reason": f"Judge: ![r]({origin}/leak-reason) [go]({origin}/leak-go)",
    }


def hostile_store(work: Path, origin: str) -> Path:
    """One batch in ``work/hostile.db`` (still running, capped, graded) whose every piece of text
    is ``hostile_texts(origin)``: the job file gives the custom ids, prompt, system prompt and batch
    name; the simulator answers with the hostile answer (its ``#answer:`` marker); what a real
    model or server would send and the simulator does not (thinking, an error, a judge's reason,
    a model's name) is then written into the rows, as such a model or server would have them
    written."""
    hostile = hostile_texts(origin)
    prompt = f"{hostile['prompt_first']}\n{hostile['prompt_second']}\n#answer: {hostile['answer']}"
    jobs = [
        {"custom_id": hostile["custom_id"], "system": hostile["system"], "prompt": prompt,
         "expect": {"equals": "42"}},
    ]  # fmt: skip
    lines = write_jobs(work / "hostile.jsonl", jobs).read_text()
    broken = f'{{"custom_id": "{hostile["invalid_id"]}", "max_tokens": "many"}}\n'
    (work / "hostile.jsonl").write_text(lines + broken)
    db = work / "hostile.db"
    run_cli(work, "run", "hostile.jsonl", "--models", "MiniMax-M2.7,MiniMax-M3", "--name",
            hostile["batch"], "--max-cost", "5", "--db", str(db), "--yes")  # fmt: skip
    run_cli(work, "grade", hostile["batch"], "--db", str(db))
    with closing(sqlite3.connect(db)) as connection, connection:
        # The simulator's marker gives one line: the answer's reference definition is its own.
        connection.execute("UPDATE results SET text = ?, thinking = ?",
                           (hostile["answer"], hostile["thinking"]))  # fmt: skip
        connection.execute("UPDATE grades SET reason = ?", (hostile["reason"],))
        failed = "SELECT request_id FROM results WHERE model = 'MiniMax-M3'"
        connection.execute(
            f"UPDATE requests SET status = 'failed', error_type = ?, error_message = ? "
            f"WHERE id IN ({failed})",
            (hostile["error_type"], hostile["error"]),
        )
        connection.execute(f"DELETE FROM grades WHERE request_id IN ({failed})")
        connection.execute(f"DELETE FROM results WHERE request_id IN ({failed})")
        connection.execute("UPDATE requests SET model = ? WHERE model = 'MiniMax-M3'",
                           (hostile["model"],))  # fmt: skip
        connection.execute("UPDATE batches SET models = ?",
                           (json.dumps(["MiniMax-M2.7", hostile["model"]]),))  # fmt: skip
        connection.execute("UPDATE batches SET status = 'running'")
    return db

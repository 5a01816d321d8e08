"""Pools end to end: limits several models share, against the simulator over real HTTP.

Pacing is measured where the runner records it, from the stored attempts' ``started_at``, over
sliding windows; the counts are small and the margins wide, so that a loaded machine does not
flake them, while without the pool every model's requests would go out at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.exceptions import ConfigError
from batchrun.run.launch import LimitOptions
from batchrun.run.retry import RetryPolicy
from batchrun.sim import RunningSimulator
from tests.helpers import KEY, batchrun, db_rows
from tests.runharness import Run, prompts, run_jobs, write_jobs

SimFactory = Callable[..., RunningSimulator]
M27, M3, M2 = "MiniMax-M2.7", "MiniMax-M3", "MiniMax-M2"
THREE = [M27, M3, M2]


def _most_in_a_second(times: list[float]) -> int:
    """The most of ``times`` that fall in any one second."""
    return max(sum(1 for t in times if start <= t < start + 1.0) for start in times)


def _started(run: Run, model: str | None = None) -> list[float]:
    return sorted(
        row["started_at"]
        for row in run.attempts()
        if model is None or row["model"] == model  # every attempt counts against a limit
    )


def _stored_limits(run: Run) -> dict[str, Any]:
    limits: dict[str, Any] = run.store.find_batch(run.plan.batch.id).settings["limits"]
    return limits


def test_account_rpm_holds_three_models_together_and_each_under_its_own(
    tmp_path: Path, sim: RunningSimulator
) -> None:
    # One account pool of 1,200 RPM (20 a second) over three models; M3 has its own 240 RPM
    # (4 a second). Each model alone may send 100,000 a minute: without the pool, M2.7's and
    # M2's 24 requests would all go out in the first moment.
    limits = LimitOptions(
        rpm={"*": 100_000, M3: 240}, tpm={}, concurrency={"*": 16}, account_rpm=1200
    )
    run = run_jobs(tmp_path, sim, prompts(12), THREE, limits=limits)
    assert {row["status"] for row in run.requests()} == {"succeeded"}
    together = _started(run)
    assert len(together) == 36
    assert _most_in_a_second(together) <= 23, [round(t - together[0], 2) for t in together]
    assert _most_in_a_second(_started(run, M3)) <= 6
    stored = _stored_limits(run)
    assert stored["pools"] == {
        "account": {
            "models": THREE,
            "rpm": 1200,
            "tpm": None,
            "source": "--account-rpm / --account-tpm",
        }
    }
    assert stored["models"][M3] == {
        "rpm": 240,
        "tpm": 10_000_000,  # the catalog's: the pool adds to a model's limits
        "concurrency": 16,
        "pools": ["account"],
    }


def test_a_catalog_pool_paces_its_models_and_leaves_the_others(
    tmp_path: Path, sim: RunningSimulator
) -> None:
    catalog = tmp_path / "mine.toml"
    catalog.write_text(
        f'[pools.pair]\nmodels = ["{M27}", "{M2}"]\nrpm = 600\nsource = "our account"\n'
    )
    limits = LimitOptions(rpm={"*": 100_000}, tpm={}, concurrency={"*": 16})
    run = run_jobs(tmp_path, sim, prompts(10), THREE, limits=limits, catalog_file=catalog)
    assert {row["status"] for row in run.requests()} == {"succeeded"}
    pair = sorted(_started(run, M27) + _started(run, M2))
    assert _most_in_a_second(pair) <= 14  # 600 RPM: 10 a second; without the pool, 20 at once
    stored = _stored_limits(run)
    assert stored["pools"] == {
        "pair": {"models": [M27, M2], "rpm": 600, "tpm": None, "source": "our account"}
    }
    assert stored["models"][M3]["pools"] == []  # not in the pool: paced by its own limits only


def test_an_account_pool_paced_just_under_the_accounts_gives_no_429(
    tmp_path: Path, sim_factory: SimFactory
) -> None:
    # The simulator allows 1,200 requests a minute for the whole account over 1.5 s windows (30
    # per window), each model far more; the runner is told the same and must pace the three
    # models' 60 requests together under the account's limit (unpaced, they would all go at once).
    # It is told 8% less than the account's figure: on a loaded 2-core machine the event loop's
    # lag can bunch a request's arrival with the next one's, and with the same figure on both
    # sides one request in a few hundred then lands in a full window (seen once in CI-like runs).
    sim = sim_factory(account_rpm=1200, rpm={"*": 100_000}, limit_window=1.5)
    limits = LimitOptions(rpm={"*": 100_000}, tpm={}, concurrency={"*": 16}, account_rpm=1100)
    run = run_jobs(tmp_path, sim, prompts(20), THREE, limits=limits)
    assert {row["status"] for row in run.requests()} == {"succeeded"}
    models = sim.fetch_stats()["models"]
    assert sum(models[m]["429"] for m in THREE) == 0
    assert sum(models[m]["ok"] for m in THREE) == 60


def test_account_429s_back_off_and_every_request_finishes(
    tmp_path: Path, sim_factory: SimFactory
) -> None:
    # The runner believes the account allows 6,000 a minute; the simulator's account allows 600
    # (10 per 1 s window). Its 429s name the account: the pool backs off (which of the gates
    # slows is test_limits'), and all 45 requests finish with one result each.
    sim = sim_factory(account_rpm=600, rpm={"*": 100_000}, limit_window=1.0)
    limits = LimitOptions(rpm={"*": 100_000}, tpm={}, concurrency={"*": 8}, account_rpm=6000)
    retry = RetryPolicy(max_attempts=40, base_delay=0.01, max_delay=0.2)
    run = run_jobs(tmp_path, sim, prompts(15), THREE, limits=limits, retry=retry)
    assert {row["status"] for row in run.requests()} == {"succeeded"}
    assert len(run.results()) == 45
    refused = [row for row in run.attempts() if row["status"] == 429]
    assert refused
    assert all("account" in row["message"] for row in refused)


def test_run_with_account_rpm_paces_shows_and_stores_the_pool(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(6))
    done = batchrun(
        tmp_path, "run", "jobs.jsonl", "--models", ",".join(THREE), "--sim-time-scale", "0",
        "--rpm", "100000", "--account-rpm", "600", "--account-tpm", "100000000",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Shared limit 'account': 600 requests/min, 100,000,000 tokens/min" in done.stdout
    db = tmp_path / "batchrun.db"
    started = sorted(float(t) for (t,) in db_rows(db, "select started_at from attempts"))  # type: ignore[arg-type]
    assert len(started) == 18
    assert _most_in_a_second(started) <= 14  # 10 a second; without the pool, 18 at once
    ((settings,),) = db_rows(db, "select settings from batches")
    pool = json.loads(str(settings))["limits"]["pools"]["account"]
    assert (pool["rpm"], pool["tpm"], pool["models"]) == (600, 100_000_000, THREE)


def test_account_options_are_in_the_help_of_every_sending_command() -> None:
    runner = CliRunner()
    for command in ("run", "resume", "submit", "worker"):
        shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert shown.exit_code == 0, shown.output
        assert "--account-rpm" in shown.output, command
        assert "--account-tpm" in shown.output, command
    refused = runner.invoke(app, ["run", "jobs.jsonl", "--account-rpm", "0"])
    assert refused.exit_code == 2
    assert "--account-rpm" in refused.output


def test_submit_keeps_the_account_pool_for_the_workers(
    tmp_path: Path, sim: RunningSimulator
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(4))
    common = ("--db", "team.db", "--base-url", f"{sim.base_url}/anthropic")
    submitted = batchrun(
        tmp_path, "submit", "jobs.jsonl", "--models", f"{M27},{M3}", "--account-rpm", "900",
        *common, key=KEY,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "one account limit: 900 requests/min" in submitted.stdout
    worked = batchrun(tmp_path, "worker", "--once", *common, key=KEY)
    assert worked.returncode == 0, worked.stdout + worked.stderr
    ((settings,),) = db_rows(tmp_path / "team.db", "select settings from batches")
    stored = json.loads(str(settings))
    assert stored["account_limits"] == {"rpm": 900, "tpm": None}
    assert stored["limits"]["pools"]["account"]["rpm"] == 900
    assert stored["limits"]["pools"]["account"]["models"] == [M27, M3]
    rows = db_rows(tmp_path / "team.db", "select name from pacers order by name")
    assert ("rpm:pool:account",) in rows


def test_the_python_api_takes_the_account_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import batchrun as api

    for name in ("MINIMAX_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "BATCHRUN_DB"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="account_rpm must be a whole number"):
        api.RunOptions(account_rpm=0)
    options = api.RunOptions(models=(M27, M3), sim_time_scale=0.0, account_tpm=5_000_000)
    store = api.open_store(tmp_path / "api.db")
    try:
        jobs = [{"custom_id": f"q{n}", "prompt": f"Hi {n}"} for n in range(2)]
        done = api.run_jobs(jobs, store=store, options=options)
        pool = done.batch.settings["limits"]["pools"]["account"]
    finally:
        store.close()
    assert (pool["rpm"], pool["tpm"], pool["models"]) == (None, 5_000_000, [M27, M3])

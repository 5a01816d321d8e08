"""The public Python API, used as a notebook would: only the names in ``batchrun.__all__``.

No API key is set, so every run goes to the built-in simulator (started as a child process),
over real HTTP with the real SDK, into a real SQLite file.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import batchrun

MODELS = ("MiniMax-M2.7", "MiniMax-M3")
JOBS = [{"id": f"q{n}", "prompt": f"Name a prime number above {n * 10}."} for n in range(4)]


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MINIMAX_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "BATCHRUN_DB"):
        monkeypatch.delenv(name, raising=False)


def fast(**values: Any) -> batchrun.RunOptions:
    return batchrun.RunOptions(models=MODELS, sim_time_scale=0.0, **values)


def test_run_jobs_then_read_the_dashboards_frames(tmp_path: Path) -> None:
    store = batchrun.open_store(tmp_path / "api.db")
    done = batchrun.run_jobs(JOBS, store=store, options=fast(name="from-python"))
    assert done.batch.name == "from-python"
    assert done.batch.status == "completed"
    assert done.batch.simulated
    assert done.pending == 0
    assert done.counts == {m: {"succeeded": len(JOBS)} for m in MODELS}

    requests = batchrun.requests_frame(store, [done.batch.id])
    assert requests.height == len(JOBS) * len(MODELS)
    assert set(requests["model"]) == set(MODELS)
    assert requests["ttft_s"].null_count() == 0

    metrics = batchrun.metrics_frame(store, ["from-python"])
    assert sorted(metrics["model"]) == sorted(MODELS)
    assert all(n == len(JOBS) for n in metrics["succeeded"])

    answers = batchrun.answers_frame(store, done.batch.id)
    assert answers.height == len(JOBS) * len(MODELS)
    assert list(answers["custom_id"][:2]) == ["q0", "q0"]  # input order, then model order
    assert all(text for text in answers["text"])


def test_the_same_jobs_again_continue_their_batch(tmp_path: Path) -> None:
    store = batchrun.open_store(str(tmp_path / "api.db"))
    first = batchrun.run_jobs(JOBS, store=store, options=fast())
    again = batchrun.run_jobs(JOBS, store=store, options=fast())
    assert again.batch.id == first.batch.id
    assert again.counts == first.counts
    frame = batchrun.requests_frame(store)
    assert frame.height == len(JOBS) * len(MODELS)  # nothing sent twice


def test_a_budget_stops_the_run_and_resume_finishes_it(tmp_path: Path) -> None:
    store = batchrun.open_store(tmp_path / "api.db")
    capped = batchrun.run_jobs(JOBS, store=store, options=fast(max_cost_usd="0.000001"))
    assert capped.budget_reached
    assert capped.pending > 0
    assert capped.batch.status == "paused"
    finished = batchrun.resume(capped.batch.name, store=store, options=fast(max_cost_usd=5))
    assert finished.pending == 0
    assert finished.batch.status == "completed"


def test_it_runs_from_inside_an_event_loop_as_in_a_notebook(tmp_path: Path) -> None:
    store = batchrun.open_store(tmp_path / "api.db")

    async def cell() -> batchrun.BatchRun:
        return batchrun.run_jobs(JOBS[:1], store=store, options=fast())

    done = asyncio.run(cell())
    assert done.counts == {m: {"succeeded": 1} for m in MODELS}


def test_every_public_name_resolves_and_others_do_not() -> None:
    for name in batchrun.__all__:
        assert getattr(batchrun, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = batchrun.nope


def test_importing_batchrun_loads_nothing_heavy() -> None:
    probe = (
        "import sys, batchrun; heavy = {'anthropic', 'aiohttp', 'polars', 'sqlalchemy', "
        "'alembic', 'streamlit'}; print(sorted({m.split('.')[0] for m in sys.modules} & heavy))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert shown.strip() == "[]"


def test_an_empty_job_list_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    store = batchrun.open_store(tmp_path / "api.db")
    (tmp_path / "nothing.jsonl").write_text("\n")
    with pytest.raises(Exception, match="the job list is empty") as caught:
        batchrun.run_jobs([], store=store, options=fast())
    assert type(caught.value).__name__ == "ConfigError"
    with pytest.raises(Exception, match="the file is empty") as caught:
        batchrun.run_file(tmp_path / "nothing.jsonl", store=store, options=fast())
    assert type(caught.value).__name__ == "JobFileError"
    assert batchrun.requests_frame(store).height == 0
    assert store.list_batches() == []


def test_the_options_never_show_the_key() -> None:
    options = batchrun.RunOptions(api_key="sk-secret-key-123")
    assert "sk-secret-key-123" not in repr(options)

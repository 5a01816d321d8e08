"""What a command's process imports: each command loads only what it uses (bench/startup.py).

Each probe is a fresh interpreter that runs ``batchrun.cli.main`` with the command's arguments and
prints, at exit, which of the heavy packages it loaded.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import orjson

from tests.helpers import batchrun
from tests.runharness import prompts, write_jobs

HEAVY = (
    "aiohttp",
    "alembic",
    "anthropic",
    "batchrun.sim.server",
    "polars",
    "sqlalchemy",
    "sqlalchemy.dialects.postgresql",
    "streamlit",
    "uvicorn",
)

RUN = ("--models", "MiniMax-M2.7", "--sim-time-scale", "0", "--yes")

PROBE = """
import atexit, sys
heavy = {heavy!r}
atexit.register(lambda: print("LOADED", sorted(m for m in heavy if m in sys.modules)))
from batchrun.cli import main
main({args!r})
"""


def loaded_by(cwd: Path, *args: str) -> list[str]:
    """The heavy modules ``batchrun ARGS`` loaded, run without an API key in ``cwd``."""
    env = {k: v for k, v in os.environ.items() if k not in ("MINIMAX_API_KEY", "ANTHROPIC_API_KEY")}
    env.pop("BATCHRUN_DB", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY, args=list(args))],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("LOADED "), done.stdout
    loaded: list[str] = eval(line.removeprefix("LOADED "))
    return loaded


def test_help_loads_nothing_heavy(tmp_path: Path) -> None:
    assert loaded_by(tmp_path, "--help") == []
    assert loaded_by(tmp_path, "run", "--help") == []
    assert loaded_by(tmp_path, "sim", "--help") == []


def test_status_loads_the_store_but_not_the_sdk_the_simulator_or_postgresql(
    tmp_path: Path,
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(2))
    done = batchrun(tmp_path, "run", "jobs.jsonl", *RUN)
    assert done.returncode == 0, done.stderr
    assert loaded_by(tmp_path, "status") == ["polars", "sqlalchemy"]


def test_a_run_on_the_simulator_leaves_the_server_to_the_child(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(2))
    # On a database already made: creating one runs alembic, which loads every dialect.
    assert batchrun(tmp_path, "db", "upgrade").returncode == 0
    loaded = loaded_by(tmp_path, "run", "jobs.jsonl", *RUN)
    assert "aiohttp" in loaded
    assert not {
        "alembic",
        "anthropic",
        "uvicorn",
        "batchrun.sim.server",
        "sqlalchemy.dialects.postgresql",
    } & {*loaded}


def test_calls_carry_the_headers_the_sdk_would_send_without_importing_it() -> None:
    import anthropic

    from batchrun.api.client import sdk_headers

    sdk = anthropic.AsyncAnthropic(api_key="k", base_url="http://127.0.0.1:9")
    theirs = {
        name: value
        for name, value in sdk.default_headers.items()
        if isinstance(value, str) and name.lower() not in ("accept", "authorization", "x-api-key")
    }
    assert sdk_headers() == theirs  # the API version too: move API_VERSION with the SDK


def test_commands_close_their_stores_at_exit(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(2))
    assert batchrun(tmp_path, "run", "jobs.jsonl", *RUN).returncode == 0
    assert batchrun(tmp_path, "status", "--json").returncode == 0
    # SQLite removes its WAL files when the last connection closes: none was left open.
    assert sorted(p.name for p in tmp_path.glob("batchrun.db*")) == ["batchrun.db"]
    document = orjson.loads(batchrun(tmp_path, "status", "--json").stdout)
    assert document["requests"]


def test_load_sender_leaves_the_collector_as_it_found_it() -> None:
    from batchrun.cli.startup import load_sender

    try:
        load_sender()
        assert gc.isenabled()
        gc.disable()
        load_sender()
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()

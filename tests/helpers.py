"""Helpers the test modules share: the SDK pointed at a simulator, and the CLI run as a user runs
it. (Fixtures live in conftest.py; library-level runs in runharness.py.)"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anthropic

from batchrun.sim import RunningSimulator

API_KEY = "sk-test-not-a-real-key"
KEY = "sk-cli-test-0123456789-secret"  # the key the CLI tests give batchrun and their simulators


def make_client(sim: RunningSimulator, **kwargs: Any) -> anthropic.Anthropic:
    """A synchronous SDK client for ``sim``, with the SDK's own retries off."""
    return anthropic.Anthropic(
        base_url=f"{sim.base_url}/anthropic", api_key=API_KEY, max_retries=0, **kwargs
    )


def make_async_client(sim: RunningSimulator, **kwargs: Any) -> anthropic.AsyncAnthropic:
    """An asynchronous SDK client for ``sim`` on the aiohttp transport, retries off."""
    return anthropic.AsyncAnthropic(
        base_url=f"{sim.base_url}/anthropic",
        api_key=API_KEY,
        max_retries=0,
        http_client=anthropic.DefaultAioHttpClient(),
        **kwargs,
    )


def user(text: str) -> list[dict[str, Any]]:
    """A one-message conversation."""
    return [{"role": "user", "content": text}]


def batchrun(
    cwd: Path,
    *args: str,
    key: str | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the batchrun CLI in ``cwd``; with ``key``, as a user with an API key; ``env``: more
    variables for it."""
    variables = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MINIMAX_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")
    }
    variables.update(env or {})
    if key is not None:
        variables["MINIMAX_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "batchrun.cli", *args],
        cwd=cwd,
        env=variables,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def db_rows(path: Path, query: str) -> list[tuple[object, ...]]:
    """The rows of ``query`` on the SQLite file at ``path``."""
    with sqlite3.connect(path) as connection:
        return connection.execute(query).fetchall()


def wait_for_results(db: Path, count: int, timeout: float = 60) -> None:
    """Wait until the SQLite store at ``db`` holds ``count`` results (a run going on elsewhere)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                if db_rows(db, "select count(*) from results")[0][0] >= count:
                    return
            except sqlite3.OperationalError:
                pass  # the schema is being created
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} results after {timeout} s")

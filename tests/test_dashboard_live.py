"""Live pages (issue 17, Deliver 4), in Chromium: while a batch runs on the simulator the
Overview's figures change without a reload, and once it has finished nothing reruns."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.browser import CHROMIUM, browser_page, dashboard, show
from tests.helpers import db_rows
from tests.runharness import prompts, write_jobs

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="Chromium is not installed (apt-get install chromium); CI requires it",
)

TOKENS = "[data-testid='stMetric']:has-text('Tokens in / out') [data-testid='stMetricValue']"
# Counts every change Streamlit makes to the page: a rerun marks elements stale and redraws.
WATCH = """() => {
    window.changes = 0;
    new MutationObserver(list => { window.changes += list.length; })
        .observe(document.body, {subtree: true, childList: true, attributes: true,
                                 characterData: true});
}"""


def _run(tmp_path: Path) -> subprocess.Popen[bytes]:
    """`batchrun run` on the simulator at a slow pace, one request at a time: minutes of work."""
    write_jobs(tmp_path / "jobs.jsonl", prompts(200, model="MiniMax-M2.7", max_tokens=200))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    command = [sys.executable, "-m", "batchrun.cli", "run", "jobs.jsonl", "--yes"]
    command += ["--sim-time-scale", "0.3", "--concurrency", "1"]
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)


def _wait_for_results(db: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(sqlite3.OperationalError):  # its tables not made yet
            if db.exists() and db_rows(db, "select count(*) from results")[0][0]:
                return
        time.sleep(0.2)
    raise AssertionError("the run stored no result in a minute")


def _tokens(page: Page) -> str:
    return page.locator(TOKENS).first.inner_text()


def _changes(page: Page, first: str, within_s: float = 60) -> str:
    """The tokens figure once it differs from ``first`` (or still ``first`` after a minute)."""
    deadline = time.monotonic() + within_s
    while _tokens(page) == first and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    return _tokens(page)


@pytest.mark.slow  # a run, a Streamlit server and Chromium: about a minute
def test_overview_figures_refresh_while_a_batch_runs_and_rest_once_it_ends(
    tmp_path: Path,
) -> None:
    db = tmp_path / "batchrun.db"
    run = _run(tmp_path)
    try:
        _wait_for_results(db, run)
        with dashboard(db) as address, browser_page() as page:
            show(page, address, "overview", "requests finished")  # its progress bar
            first = _tokens(page)
            assert _changes(page, first) != first  # without a reload
            assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
            run.send_signal(signal.SIGINT)  # the run ends (paused), as a finished one would
            assert run.wait(timeout=60) == 130
            page.get_by_text("No batch is running").wait_for(timeout=60_000)
            page.wait_for_timeout(2_000)  # the last full run drawn
            total = db_rows(db, "select sum(input_tokens), sum(output_tokens) from results")[0]
            assert _tokens(page) == f"{total[0]:,} / {total[1]:,}"
            page.evaluate(WATCH)
            page.wait_for_timeout(12_000)  # more than two of the live pages' intervals
            assert page.evaluate("window.changes") == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()

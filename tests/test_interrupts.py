"""An interrupt Python dropped (raised inside a finalizer or weakref callback, where Python only
prints "Exception ignored in ...") is raised again where the work can stop: a SIGTERM while a
file loads still cancels the load (seen in CI: the run went on to send)."""

from __future__ import annotations

import gc
import signal
import sqlite3
import subprocess
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchrun import interrupts
from batchrun.api.endpoint import Endpoint
from batchrun.catalog import load_catalog
from batchrun.cli.errors import _raise_interrupt, is_interrupt
from batchrun.plan.planner import CHUNK, PlanOptions, file_digest, load_file
from batchrun.store import Store, database_url
from tests.runharness import prompts, write_jobs


@pytest.fixture(autouse=True)
def _nothing_pending() -> Iterator[None]:
    interrupts.taken()
    yield
    interrupts.taken()


class _Thing:
    pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_interrupt_raised_in_a_weakref_callback_is_raised_again() -> None:
    thing = _Thing()
    kept = weakref.ref(thing, lambda _ref: _raise_interrupt(signal.SIGTERM, None))
    del thing  # the callback runs here; Python prints its KeyboardInterrupt and goes on
    gc.collect()
    assert kept() is None
    with pytest.raises(KeyboardInterrupt):
        interrupts.raise_if_dropped()
    interrupts.raise_if_dropped()  # raised once: taken


def test_an_interrupt_that_arrived_is_not_raised_again() -> None:
    with pytest.raises(KeyboardInterrupt) as caught:
        _raise_interrupt(signal.SIGTERM, None)
    assert is_interrupt(caught.value)  # whoever acts on it takes it
    interrupts.raise_if_dropped()  # nothing pending


def test_a_dropped_interrupt_still_cancels_a_load(tmp_path: Path) -> None:
    path = write_jobs(tmp_path / "jobs.jsonl", prompts(CHUNK + 10))
    db = tmp_path / "batchrun.db"
    store = Store(database_url(str(db)))
    endpoint = Endpoint(base_url="http://127.0.0.1:9/anthropic", api_key=None, simulated=True)
    interrupts.requested()  # as the SIGTERM handler does, its exception lost in a finalizer
    try:
        with pytest.raises(KeyboardInterrupt):
            load_file(
                store,
                load_catalog(),
                path,
                PlanOptions(models=["MiniMax-M2.7"]),
                endpoint,
                digest=file_digest(path),
            )
    finally:
        store.close()
    with sqlite3.connect(db) as connection:
        statuses = connection.execute("select status from batches").fetchall()
    assert statuses == [("canceled",)]  # a part of the file is never continued as if whole


def test_a_dropped_interrupt_is_not_printed_but_other_unraisables_are() -> None:
    script = (
        "import signal, sys, weakref\n"
        "from batchrun import interrupts\n"
        "from batchrun.cli.errors import _raise_interrupt, interrupt_on_sigterm\n"
        "interrupt_on_sigterm()\n"
        "class T: pass\n"
        "t = T()\n"
        "r = weakref.ref(t, lambda _r: _raise_interrupt(signal.SIGTERM, None))\n"
        "del t\n"
        "u = T()\n"
        "s = weakref.ref(u, lambda _r: 1 / 0)\n"
        "del u\n"
        "try:\n"
        "    interrupts.raise_if_dropped()\n"
        "except KeyboardInterrupt:\n"
        "    print('raised again')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "raised again", done.stderr
    assert "KeyboardInterrupt" not in done.stderr
    assert "ZeroDivisionError" in done.stderr  # what is not an interrupt is still said

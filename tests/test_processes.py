"""No process outlives batchrun (issue 18, item 10): the simulator `batchrun run` starts ends
when the run is killed with SIGKILL mid-batch, and `batchrun dashboard` stops its Streamlit
server on SIGINT and SIGTERM, and takes it along on SIGKILL. Real processes on the loopback
interface; every wait is bounded, and every process a test starts is killed in a finally."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from batchrun.sim.lifeline import GRACE_SECONDS, spawn
from tests.helpers import db_rows, wait_for_results
from tests.runharness import prompts, write_jobs

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")

M27 = "MiniMax-M2.7"
GONE_SECONDS = GRACE_SECONDS + 10  # the slowest way a child may take to end


def _state(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a live process; None once it has ended (a zombie has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, parent = stat.rpartition(")")[2].split()[:2]
    return None if state in "ZX" else (state, int(parent))


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := _state(int(entry.name))) is not None:
            parents[int(entry.name)] = found[1]
    below, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        below += children
        frontier = children
    return below


def wait_gone(pids: list[int], timeout: float = GONE_SECONDS) -> list[int]:
    """Wait until none of ``pids`` is alive; return those still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (alive := [p for p in pids if _state(p) is not None]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def serves(port: int) -> bool:
    """Whether anything accepts connections on 127.0.0.1:``port``."""
    with contextlib.closing(socket.socket()) as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        if _state(pid) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def batchrun_process(cwd: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], list[int]]]:
    """`batchrun ARGS` started without an API key, and a list for the pids of its children; it,
    they and anything still below it are killed after."""
    env = {k: v for k, v in os.environ.items() if k not in ("MINIMAX_API_KEY", "ANTHROPIC_API_KEY")}
    process = subprocess.Popen(
        [sys.executable, "-m", "batchrun.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    children: list[int] = []
    try:
        yield process, children
    finally:
        children += descendants(process.pid)
        process.kill()
        process.wait(timeout=10)
        kill_all(children)
        if process.stderr is not None:
            process.stderr.close()


def test_sigkill_of_run_mid_batch_takes_its_simulator_along(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(300))
    run_args = ("run", "jobs.jsonl", "--models", M27, "--sim-time-scale", "1", "--yes")
    with batchrun_process(tmp_path, *run_args) as (run, children):
        wait_for_results(tmp_path / "batchrun.db", 1)
        assert run.poll() is None, "the batch ended before it could be killed mid-way"
        simulators = descendants(run.pid)
        children.extend(simulators)
        assert simulators, "no simulator process under `batchrun run`"
        base_url = db_rows(tmp_path / "batchrun.db", "select base_url from batches")[0][0]
        port = urlsplit(str(base_url))
        assert port.hostname == "127.0.0.1"
        assert port.port is not None
        assert serves(port.port)
        run.kill()
        run.wait(timeout=10)
        assert wait_gone(simulators) == [], "the simulator outlived `batchrun run`"
        assert not serves(port.port)
    finished = db_rows(tmp_path / "batchrun.db", "select count(*) from results")[0][0]
    assert 0 < finished < 300  # killed mid-batch


def _wait_healthy(process: subprocess.Popen[bytes], port: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = process.stderr.read().decode() if process.stderr else ""
            raise AssertionError(f"the dashboard exited with {process.returncode}: {said}")
        with contextlib.suppress(OSError):
            url = f"http://127.0.0.1:{port}/_stcore/health"
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise AssertionError(f"the dashboard did not answer within {timeout:.0f} s")


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_the_dashboard_server_ends_with_the_dashboard(tmp_path: Path, how: signal.Signals) -> None:
    port = free_port()
    db = str(tmp_path / "batchrun.db")
    command = ("dashboard", "--db", db, "--port", str(port))
    with batchrun_process(tmp_path, *command) as (dashboard, children):
        _wait_healthy(dashboard, port)
        servers = descendants(dashboard.pid)
        children.extend(servers)
        assert servers, "no Streamlit process under `batchrun dashboard`"
        dashboard.send_signal(how)
        code = dashboard.wait(timeout=GONE_SECONDS)
        assert code == (-signal.SIGKILL if how == signal.SIGKILL else 130)
        assert wait_gone(servers) == [], f"Streamlit outlived `batchrun dashboard` ({how.name})"
        assert not serves(port)


def test_a_child_whose_parent_lets_go_stops() -> None:
    """The portable guard alone: the pipe's end (here: the block left) stops the child."""
    command = [sys.executable, "-m", "batchrun.sim", "--host=127.0.0.1", "--port=0"]
    started = time.monotonic()
    with spawn(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as child:
        try:
            ready = child.stdout.readline() if child.stdout else ""
            assert "listening on" in ready
            port = urlsplit(ready.rsplit(" ", 1)[1].strip()).port
            assert port is not None
            assert serves(port)
        except BaseException:
            child.kill()
            raise
    # the block waited for the child: it ended without being told to, well within its grace
    assert child.returncode is not None
    assert time.monotonic() - started < GONE_SECONDS + 30
    assert not serves(port)

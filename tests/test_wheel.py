"""The wheel as a user installs it: built from this checkout, installed into a fresh virtualenv
outside it, and run from a directory outside it on the built-in simulator.

Installing the dependencies from pip's cache takes about half a minute (``make setup`` has filled
the cache with the same versions), so this runs with the rest of ``make test``; its timeout is
generous for a busy machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.runharness import prompts, write_jobs

# Building and installing the wheel takes 20-60 s: make test-slow (and .ci/run) runs it.
pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

CHECKOUT = Path(__file__).resolve().parent.parent
M27 = "MiniMax-M2.7"
NOT_SOURCE = (".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "*.db", "*.db-*")
# What the installed batchrun must not see: a key (the simulator runs only without one), a
# database chosen elsewhere, and any path back into the checkout.
HIDDEN = ("MINIMAX_API_KEY", "ANTHROPIC_API_KEY", "BATCHRUN_DB", "PYTHONPATH", "VIRTUAL_ENV")


@dataclass(frozen=True)
class Installed:
    venv: Path
    work: Path  # an empty working directory outside the checkout

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """A program of the virtualenv (``batchrun``, ``python``) in ``work``."""
        return run_process([str(self.venv / "bin" / args[0]), *args[1:]], self.work, timeout)


def run_process(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in its own session, and kill what is left of that session afterwards."""
    env = {k: v for k, v in os.environ.items() if k not in HIDDEN}
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as child:
        try:
            out, err = child.communicate(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)  # the session's stragglers, if any
            child.wait()
    return subprocess.CompletedProcess(command, child.returncode, out, err)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    dist, env_dir, work = root / "dist", root / "venv", root / "work"
    work.mkdir()
    # Built from a copy: a build/ folder left in the checkout could put stale files in the wheel.
    source = root / "source"
    shutil.copytree(CHECKOUT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    build = run_process(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(source), "-w", str(dist)],
        root,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = dist.glob("batchrun-*.whl")
    venv.create(env_dir, with_pip=True)
    install = run_process(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        root,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return Installed(venv=env_dir, work=work)


def test_the_installed_package_comes_from_the_virtualenv(installed: Installed) -> None:
    shown = installed.run(
        "python",
        "-c",
        "import json, batchrun, batchrun.migrations as m; from importlib.resources import files;"
        "from batchrun.cli.dashboard import streamlit_command;"
        "print(json.dumps([batchrun.__file__, str(files(m) / 'env.py'),"
        " streamlit_command('127.0.0.1', 8501)[4]]))",
    )
    assert shown.returncode == 0, shown.stderr
    package, migrations_env, app = (Path(p) for p in json.loads(shown.stdout))
    site = installed.venv.resolve()
    for path in (package, migrations_env, app):
        assert path.resolve().is_relative_to(site), path
        assert not path.resolve().is_relative_to(CHECKOUT), path
        assert path.is_file(), path
    assert app.parts[-3:] == ("batchrun", "dashboard", "app.py")
    assert any((migrations_env.parent / "versions").glob("*.py"))


def test_the_installed_cli_runs_a_batch_on_the_simulator(installed: Installed) -> None:
    work = installed.work
    write_jobs(work / "jobs.jsonl", prompts(3))
    fresh = installed.run("batchrun", "status", "--db", "fresh.db")
    assert fresh.returncode == 2, fresh.stderr
    assert "no batches in this database yet" in fresh.stderr  # its schema made, then read

    done = installed.run(
        "batchrun", "run", "jobs.jsonl", "--models", M27, "--sim-time-scale", "0", "--name", "w"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "simulator" in (done.stdout + done.stderr).lower()

    status = installed.run("batchrun", "status", "w", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert (report["name"], report["status"], report["simulated"]) == ("w", "completed", True)
    assert report["requests"] == {M27: {"succeeded": 3}}

    exported = installed.run("batchrun", "results", "w")
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [row["custom_id"] for row in rows] == ["job-0000", "job-0001", "job-0002"]
    assert {row["model"] for row in rows} == {M27}
    assert all(row["result"]["type"] == "succeeded" for row in rows), rows
    assert (work / "batchrun.db").is_file()

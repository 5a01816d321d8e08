"""bench/simload.py, the load both simulator benchmarks drive it with, against the real
simulator over HTTP: every request answered (a refused one fails the benchmark), and
bench/sim_paced.py as README runs it, at a small size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from batchrun.sim import SimSettings, simulator_process
from batchrun.sim.loop import run_fast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import simload  # noqa: E402 - bench/ is not a package: its scripts import each other by name


@pytest.mark.parametrize("stream", [True, False])
def test_every_request_of_the_load_is_answered(stream: bool) -> None:
    settings = SimSettings(time_scale=0, limits=False, seed=3)
    with simulator_process(settings) as sim:
        url = f"{sim.base_url}/v1/messages"
        wall = run_fast(
            simload.drive(
                url, model="MiniMax-M3", tokens=30, count=40, concurrency=8, stream=stream
            )
        )
        stats = sim.fetch_stats()
    assert wall > 0
    assert stats["messages_total"] == 40, stats
    assert stats["models"]["MiniMax-M3"]["ok"] == 40, stats


def test_sim_paced_runs_as_readme_writes_it(tmp_path: Path) -> None:
    out = tmp_path / "sim_paced.md"
    command = [sys.executable, "bench/sim_paced.py", "--rounds", "1", "--concurrency", "8",
               "--requests", "24", "--tokens", "20", "--out", str(out)]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "CPU per token written" in done.stdout
    assert "CPU per token written" in out.read_text()

"""MiniMax's own Python examples run against the simulator, as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchrun.sim import RunningSimulator
from tests.helpers import API_KEY

EXAMPLES = Path(__file__).parent / "reference_examples"


def run_example(source: str, sim: RunningSimulator) -> str:
    env = {
        **os.environ,
        "ANTHROPIC_BASE_URL": f"{sim.base_url}/anthropic",
        "ANTHROPIC_API_KEY": API_KEY,
    }
    done = subprocess.run(
        [sys.executable, "-c", source],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("name", "expected"),
    [("quick_start.py", "Text:\n"), ("streaming.py", "Response Content:")],
)
def test_example_runs_unchanged_with_environment(
    sim: RunningSimulator, name: str, expected: str
) -> None:
    output = run_example((EXAMPLES / name).read_text(), sim)
    assert expected in output
    assert len(output.split()) > 20  # the answer's words were printed


def test_model_invocation_example_with_its_url_and_key_pointed_at_the_simulator(
    sim: RunningSimulator,
) -> None:
    # This example passes base_url and api_key as literals, so the environment cannot redirect
    # it; only those two literals are replaced.
    source = (EXAMPLES / "model_invocation.py").read_text()
    source = source.replace("https://api.minimax.io/anthropic", f"{sim.base_url}/anthropic")
    source = source.replace("<MINIMAX_API_KEY>", API_KEY)
    assert "Text:\n" in run_example(source, sim)

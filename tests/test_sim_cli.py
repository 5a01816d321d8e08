"""``batchrun sim`` as a user runs it: a separate process on a loopback port."""

from __future__ import annotations

import signal
import subprocess
import sys

import anthropic
import pytest

from batchrun.sim import SimSettings, simulator_process
from batchrun.sim.host import READY_PREFIX
from batchrun.sim.settings import FaultRates
from tests.helpers import API_KEY, user


def test_process_serves_the_sdk_and_passes_settings_through() -> None:
    settings = SimSettings(
        time_scale=0,
        seed=5,
        api_key=API_KEY,
        rpm={"MiniMax-M2": 2},
        limit_window=60,
        faults=FaultRates(overloaded=0.0),
        model_faults={"MiniMax-M2.5": FaultRates(auth=1.0)},
    )
    with simulator_process(settings) as sim:
        assert sim.base_url.startswith("http://127.0.0.1:")
        with anthropic.Anthropic(base_url=sim.base_url, api_key=API_KEY, max_retries=0) as sdk:
            for _ in range(2):
                sdk.messages.create(model="MiniMax-M2", max_tokens=20, messages=user("x"))
            with pytest.raises(anthropic.RateLimitError):
                sdk.messages.create(model="MiniMax-M2", max_tokens=20, messages=user("x"))
            with pytest.raises(anthropic.AuthenticationError):
                sdk.messages.create(model="MiniMax-M2.5", max_tokens=20, messages=user("x"))
        stats = sim.fetch_stats()
    assert stats["models"]["MiniMax-M2"]["ok"] == 2
    assert stats["models"]["MiniMax-M2"]["429"] == 1
    assert stats["models"]["MiniMax-M2.5"]["4xx"] == 1


def test_cli_stops_cleanly_on_sigterm() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "batchrun.sim", "--port", "0", "--time-scale", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(READY_PREFIX + "http://127.0.0.1:")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--faults", "529=2"], "rate must be in [0, 1]"),
        (["--faults", "boom=0.1"], "bad fault"),
        (["--quirks", "sideways"], "unknown quirk"),
        (["--rpm", "MiniMax-M2=fast"], "bad --rpm"),
    ],
)
def test_cli_rejects_bad_options_with_a_clear_message(args: list[str], fragment: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "batchrun.sim", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr

"""How much of a dashboard page's time is Streamlit itself: a bare page (bench/floor_app.py: one
st.metric, one small Altair chart) timed in Chromium by the same harness as
bench/dashboard_speed.py, cold (a fresh server, first visit) and warm (the page again).

    python bench/dashboard_floor.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dashboard_speed import KEY_FIGURES, Timing, timed
from procstat import load, machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/browser.py, from a checkout
from batchrun.sim.lifeline import spawn
from tests.browser import _wait_healthy, browser_page, free_port

APP = Path(__file__).resolve().parent / "floor_app.py"


@contextmanager
def served() -> Iterator[tuple[str, int]]:
    """A fresh Streamlit server of the bare page on 127.0.0.1; its address and process id."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless=true",
               "--server.address=127.0.0.1", f"--server.port={port}",
               "--browser.gatherUsageStats=false"]  # fmt: skip
    with spawn(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT) as server:
        address = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(address, server, 120)
            yield address, server.pid
        finally:
            server.terminate()


def main(argv: list[str] | None = None) -> None:
    """Time the bare page cold and warm, ``--rounds`` times; print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="fresh servers to time")
    args = parser.parse_args(argv)
    cold: list[Timing] = []
    warm: list[Timing] = []
    with browser_page() as page:
        for _ in range(args.rounds):
            with served() as (address, pid):
                cold.append(timed(page, f"{address}/", KEY_FIGURES["overview"], pid))
                warm.extend(timed(page, f"{address}/", KEY_FIGURES["overview"], pid)
                            for _ in range(3))  # fmt: skip
    print(f"{machine()}; {load()} when done; median of {len(cold)} cold, {len(warm)} warm")
    print("| bare Streamlit page | cold | warm |")
    print("|---|---:|---:|")
    print(f"| one metric, one chart | {_cell(cold)} | {_cell(warm)} |")


def _cell(timings: list[Timing]) -> str:
    seconds = statistics.median(t[0] for t in timings)
    cpu = statistics.median(t[1] for t in timings)
    return f"{seconds:.2f} ({cpu:.2f})"


if __name__ == "__main__":
    main()

"""What a run shows: the live table, the plain progress line, the end summary."""

from __future__ import annotations

import io
import time

import polars as pl
from rich.console import Console

from batchrun.cli.display import progress_line, progress_table, quota_waits, summary_table
from batchrun.run.progress import ModelProgress, RunProgress, eta_text


def _render(renderable: object) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=200).print(renderable)
    return buffer.getvalue()


def _row(text: str, model: str) -> list[str]:
    """The cells of the table row whose first cell is ``model``."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if cells[0] == model:
            return cells
    raise AssertionError(f"no row for {model} in\n{text}")


def _progress() -> RunProgress:
    fast = ModelProgress(
        model="MiniMax-M2.7", total=10, succeeded=4, errored=1, spent_nanos=2_500_000
    )
    slow = ModelProgress(model="MiniMax-M3", total=5, invalid=1, unpriced=2, stopped="key refused")
    for t in (100.0, 101.0, 102.0, 103.0, 104.0):
        fast.finished(now=t)
    return RunProgress(models={"MiniMax-M2.7": fast, "MiniMax-M3": slow})


def test_live_table_shows_each_model_with_spend_rate_and_eta() -> None:
    text = _render(progress_table(_progress()))
    assert "MiniMax-M2.7" in text
    assert "MiniMax-M3 (stopped)" in text
    assert "$0.002500" in text
    assert "+2 unpriced" in text
    done, failed, remaining = _row(text, "MiniMax-M2.7")[1:4]
    assert (done, failed, remaining) == ("4", "1", "5")  # remaining: 10 - 4 - 1
    assert _row(text, "MiniMax-M3 (stopped)")[1:4] == ["0", "1", "4"]  # 5 - 1 invalid


def test_rate_and_eta_come_from_recent_completions() -> None:
    model = _progress().of("MiniMax-M2.7")
    assert model.rate(window=10.0, now=105.0) == 0.5
    assert model.remaining == 5
    assert eta_text(10.0) == "0m10s"
    assert eta_text(3725.0) == "1h02m"
    assert eta_text(None) == "?"


def test_plain_line_totals_every_model() -> None:
    line = progress_line(_progress())
    assert "4 done, 2 failed, 9 remaining" in line
    assert "$0.002500 spent" in line


def test_summary_never_shows_unpriced_as_zero() -> None:
    summary = pl.DataFrame(
        [
            {"model": "MiniMax-M2.7", "requests": 2, "success_rate": 1.0, "latency_p50": 1.5,
             "latency_p90": 2.0, "ttft_p50": 0.5, "output_tps_p50": 60.0, "input_tokens": 10,
             "output_tokens": 20, "cost_nanos": None, "unpriced": 2},
        ]
    )  # fmt: skip
    text = _render(summary_table(summary, "t"))
    assert "- + 2 unpriced" in text
    assert "$0.000000" not in text
    assert "1.50s" in text
    assert "100.0%" in text


def test_a_model_waiting_for_its_quota_shows_until_when_and_how_long() -> None:
    progress = _progress()
    model = progress.of("MiniMax-M2.7")
    reset = 1778857200.0  # 2026-05-15T15:00:00Z
    model.pause_for_quota(reset, now=reset - 252)
    assert model.quota_note(now=reset - 252) == (
        "waiting for the plan's quota until 15:00:00 UTC, 4m12s"
    )
    assert model.quota_note(now=reset + 1) is None  # over: nothing shown
    assert model.quota_waited(now=reset - 52) == 200
    assert model.quota_waited(now=reset + 100) == 252  # only until the reset
    model.pause_for_quota(reset + 600, now=reset + 500)  # a second pause, later
    assert model.quota_waited(now=reset + 700) == 252 + 100


def test_the_live_table_and_the_plain_line_show_the_quota_wait() -> None:
    progress = _progress()
    progress.of("MiniMax-M2.7").pause_for_quota(time.time() + 250)
    table = _render(progress_table(progress))
    assert "MiniMax-M2.7 (waiting for the plan's quota until" in table
    line = progress_line(progress)
    assert "; MiniMax-M2.7 waiting for the plan's quota until" in line
    assert " UTC, 4m" in line
    waits = quota_waits(progress)
    assert len(waits) == 1
    assert waits[0].startswith("MiniMax-M2.7 waited 0m0")

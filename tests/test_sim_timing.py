"""The simulator's timing log (issue 19): the truth to check batchrun's stored timings by."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import cast

import orjson
import pytest

from batchrun.exceptions import SimulatorError
from batchrun.sim import SimSettings, simulator_process
from batchrun.sim.cli import settings_from_args
from batchrun.sim.host import settings_to_args
from batchrun.sim.timing import TimingLog, read_timing_log
from tests.helpers import KEY, batchrun, db_rows
from tests.runharness import prompts, write_jobs

M27 = "MiniMax-M2.7"


@pytest.mark.slow  # a real CLI run at time scale 0.2: about 10 s quiet, 34 s on a busy machine
def test_every_stored_result_matches_the_log_within_a_few_ms(tmp_path: Path) -> None:
    log = tmp_path / "timing.jsonl"
    settings = SimSettings(
        time_scale=0.2, limits=False, seed=5, api_key=KEY, output_median=40, timing_log=log
    )
    write_jobs(tmp_path / "jobs.jsonl", prompts(24))
    with simulator_process(settings) as sim:
        done = batchrun(
            tmp_path, "run", "jobs.jsonl", "--models", M27, "--base-url",
            f"{sim.base_url}/anthropic", "--no-precheck", "--yes", key=KEY,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert not log.exists()  # the log appears whole, when the simulator stops
    truth = read_timing_log(log)
    rows = db_rows(
        tmp_path / "batchrun.db", "select message, sent_at, first_token_s, done_s from results"
    )
    assert len(rows) == 24
    ttft_errors: list[float] = []
    done_errors: list[float] = []
    for message, sent_at, first_token_s, done_s in cast(
        list[tuple[str, float, float, float]], rows
    ):
        true = truth[orjson.loads(message)["id"]]
        assert true["model"] == M27
        assert len(str(true["request_id"])) == 32
        ttft_errors.append(first_token_s - (true["first_token"] - sent_at))
        done_errors.append(done_s - (true["last_byte"] - sent_at))
    # A client reads a token after the server wrote it: never before it (clock reads aside).
    assert min(ttft_errors) > -0.002
    assert min(done_errors) > -0.002
    assert statistics.median(ttft_errors) < 0.005
    assert max(ttft_errors) < 0.05  # a shared, busy machine: a generous ceiling
    assert statistics.median(done_errors) < 0.005


def test_the_log_is_off_by_default_and_never_overwrites(tmp_path: Path) -> None:
    assert SimSettings().timing_log is None
    taken = tmp_path / "taken.jsonl"
    taken.write_text("keep me\n")
    with pytest.raises(SimulatorError, match="exists already"):
        TimingLog(taken)
    assert taken.read_text() == "keep me\n"
    assert list(tmp_path.iterdir()) == [taken]  # no partial file left behind


def test_a_log_written_while_nothing_was_served_is_empty(tmp_path: Path) -> None:
    log = tmp_path / "empty.jsonl"
    with TimingLog(log):
        pass
    assert log.read_bytes() == b""
    assert read_timing_log(log) == {}


def test_the_option_reaches_a_simulator_process(tmp_path: Path) -> None:
    log = tmp_path / "t.jsonl"
    settings = settings_from_args([f"--timing-log={log}"])
    assert settings.timing_log == log
    assert settings_from_args(settings_to_args(settings)) == settings

"""A full disk loses no paid answer: real runs (`batchrun` in a subprocess) on a small real tmpfs
that this test fills up mid-run, against the simulator, whose counters say what was served.

Every succeeded call the simulator served is either committed or in the unsaved file, which
`batchrun import` (or the next resume, by itself) brings back; the batch is paused, never left
running; a resume on the still-full disk sends nothing; once space is freed, a resume finishes
with one result per request and one served call per request.

Mounting needs root (or CAP_SYS_ADMIN): elsewhere these tests skip, saying so, except under
CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from batchrun.run import unsaved
from batchrun.run.space import free_bytes
from batchrun.sim import RunningSimulator, SimSettings, simulator_process
from batchrun.store import Outcome
from tests.helpers import KEY, batchrun, db_rows, wait_for_results
from tests.runharness import prompts, write_jobs

M27 = "MiniMax-M2.7"
JOBS = 120
MARGIN = ("--min-free-space", "1MB")  # the disks here are a few MB; the default is 64 MiB


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted on ``path`` for the block; unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until its disk is full, to the last block."""
    with path.open("ab", buffering=0) as handle:
        for block in (1 << 20, 1 << 16, 1 << 12):
            try:
                while True:
                    handle.write(b"\0" * block)
            except OSError:
                continue
    assert free_bytes(path.parent) < 4096


@pytest.fixture
def places(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A 12 MB disk holding the database and the working directory, and a home and temporary
    directory elsewhere."""
    with tmpfs(tmp_path / "disk", "12m") as disk:
        found = {"disk": disk, "home": tmp_path / "home", "tmp": tmp_path / "tmp"}
        found["home"].mkdir()
        found["tmp"].mkdir()
        write_jobs(disk / "jobs.jsonl", prompts(JOBS))
        yield found


def _env(places: dict[str, Path]) -> dict[str, str]:
    return {"HOME": str(places["home"]), "TMPDIR": str(places["tmp"])}


def _start_run(places: dict[str, Path], sim: RunningSimulator) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchrun.cli", "run", "jobs.jsonl", "--models", M27,
         "--base-url", f"{sim.base_url}/anthropic", "--yes", "--name", "full",
         "--concurrency", "8", "--rpm", "1000000", *MARGIN],
        cwd=places["disk"], env={**os.environ, **_env(places), "MINIMAX_API_KEY": KEY},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _resume(places: dict[str, Path], sim: RunningSimulator) -> subprocess.CompletedProcess[str]:
    return batchrun(
        places["disk"], "resume", "full", "--base-url", f"{sim.base_url}/anthropic", "--yes",
        "--rpm", "1000000", *MARGIN, key=KEY, env=_env(places),
    )  # fmt: skip


def _unsaved_files(places: dict[str, Path]) -> list[Path]:
    return [p for d in places.values() for p in d.glob("batchrun-unsaved-*.jsonl")]


def _served_ok(sim: RunningSimulator) -> int:
    return int(sim.fetch_stats()["models"].get(M27, {}).get("ok", 0))


def _db(places: dict[str, Path]) -> Path:
    return places["disk"] / "batchrun.db"


def _status(places: dict[str, Path]) -> str:
    return str(db_rows(_db(places), "select status from batches")[0][0])


def _results(places: dict[str, Path]) -> set[str]:
    return {str(row[0]) for row in db_rows(_db(places), "select custom_id from results")}


def _run_until_full(places: dict[str, Path], sim: RunningSimulator) -> tuple[str, str]:
    """A run whose disk this test fills to the last block once 15 answers are committed."""
    with _start_run(places, sim) as process:
        wait_for_results(_db(places), 15)
        fill(places["disk"] / "filler")
        out, err = process.communicate(timeout=120)
    assert "Traceback" not in err, err[-3000:]
    assert process.returncode == 1, out[-3000:] + err[-3000:]  # requests are left pending
    return out, err


def _check_nothing_lost(places: dict[str, Path], sim: RunningSimulator, out: str) -> Path:
    """Every answer served is committed or in the one unsaved file (whole, named on screen)."""
    files = _unsaved_files(places)
    assert len(files) == 1, out
    assert files[0].name in out.replace("\n", "")
    lines = files[0].read_bytes().splitlines()
    kept = [orjson.loads(line) for line in lines]
    assert kept
    assert all(o["attempts"] for o in kept)
    kept_ok = {o["custom_id"] for o in kept if o["status"] == "succeeded"}
    saved = _results(places)
    assert not saved & kept_ok
    assert _served_ok(sim) == len(saved) + len(kept_ok)
    assert _status(places) == "paused"  # never left running, even on a full disk
    assert list(places["disk"].glob(".batchrun-reserve-*")) == []  # its room given back
    return files[0]


def _check_resume_on_full_disk_sends_nothing(
    places: dict[str, Path], sim: RunningSimulator, file: Path
) -> None:
    fill(places["disk"] / "filler-2")  # what the run freed at its end, taken again
    before = sim.fetch_stats()
    resumed = _resume(places, sim)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    assert "Traceback" not in resumed.stderr
    said = " ".join(resumed.stderr.split())
    assert "free in" in said
    assert "nothing was sent" in said
    after = sim.fetch_stats()
    assert after["messages_total"] == before["messages_total"]
    assert after["count_tokens_total"] == before["count_tokens_total"]
    assert file.exists()  # not imported, not lost
    assert _status(places) == "paused"


def _free(places: dict[str, Path]) -> None:
    for filler in places["disk"].glob("filler*"):
        filler.unlink()


def _check_finished(places: dict[str, Path], sim: RunningSimulator) -> None:
    resumed = _resume(places, sim)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _status(places) == "completed"
    rows = db_rows(_db(places), "select count(*), count(distinct request_id) from results")
    assert rows == [(JOBS, JOBS)]  # one result per request
    assert _served_ok(sim) == JOBS  # and each request paid for once
    assert _unsaved_files(places) == []


@pytest.mark.slow  # a disk filled mid-run, then import, ~25 s: make test-slow
def test_a_disk_filled_mid_run_loses_no_paid_answer_and_import_brings_them_back(
    places: dict[str, Path],
) -> None:
    settings = SimSettings(time_scale=0.05, limits=False, seed=18, api_key=KEY)
    with simulator_process(settings) as sim:
        out, _ = _run_until_full(places, sim)
        assert "database or disk is full" in out
        file = _check_nothing_lost(places, sim, out)
        _check_resume_on_full_disk_sends_nothing(places, sim, file)
        refused = batchrun(places["disk"], "import", str(file), env=_env(places))
        assert refused.returncode == 2
        assert "is kept as it was" in refused.stderr
        assert file.exists()
        _free(places)
        imported = batchrun(places["disk"], "import", str(file), env=_env(places))
        assert imported.returncode == 0, imported.stdout + imported.stderr
        assert "Imported" in imported.stdout
        assert _served_ok(sim) == len(_results(places))  # every served answer is in the database
        again = batchrun(
            places["disk"], "import", str(file.with_name(file.name + ".imported")),
            env=_env(places),
        )  # fmt: skip
        assert again.returncode == 0
        assert "Imported 0 " in again.stdout
        _check_finished(places, sim)


@pytest.mark.slow  # ~5-7 s; the import command's test runs by default
def test_the_next_resume_imports_the_unsaved_answers_by_itself(
    places: dict[str, Path],
) -> None:
    settings = SimSettings(time_scale=0.05, limits=False, seed=19, api_key=KEY)
    with simulator_process(settings) as sim:
        out, _ = _run_until_full(places, sim)
        file = _check_nothing_lost(places, sim, out)
        _check_resume_on_full_disk_sends_nothing(places, sim, file)
        moved = places["home"] / file.name  # found in the home directory too
        shutil.move(file, moved)
        _free(places)
        resumed = _resume(places, sim)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "Imported" in resumed.stdout
        assert _served_ok(sim) == JOBS  # none of the saved ones was sent again
        assert moved.with_name(moved.name + ".imported").exists()
        assert _status(places) == "completed"
        assert db_rows(_db(places), "select count(distinct request_id) from results") == [(JOBS,)]


def test_dispatch_stops_below_the_margin_and_everything_in_flight_is_committed(
    places: dict[str, Path],
) -> None:
    settings = SimSettings(time_scale=0.05, limits=False, seed=20, api_key=KEY)
    with simulator_process(settings) as sim:
        with subprocess.Popen(
            [sys.executable, "-m", "batchrun.cli", "run", "jobs.jsonl", "--models", M27,
             "--base-url", f"{sim.base_url}/anthropic", "--yes", "--name", "full",
             "--concurrency", "8", "--rpm", "1000000", "--min-free-space", "4MB"],
            cwd=places["disk"], env={**os.environ, **_env(places), "MINIMAX_API_KEY": KEY},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ) as process:  # fmt: skip
            wait_for_results(_db(places), 15)
            room = free_bytes(places["disk"]) - 3 * 1024 * 1024  # leave 3 MB: below the margin
            (places["disk"] / "filler").write_bytes(b"\0" * room)
            out, err = process.communicate(timeout=120)
        assert process.returncode == 1, out[-3000:] + err[-3000:]
        said = " ".join(out.split())
        assert "Stopped sending:" in said
        assert "--min-free-space" in said
        assert _unsaved_files(places) == []  # the margin held what was in flight
        assert _served_ok(sim) == len(_results(places)) < JOBS
        assert _status(places) == "paused"


def test_a_disk_short_of_space_before_the_run_sends_nothing(places: dict[str, Path]) -> None:
    fill(places["disk"] / "filler")
    settings = SimSettings(time_scale=0.0, limits=False, seed=21, api_key=KEY)
    with simulator_process(settings) as sim:
        done = batchrun(
            places["disk"], "run", "jobs.jsonl", "--models", M27,
            "--base-url", f"{sim.base_url}/anthropic", "--yes", key=KEY, env=_env(places),
        )  # fmt: skip
        stats = sim.fetch_stats()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    said = " ".join(done.stderr.split())
    assert "below the 64.0 MiB batchrun keeps free (--min-free-space)" in said
    assert stats["messages_total"] == 0
    assert stats["count_tokens_total"] == 0


def test_unsaved_answers_go_to_the_next_directory_with_room(tmp_path: Path) -> None:
    outcome = Outcome(
        request_id=1, batch_id="b1", model=M27, custom_id="job-1", status="succeeded",
        result={"text": "an answer that was paid for", "output_tokens": 7},
    )  # fmt: skip
    with tmpfs(tmp_path / "full", "1m") as full:
        fill(full / "filler")
        home = tmp_path / "home"
        home.mkdir()
        order = unsaved.directories(full, full, home, tmp_path)
        assert order == [full.resolve(), home.resolve(), tmp_path.resolve()]
        saved = unsaved.save([outcome], "b1", order)
    assert saved.path is not None
    assert saved.path.parent == home.resolve()
    assert [d for d, _ in saved.refused] == [full.resolve()]
    assert [p.name for p in home.iterdir()] == [saved.path.name]  # no temporary file left
    outcomes, bad = unsaved.read(saved.path)
    assert bad == []
    assert outcomes == [outcome]

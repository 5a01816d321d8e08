"""Issue 18, item 8: the numbers a user reads are the stored truth.

`status --json` counts each model's retries from the attempts table and says which rows are
simulated; `spend`, `status`, the end-of-run summary and the dashboard keep what simulated
results would have cost apart from real spend (never added together); estimates say which past
results their expected output comes from. The store here holds both: simulated batches (the
runner against a simulator, marked simulated) and "real" ones (`batchrun run` with a key and
`--base-url` pointing at a separately started simulator process, which batchrun cannot tell from
MiniMax, so it counts as real). Where retries are counted, both simulators inject faults.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from streamlit.testing.v1 import AppTest

from batchrun.run.retry import RetryPolicy
from batchrun.sim import RunningSimulator, SimSettings, simulator_process
from batchrun.sim.settings import FaultRates
from batchrun.store import Store
from batchrun.store.database import database_url
from tests.helpers import KEY, batchrun, db_rows
from tests.runharness import prompts, run_jobs, write_jobs

M27, M3 = "MiniMax-M2.7", "MiniMax-M3"
FAULTS = FaultRates(overloaded=0.25, server_error=0.1)  # retried; some requests fail for good
APP = Path(__file__).parent.parent / "batchrun" / "dashboard" / "app.py"


def real_endpoint(faults: FaultRates) -> Iterator[str]:
    """A separately started simulator process: with a key, batchrun sends to it as to MiniMax
    (results not simulated). Yields its base URL."""
    settings = SimSettings(time_scale=0.0, seed=11, limits=False, api_key=KEY, faults=faults)
    with simulator_process(settings) as sim:
        yield f"{sim.base_url}/anthropic"


@pytest.fixture
def faulty_real_sim() -> Iterator[str]:
    """A "real" endpoint that refuses one call in five (529): the CLI's own backoff retries."""
    yield from real_endpoint(FaultRates(overloaded=0.2))


@pytest.fixture
def real_sim() -> Iterator[str]:
    """A "real" endpoint without faults, for the tests about money and history."""
    yield from real_endpoint(FaultRates())


@pytest.fixture
def faulty_sim(sim_factory: Callable[..., RunningSimulator]) -> RunningSimulator:
    """The simulator the simulated batches run on, faults included."""
    return sim_factory(faults=FAULTS, limits=False)


def simulated_batch(tmp_path: Path, sim: RunningSimulator, count: int, attempts: int = 8) -> str:
    """A batch run by the runner on ``sim`` into tmp_path's store, marked simulated; its name."""
    tmp_path.joinpath("simulated").mkdir(exist_ok=True)
    run = run_jobs(
        tmp_path / "simulated",
        sim,
        prompts(count),
        [M27],
        db=tmp_path / "batchrun.db",
        retry=RetryPolicy(max_attempts=attempts, base_delay=0.01, max_delay=0.05),
    )
    run.store.close()
    return run.plan.batch.name


def real_run(tmp_path: Path, base_url: str, name: str, count: int, *more: str) -> Any:
    """`batchrun run` with a key against ``base_url``: a real batch as batchrun sees it."""
    write_jobs(tmp_path / f"{name}.jsonl", prompts(count))
    done = batchrun(
        tmp_path, "run", f"{name}.jsonl", "--models", f"{M27},{M3}", "--base-url", base_url,
        "--name", name, "--yes", "--max-attempts", "4", *more, key=KEY,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: some failed for good
    return done


def status(tmp_path: Path, name: str) -> dict[str, Any]:
    shown = batchrun(tmp_path, "status", name, "--json")
    assert shown.returncode == 0, shown.stderr
    document: dict[str, Any] = orjson.loads(shown.stdout)
    return document


def attempts_retries(db: Path, name: str) -> dict[str, int]:
    """Per model, calls beyond each request's first, counted on the attempts table itself."""
    rows = db_rows(
        db,
        "SELECT a.model, count(*) - count(DISTINCT a.request_id) FROM attempts a "
        f"JOIN batches b ON b.id = a.batch_id WHERE b.name = '{name}' GROUP BY a.model",
    )
    return {str(model): int(str(n)) for model, n in rows}


def costs(db: Path, simulated: bool) -> int:
    [(total,)] = db_rows(
        db, f"SELECT coalesce(sum(cost_nanos), 0) FROM results WHERE simulated = {int(simulated)}"
    )
    return int(str(total))


def usd(nanos: int) -> str:
    from batchrun.pricing import usd as shown

    return shown(nanos)


# --------------------------------------------------------------------------- status --json


@pytest.mark.slow  # ~5-8 s; make test-slow; keeps the default run near 10 minutes
def test_status_counts_retries_from_the_attempts_table_and_marks_simulated_rows(
    tmp_path: Path, faulty_real_sim: str, faulty_sim: RunningSimulator
) -> None:
    db = tmp_path / "batchrun.db"
    sim_name = simulated_batch(tmp_path, faulty_sim, 30)
    real_run(tmp_path, faulty_real_sim, "real", 12)

    for name, simulated in ((sim_name, True), ("real", False)):
        document = status(tmp_path, name)
        assert document["simulated"] is simulated
        rows = {row["model"]: row for row in document["models"]}
        truth = attempts_retries(db, name)
        assert sum(truth.values()) > 0, "the faults made no retries: the test proves nothing"
        assert {m: r["retries"] for m, r in rows.items()} == {m: truth.get(m, 0) for m in rows}
        assert all(row["simulated"] is simulated for row in rows.values())
        spent = document["spend"]
        assert spent["simulated" if simulated else "real"]["results"] == sum(
            r["succeeded"] for r in rows.values()
        )
        assert spent["real" if simulated else "simulated"] is None  # nothing of the other kind


@pytest.mark.slow  # ~9 s of CLI runs: make test-slow
def test_a_batch_resumed_against_the_other_endpoint_keeps_its_two_kinds_apart(
    tmp_path: Path, real_sim: str, faulty_sim: RunningSimulator
) -> None:
    """Simulated first (one attempt each: some fail), then resumed with a key: the failed ones
    get real results. Every figure of the batch stays split by origin."""
    db = tmp_path / "batchrun.db"
    name = simulated_batch(tmp_path, faulty_sim, 30, attempts=1)
    [(failed,)] = db_rows(db, "SELECT count(*) FROM requests WHERE status = 'errored'")
    assert int(str(failed)) > 0
    resumed = batchrun(
        tmp_path, "resume", name, "--retry-errored", "--base-url", real_sim, "--yes", key=KEY
    )
    assert resumed.returncode in (0, 1), resumed.stdout + resumed.stderr
    assert "mixes simulated and real results" in resumed.stdout
    # The end of the run: one row per origin, and the two costs apart in the caption.
    real_cost, sim_cost = costs(db, simulated=False), costs(db, simulated=True)
    assert real_cost > 0
    assert sim_cost > 0
    for shown in (resumed.stdout, batchrun(tmp_path, "status", name).stdout):
        text = flat(shown)
        assert f"Spent on MiniMax: {usd(real_cost)}" in text
        assert f"simulated (not billed, MiniMax's prices): {usd(sim_cost)}" in text
        assert f"{M27} (simulated)" in shown
        assert f"{M27} (MiniMax)" in shown

    document = status(tmp_path, name)
    rows = {row["simulated"]: row for row in document["models"]}
    assert set(rows) == {True, False}
    by_origin = {
        bool(s): int(str(n))
        for s, n in db_rows(db, "SELECT simulated, count(*) FROM results GROUP BY simulated")
    }
    assert rows[True]["succeeded"] == by_origin[True]
    assert rows[False]["succeeded"] == by_origin[False]
    assert rows[True]["cost_nanos"] == sim_cost
    assert rows[False]["cost_nanos"] == real_cost
    assert document["spend"]["real"]["cost_nanos"] == real_cost
    assert document["spend"]["simulated"]["cost_nanos"] == sim_cost
    # Retries have no origin of their own: all on the batch's row, equal to the attempts table.
    assert rows[True]["retries"] + rows[False]["retries"] == attempts_retries(db, name)[M27]


# --------------------------------------------------------------------------- spend


def test_spend_shows_real_and_simulated_apart_never_added(
    tmp_path: Path, real_sim: str, faulty_sim: RunningSimulator
) -> None:
    db = tmp_path / "batchrun.db"
    sim_name = simulated_batch(tmp_path, faulty_sim, 20)
    real_run(tmp_path, real_sim, "real", 10)
    real_cost, sim_cost = costs(db, simulated=False), costs(db, simulated=True)
    assert real_cost > 0
    assert sim_cost > 0

    for by in ("model", "batch", "day"):
        document = orjson.loads(batchrun(tmp_path, "spend", "--by", by, "--json").stdout)
        assert "rows" not in document
        assert "total" not in document
        assert document["real"]["total"]["cost_nanos"] == real_cost
        assert document["simulated"]["total"]["cost_nanos"] == sim_cost
        assert sum(r["cost_nanos"] or 0 for r in document["real"]["rows"]) == real_cost
        assert sum(r["cost_nanos"] or 0 for r in document["simulated"]["rows"]) == sim_cost
        if by == "batch":
            assert [r["batch"] for r in document["real"]["rows"]] == ["real"]
            assert [r["batch"] for r in document["simulated"]["rows"]] == [sim_name]
        shown = batchrun(tmp_path, "spend", "--by", by).stdout
        assert f"Total spent on MiniMax: {usd(real_cost)}" in shown
        assert f"Total simulated (not billed): {usd(sim_cost)}" in shown
        assert usd(real_cost + sim_cost) not in shown  # never added together
        assert shown.index("MiniMax: billed") < shown.index("simulated: not billed")


def test_the_dashboard_shows_real_spend_and_simulated_cost_apart(
    tmp_path: Path, real_sim: str, faulty_sim: RunningSimulator
) -> None:
    db = tmp_path / "batchrun.db"
    simulated_batch(tmp_path, faulty_sim, 12)
    real_run(tmp_path, real_sim, "real", 6)
    real_cost, sim_cost = costs(db, simulated=False), costs(db, simulated=True)
    os.environ["BATCHRUN_DB"] = str(db)
    try:
        for page in ("overview", "spend"):
            app = AppTest.from_file(str(APP), default_timeout=60)
            app.query_params["page"] = page
            app.run()
            assert not app.exception, [e.value for e in app.exception]
            headline = {m.label: m.value for m in app.metric}
            assert headline["Spend"] == usd(real_cost), page
            assert headline["Simulated cost (not billed)"] == usd(sim_cost), page
        table = app.dataframe[0].value  # the spend page, by day: one row per origin
        assert sorted(table["data"]) == ["MiniMax", "simulated (not billed)"]
    finally:
        os.environ.pop("BATCHRUN_DB", None)


# --------------------------------------------------------------------------- estimates


def flat(shown: str) -> str:
    """Text as read, wrapped cells joined (one model per table: the other cells of a wrapped
    line are empty)."""
    return " ".join(shown.replace("│", " ").split())


def expected_cells(shown: str, model: str) -> list[str]:
    """The estimate table's row of ``model``, cell by cell."""
    line = next(line for line in shown.splitlines() if line.strip("│ ").startswith(model))
    return [cell.strip() for cell in line.strip("│").split("│")]


@pytest.mark.slow  # ~13 s of CLI runs: make test-slow
def test_a_real_estimate_never_takes_its_expected_output_from_simulated_runs(
    tmp_path: Path, real_sim: str, faulty_sim: RunningSimulator
) -> None:
    db = tmp_path / "batchrun.db"
    simulated_batch(tmp_path, faulty_sim, 10)  # only simulated history of M2.7 so far
    write_jobs(tmp_path / "next.jsonl", prompts(4))
    args = ("estimate", "next.jsonl", "--models", M27, "--base-url", real_sim)
    first = batchrun(tmp_path, *args, key=KEY)
    assert first.returncode == 0, first.stderr
    text = flat(first.stdout)
    assert "over this database's past real results" in text
    assert "Simulated results are not used" in text
    assert "no past real results: no expected value (10 simulated results not used)" in text
    assert expected_cells(first.stdout, M27)[4] == "-"  # no expected output

    # On the simulator, the estimate takes the simulated history, and says so.
    simulated = batchrun(tmp_path, "estimate", "next.jsonl", "--models", M27)
    text = flat(simulated.stdout)
    assert "expected output from 10 simulated results" in text
    assert "past simulated results (this estimate is for the built-in simulator" in text

    # The pre-run estimate of a real run says the same; after it, real history exists.
    ran = real_run(tmp_path, real_sim, "real", 6)
    assert "no past real results: no expected value" in flat(ran.stdout)
    [(count, mean)] = db_rows(
        db, f"SELECT count(*), avg(output_tokens) FROM results WHERE simulated = 0 "
        f"AND model = '{M27}'",
    )  # fmt: skip
    again = batchrun(tmp_path, *args, key=KEY)
    text = flat(again.stdout)
    assert f"expected output from {count} real results" in text
    expected = 4 * min(1024, round(float(str(mean))))
    assert expected_cells(again.stdout, M27)[4] == f"{expected:,}"


# --------------------------------------------------------------------------- cost of reading


def test_the_new_figures_are_read_from_covering_indexes(tmp_path: Path) -> None:
    """Retries and the results' origin come from indexes alone: a million-request batch is
    never read row by row (nor the answers' text) to count them."""
    store = Store(database_url(str(tmp_path / "batchrun.db")))
    store.close()
    with sqlite3.connect(tmp_path / "batchrun.db") as connection:

        def plan(query: str) -> str:
            return " ".join(row[-1] for row in connection.execute(f"EXPLAIN QUERY PLAN {query}"))

        retries = plan(
            "SELECT model, count(*) - count(DISTINCT request_id) FROM attempts "
            "WHERE batch_id = 'b' GROUP BY model"
        )
        assert re.search(r"COVERING INDEX ix_attempts_batch_id_model_request_id", retries)
        origin = plan(
            "SELECT request_id, model, simulated, cost_nanos FROM results WHERE batch_id = 'b'"
        )
        assert "COVERING INDEX ix_results_metrics" in origin

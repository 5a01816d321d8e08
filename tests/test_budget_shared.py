"""A budget of one model of several holds across every sender of a batch, as the batch's cap
does: ``run --processes N``, team workers, a second run beside the first. Each sender holds the
model's cap in one model_budgets row (teams/shared.py ``ModelLedger``), so that together they
stop at what is left of the budget, a dead sender's reservations are freed, and what a sender
spent is written before it signs off. (Real SQLite files and the real PostgreSQL; real
``batchrun`` processes against the simulator in the slow tests.)"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select, text, update

from batchrun.budgets import PeriodBudget
from batchrun.run.budget import BudgetRoom, ModelBudget, model_budgets
from batchrun.sim import SimSettings, simulator_process
from batchrun.store import BatchInfo, Store
from batchrun.store.tables import model_budget_holds, workers
from batchrun.store.tables import model_budgets as model_budget_rows
from batchrun.teams import claims
from batchrun.teams.sender import settle_all
from batchrun.teams.shared import ModelLedger, SharedBudget
from tests.dbfixtures import postgres_server, postgres_url, sqlite_url, store, store_url
from tests.helpers import KEY, batchrun
from tests.runharness import prompts, write_jobs
from tests.test_teams import done, load
from tests.test_teams_workers import Workers, count, dsn, submit

__all__ = ["postgres_server", "postgres_url", "sqlite_url", "store", "store_url"]

M27, M3 = "MiniMax-M2.7", "MiniMax-M3"
BOTH = pytest.mark.parametrize(
    "store_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def _room(cap: int, spent: int = 0) -> BudgetRoom:
    """A day budget of M3 alone in a batch of several models: it caps M3 apart."""
    budget = PeriodBudget(period="day", cap_nanos=cap, model=M3)
    return BudgetRoom(budget=budget, spent_nanos=spent, enforced=False)


def _held(
    store: Store, batch_id: str, owner: str, room: BudgetRoom
) -> tuple[ModelLedger, ModelBudget]:
    """What one sender of the batch makes of the room: its ledger and M3's budget."""
    ledger = ModelLedger(store, batch_id, owner, simulated=True)
    return ledger, model_budgets(ledger.share([room]))[M3]


def _row(store: Store) -> tuple[int, int, int]:
    with store.engine.connect() as connection:
        row = connection.execute(select(model_budget_rows)).one()
    return row.cap_nanos, row.spent_nanos, row.reserved_nanos


def _two_senders(store: Store, tmp_path: Path) -> tuple[BatchInfo, ModelBudget, ModelBudget]:
    """A batch of two requests, and senders w1 and w2 each holding a model budget of 1,000."""
    batch = load(store, tmp_path, 2).batch
    for owner in ("w1", "w2"):
        claims.register(store, owner)
    _, first = _held(store, batch.id, "w1", _room(1000))
    _, second = _held(store, batch.id, "w2", _room(1000))
    return batch, first, second


@BOTH
def test_two_senders_share_one_model_budget_and_a_dead_ones_hold_is_freed(
    store: Store, tmp_path: Path
) -> None:
    _, first, second = _two_senders(store, tmp_path)
    assert isinstance(first.held, SharedBudget)
    assert isinstance(second.held, SharedBudget)
    assert first.held._try(600) == (True, 0)
    assert second.held._try(600) == (False, 600)  # alone, each would have had 1,000 for itself
    assert second.held._try(400) == (True, 0)
    assert _row(store) == (1000, 0, 1000)
    with store.engine.begin() as connection:  # w1 stops heartbeating
        connection.execute(
            update(workers).where(workers.c.id == "w1").values(heartbeat_at=time.time() - 100)
        )
    assert claims.reap(store, dead_after=60) == ["w1"]
    assert _row(store) == (1000, 0, 400)  # w1's 600 are free again
    with store.engine.connect() as connection:
        holders = connection.execute(select(model_budget_holds.c.worker_id)).scalars().all()
    assert holders == ["w2"]
    assert second.held._try(600) == (True, 0)


@BOTH
def test_a_sender_writes_what_it_spent_before_its_holds_are_freed(
    store: Store, tmp_path: Path
) -> None:
    batch = load(store, tmp_path, 2).batch
    claims.register(store, "w1")
    ledger, budget = _held(store, batch.id, "w1", _room(1000))
    assert budget.held._try(600) == (True, 0)
    budget.settle(600, 450)  # the answer cost less than its worst case: written later
    settle_all(None, ledger)
    claims.unregister(store, "w1")  # as a sender signs off
    assert _row(store) == (1000, 450, 0)  # spent kept, nothing reserved
    # A sender that starts later works out the same cap (its spend on the model plus what is
    # left): here nothing of it is stored as results, and the row keeps the 450 spent.
    _, later = _held(store, batch.id, "w2", _room(1000))
    assert later.held._try(551) == (False, 0)
    assert later.held._try(550) == (True, 0)


def _store_answer(store: Store, batch_id: str, cost_nanos: int) -> None:
    """An answer of M3 stored as a result (as the writer does), costing ``cost_nanos``."""
    (item, *_) = store.pending(batch_id, M3, 0, 10)
    store.record([done(item.request_id, batch_id, cost_nanos=cost_nanos, sent_at=time.time())])


@BOTH
def test_a_later_sender_sets_the_cap_the_first_did_whatever_was_stored_meanwhile(
    store: Store, tmp_path: Path
) -> None:
    batch = load(store, tmp_path, 2).batch
    rooms_read = _room(1000)  # the period's spend read before the first answer was stored
    _held(store, batch.id, "w1", rooms_read)
    _store_answer(store, batch.id, 300)
    # A second sender whose rooms were read just before that answer was stored, and which
    # opens the row just after: the cap must stay 1,000 (the spend and what is left are read
    # together), not 300 stored + 1,000 left.
    _, later = _held(store, batch.id, "w2", rooms_read)
    assert _row(store) == (1000, 300, 0)
    assert later.held._try(701) == (False, 0)
    assert later.held._try(700) == (True, 0)


@BOTH
def test_a_dead_senders_stored_answers_count_in_the_spend_once_its_holds_are_freed(
    store: Store, tmp_path: Path
) -> None:
    batch, first, second = _two_senders(store, tmp_path)
    assert first.held._try(600) == (True, 0)
    _store_answer(store, batch.id, 450)  # w1's answer is stored; w1 dies before settling it
    with store.engine.begin() as connection:
        connection.execute(
            update(workers).where(workers.c.id == "w1").values(heartbeat_at=time.time() - 100)
        )
    assert claims.reap(store, dead_after=60) == ["w1"]
    assert _row(store) == (1000, 450, 0)  # its 600 freed, its 450 spent kept
    assert second.held._try(600) == (False, 0)  # 450 + 600 would pass the cap
    assert second.held._try(550) == (True, 0)


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_reap_beside_the_senders_own_reservation_does_not_deadlock(
    store: Store, tmp_path: Path
) -> None:
    batch = load(store, tmp_path, 2).batch
    claims.register(store, "w1")
    _, budget = _held(store, batch.id, "w1", _room(1000))
    assert budget.held._try(100) == (True, 0)  # w1 holds 100
    key = {"batch_id": batch.id, "model": M3}
    failed: list[BaseException] = []

    def reserve() -> None:
        try:
            assert store.model_budgets.reserve(key, "w1", 200) == (True, 0)
        except BaseException as exc:  # the thread reports what it met to the test
            failed.append(exc)

    def reap() -> None:
        try:
            store.claims.forget("w1", died=True)
        except BaseException as exc:  # the thread reports what it met to the test
            failed.append(exc)

    # w1 reserves 200 more while it is reaped, each transaction held at its first write of the
    # holds table until both are under way (the table locked in SHARE mode, which lets
    # SELECT ... FOR UPDATE through): they then take their locks in one order, or deadlock.
    threads = [threading.Thread(target=reserve), threading.Thread(target=reap)]
    with psycopg.connect(dsn(store.url)) as locked:
        locked.execute("lock table model_budget_holds in share mode")
        for n, thread in enumerate(threads, start=1):
            thread.start()
            _wait_for_lock_waits(store, n)
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)  # neither still waiting on a lock
    assert failed == []  # no "deadlock detected"
    # Whichever came first, nothing is lost: the reap freed 100 (and the 200 if before it).
    _, _, reserved = _row(store)
    with store.engine.connect() as connection:
        held = connection.execute(select(model_budget_holds.c.nanos)).scalars().all()
    assert reserved == sum(held)


def _wait_for_lock_waits(store: Store, n: int) -> None:
    """Until ``n`` sessions of this database wait for a lock."""
    waiting = text(
        "select count(*) from pg_stat_activity where datname = current_database() "
        "and wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 30
    while True:
        with store.engine.connect() as connection:
            if connection.execute(waiting).scalar_one() >= n:
                return
        assert time.monotonic() < deadline, f"{n} transactions never waited together"
        time.sleep(0.01)


def test_a_room_without_held_by_holds_its_models_budget_in_memory() -> None:
    (budget,) = model_budgets([_room(1000)]).values()
    assert not isinstance(budget.held, SharedBudget)
    assert budget.held.cap_nanos == 1000


# --------------------------------------------------------------------------- real processes


# The second batch (the larger): the first only made today's spend.
LAST_BATCH = (
    "batch_id = (select batch_id from requests group by batch_id order by count(*) desc limit 1)"
)


def _m3_spend(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        (spent,) = connection.execute(
            "select coalesce(sum(cost_nanos), 0) from results where model = ?", (M3,)
        ).fetchone()
    return int(spent)


def _day_budget(work: Path, nanos: int, warn_at: float) -> None:
    """A day budget of M3 alone, in the working directory's budgets file (children read it)."""
    (work / "batchrun-budgets.toml").write_text(
        f'[[budget]]\nperiod = "day"\nusd = "{nanos / 1e9:.9f}"\nmodel = "{M3}"\n'
        f"warn_at = {warn_at}\n",
        encoding="utf-8",
    )


# The children's start-up (the SDK's import) takes 10-30 s on a busy machine; M3 is paced slowly
# (6 a minute in each of two processes) so that both send it before its budget is spent.
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_processes_hold_a_models_budget_together_and_warn_of_it_once(
    tmp_path: Path,
) -> None:
    short = {"max_tokens": 64}
    write_jobs(tmp_path / "first.jsonl", prompts(4, **short))
    args = ("--sim-time-scale", "0", "--yes")
    done = batchrun(tmp_path, "run", "first.jsonl", "--models", M3, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    db = tmp_path / "batchrun.db"
    spent = _m3_spend(db)  # today's spend on M3 so far: four answers
    _day_budget(tmp_path, spent * 3, warn_at=0.5)  # about eight more answers are left
    catalog = tmp_path / "catalog.toml"  # a shared limit, divided between the processes too
    catalog.write_text(f'[pools.pair]\nmodels = ["{M27}", "{M3}"]\nrpm = 100000\n')
    write_jobs(tmp_path / "jobs.jsonl", prompts(40, **short))
    done = batchrun(
        tmp_path, "run", "jobs.jsonl", "--models", f"{M27},{M3}", *args, "--processes", "2",
        "--rpm", f"{M3}=12,*=600", "--concurrency", "2", "--catalog", str(catalog), timeout=280,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 1, out  # M3's rest waits for its budget: pending, so exit 1
    assert "Stopped sending to MiniMax-M3: the day budget" in done.stdout
    with sqlite3.connect(db) as connection:
        senders = connection.execute(
            "select count(distinct claimed_by) from requests where model = ? and "
            f"status = 'succeeded' and {LAST_BATCH}",
            (M3,),
        ).fetchone()[0]
    assert _m3_spend(db) <= spent * 3  # never past the budget, whichever process sent
    assert senders == 2, "one process sent every M3 request: the test proves nothing"
    said = "past its warning threshold of 50%"
    assert done.stdout.count(said) == 1, out  # shown once, not once per process
    assert done.stderr.count(said) == 1, out  # and logged once


# A reservation's first statement (Budgets.reserve): the sender's hold, before the budget row.
RESERVING = "insert into model_budget_holds%"


def _reservations_waiting(connection: psycopg.Connection[tuple[object, ...]]) -> int:
    """How many reservations of a model budget wait for a lock now (not a row's opening)."""
    (waiting,) = connection.execute(
        "select count(*) from pg_stat_activity where datname = current_database() "
        "and wait_event_type = 'Lock' and query ilike %s",
        (RESERVING,),
    ).fetchone() or (0,)
    return int(waiting)  # type: ignore[call-overload]


@contextmanager
def _first_reservations_together(url: str, senders: int) -> Iterator[None]:
    """Hold every reservation of a model budget until ``senders`` of them wait, then let them
    all go at once: the holds table is locked against writes, so each reservation waits at
    its first statement, its hold, before it touches the budget row (opening it goes on)."""
    with psycopg.connect(dsn(url)) as locked, psycopg.connect(dsn(url), autocommit=True) as look:
        locked.execute("lock table model_budget_holds in exclusive mode")
        yield
        deadline = time.monotonic() + 120
        # (Looked at outside a transaction: one would see a single snapshot of the sessions.)
        while _reservations_waiting(look) < senders:
            assert time.monotonic() < deadline, "the workers never all reserved"
            time.sleep(0.05)
    # Leaving the block commits: the reservations go on, each of them fits.


# Why two workers send M3 every time: each sends it at concurrency 1, so holds at most one
# worst case (input + max_tokens 1,024: about $0.00123 of the $0.00388 left, room for three),
# and no reservation goes through before both workers have asked (_first_reservations_together):
# both first reservations are made before any M3 answer, both fit, and each is then sent.
# Without that, the worker that started first kept the room: it reserves the worst case of
# each request its tasks hold (before their rate slot), a settlement reaches the row only with
# that worker's own next reservation, which takes the freed room again in the same call, and
# after its first answer less than one worst case was ever free for another worker.
@pytest.mark.slow  # two worker processes' start-up and the budget's stop: ~20-30 s
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_team_workers_hold_a_models_budget_together(tmp_path: Path, postgres_url: str) -> None:
    url = postgres_url
    settings = SimSettings(time_scale=0.02, limits=False, seed=5, api_key=KEY)
    options = ("--once", "--db", url, "--lease", "5", "--poll", "0.3")
    with simulator_process(settings) as sim:
        base_url = f"{sim.base_url}/anthropic"
        (tmp_path / "first").mkdir()
        submit(tmp_path / "first", url, base_url, 4, M3)  # today's spend on M3 so far
        first = Workers(tmp_path, *options, "--base-url", base_url, how_many=1)
        try:
            assert [code for code, _ in first.wait(timeout=120)] == [0]
        finally:
            first.stop()
        spent = count(url, f"select coalesce(sum(cost_nanos), 0) from results where model='{M3}'")
        _day_budget(tmp_path, spent * 3, warn_at=0.9)  # about eight more answers are left
        submit(tmp_path, url, base_url, 40, f"{M27},{M3}")
        team = None
        try:
            with _first_reservations_together(url, senders=2):
                team = Workers(
                    tmp_path, *options, "--base-url", base_url, "--concurrency", f"{M3}=1,*=2",
                    how_many=2,
                )  # fmt: skip
            ended = team.wait(timeout=240)
        finally:
            if team is not None:
                team.stop()
    for code, out in ended:
        assert code == 0, out
    assert count(url, f"select sum(cost_nanos) from results where model='{M3}'") <= spent * 3
    left = count(url, f"select count(*) from requests where model='{M3}' and status='pending'")
    assert left > 0, "M3's budget never stopped it: the test proves nothing"
    senders = count(
        url,
        "select count(distinct claimed_by) from requests where model = 'MiniMax-M3' and "
        f"status = 'succeeded' and {LAST_BATCH}",
    )
    assert senders >= 2, "one worker sent every M3 request: sharing was not exercised"

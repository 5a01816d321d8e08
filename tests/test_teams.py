"""Teams at the store level, on SQLite and the real PostgreSQL: claims, leases, the shared
pacer and the shared budget; and ``submit`` + ``worker --once`` on a SQLite file."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from sqlalchemy import select, update

from batchrun.api.endpoint import Deadlines
from batchrun.catalog import load_catalog
from batchrun.plan.planner import Plan, PlanOptions, create_batch, file_digest
from batchrun.pricing import Usage, day_of, request_cost
from batchrun.run.launch import LimitOptions
from batchrun.run.limits import ModelLimitSettings, PoolSettings
from batchrun.run.retry import RetryPolicy
from batchrun.run.settings import SendSettings
from batchrun.sim.host import RunningSimulator
from batchrun.sim.loop import run_fast
from batchrun.store import Outcome, Store
from batchrun.store.tables import budget_holds, budgets, requests, workers
from batchrun.teams import claims
from batchrun.teams.shared import SharedBudget, SharedPacer, shared_limiters
from batchrun.teams.worker import Worker, WorkerOptions, WorkerReport
from tests.dbfixtures import postgres_server, postgres_url, sqlite_url, store, store_url
from tests.helpers import API_KEY, KEY, batchrun
from tests.runharness import endpoint_for, prompts, write_jobs

__all__ = ["postgres_server", "postgres_url", "sqlite_url", "store", "store_url"]

M3 = "MiniMax-M3"
RESULT = {
    "sent_at": 1.0, "first_event_s": None, "first_token_s": None, "first_thinking_s": None,
    "first_text_s": None, "last_token_s": None, "done_s": 0.1, "input_tokens": 1,
    "output_tokens": 1, "cache_read_tokens": 0, "cache_creation_tokens": 0, "stop_reason": None,
    "text": "x", "thinking": "", "message": {}, "cost_nanos": 5, "price_date": None,
    "simulated": True,
}  # fmt: skip


def load(store: Store, tmp_path: Path, count: int) -> Plan:
    """A batch of ``count`` requests to MiniMax-M3."""
    path = write_jobs(tmp_path / "jobs.jsonl", prompts(count))
    return create_batch(
        store,
        load_catalog(),
        path,
        PlanOptions(models=[M3]),
        digest=file_digest(path),
        base_url="http://127.0.0.1:9",
        simulated=True,
        settings={},
    )


def done(request_id: int, batch_id: str, **result: object) -> Outcome:
    """A succeeded outcome with a result (RESULT, with ``result``'s fields in place of its)."""
    return Outcome(
        request_id=request_id,
        batch_id=batch_id,
        model=M3,
        custom_id=f"c{request_id}",
        status="succeeded",
        result={**RESULT, **result},
    )


def test_workers_claim_disjoint_requests_and_release_them(store: Store, tmp_path: Path) -> None:
    batch = load(store, tmp_path, 10).batch
    first = claims.claim(store, batch.id, M3, owner="a", limit=4, lease_s=30)
    second = claims.claim(store, batch.id, M3, owner="b", limit=100, lease_s=30)
    assert len(first) == 4
    assert len(second) == 6
    assert not {i.request_id for i in first} & {i.request_id for i in second}
    assert claims.claim(store, batch.id, M3, owner="c", limit=5, lease_s=30) == []
    assert claims.pending_counts(store, batch.id, [M3]) == (0, 10)
    assert claims.release(store, "a") == 4
    assert claims.pending_counts(store, batch.id, [M3]) == (4, 10)
    again = claims.claim(store, batch.id, M3, owner="c", limit=5, lease_s=30)
    assert {i.request_id for i in again} == {i.request_id for i in first}


def test_an_expired_lease_is_taken_over_and_only_the_holder_records(
    store: Store, tmp_path: Path
) -> None:
    batch = load(store, tmp_path, 3).batch
    held = claims.claim(store, batch.id, M3, owner="dead", limit=3, lease_s=30)
    assert claims.claim(store, batch.id, M3, owner="live", limit=3, lease_s=30) == []
    with store.engine.begin() as connection:  # the lease runs out
        connection.execute(update(requests).values(lease_until=time.time() - 1))
    taken = claims.claim(store, batch.id, M3, owner="live", limit=3, lease_s=30)
    assert [i.request_id for i in taken] == [i.request_id for i in held]
    # The old holder finishes late: its results are not written; the new holder's are.
    store.record([done(i.request_id, batch.id) for i in held], claimed_by="dead")
    assert store.status_counts(batch.id) == {M3: {"pending": 3}}
    store.record([done(i.request_id, batch.id) for i in taken], claimed_by="live")
    store.record([done(i.request_id, batch.id) for i in taken], claimed_by="live")
    assert store.status_counts(batch.id) == {M3: {"succeeded": 3}}
    assert len(store.result_rows(batch.id)) == 3


def test_renew_extends_leases_and_reap_frees_a_dead_workers_budget(
    store: Store, tmp_path: Path
) -> None:
    batch = load(store, tmp_path, 2).batch
    claims.register(store, "w1")
    claims.claim(store, batch.id, M3, owner="w1", limit=2, lease_s=1)
    claims.renew(store, "w1", lease_s=100)
    with store.engine.connect() as connection:
        leases = connection.execute(select(requests.c.lease_until)).scalars().all()
    assert min(leases) > time.time() + 90
    budget = SharedBudget(store, batch.id, "w1", cap_nanos=1000)
    assert budget._try(600) == (True, 0)
    assert budget._try(600) == (False, 600)
    with store.engine.begin() as connection:  # w1 stops heartbeating
        connection.execute(update(workers).values(heartbeat_at=time.time() - 100))
    assert claims.reap(store, dead_after=60) == ["w1"]
    with store.engine.connect() as connection:
        assert connection.execute(select(budgets.c.reserved_nanos)).scalar_one() == 0
        assert connection.execute(select(budget_holds)).all() == []
        assert connection.execute(select(workers)).all() == []
    other = SharedBudget(store, batch.id, "w2", cap_nanos=1000)
    assert other._try(1000) == (True, 0)


def test_budget_reservations_are_atomic_across_threads(store: Store, tmp_path: Path) -> None:
    batch = load(store, tmp_path, 1).batch
    owners = [SharedBudget(store, batch.id, f"w{n}", cap_nanos=2_000) for n in range(4)]
    granted = [0] * len(owners)

    def reserve(n: int) -> None:
        for _ in range(40):
            fits, _ = owners[n]._try(30)
            granted[n] += fits

    threads = [threading.Thread(target=reserve, args=(n,)) for n in range(len(owners))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 2_000 // 30  # 66 fit; never a 67th, whatever the interleaving
    with store.engine.connect() as connection:
        assert connection.execute(select(budgets.c.reserved_nanos)).scalar_one() == 66 * 30
        rows = connection.execute(select(budget_holds.c.worker_id, budget_holds.c.nanos)).all()
    holds = {row.worker_id: row.nanos for row in rows}
    assert holds == {f"w{n}": granted[n] * 30 for n in range(4) if granted[n]}
    owners[0].settle(granted[0] * 30, 7)  # kept locally: written with the next reservation
    owners[0].flush()
    with store.engine.connect() as connection:
        row = connection.execute(select(budgets.c.spent_nanos, budgets.c.reserved_nanos)).one()
    assert tuple(row) == (7, (66 - granted[0]) * 30)


def test_pacers_of_one_name_share_one_clock(store: Store) -> None:
    now = [1_000.0]  # a fake clock: the test moves it, never the wall

    def pacer(name: str) -> SharedPacer:
        # one a second: each block holds a single slot (BLOCK_S is shorter than a slot)
        return SharedPacer(store, name, 1.0, clock=lambda: now[0])

    one, two, other, late = pacer("rpm:x"), pacer("rpm:x"), pacer("rpm:y"), pacer("rpm:x")

    async def go() -> None:
        for n, taker in enumerate((one, two, one, two, one)):
            now[0] = 1_000.0 + 0.25 * n  # time passes between the calls
            # Each slot is a second after the previous one, whichever worker takes it.
            assert await taker.take(1) == pytest.approx(n - 0.25 * n)
        assert await other.take(1) == pytest.approx(0.0)
        two.put_back(1)  # its slot unused, but one took the slot after it: not given back
        await two.close()
        one.put_back(1)  # the last slot unused and nobody after it: given back to the row
        await one.close()
        now[0] = 1_001.5
        assert await late.take(1) == pytest.approx(4 - 1.5)  # the fifth slot, free again

    anyio.run(go)


def test_two_workers_limiters_share_one_pool_clock(store: Store) -> None:
    # Each worker builds its own limiters; the pool's pacers are rows of the store, so a slot
    # one worker's M3 takes is gone for the other worker's M2.7.
    pool = PoolSettings(name="account", models=(M3, "MiniMax-M2.7"), rpm=60, tpm=None)
    limits = {
        model: ModelLimitSettings(rpm=None, tpm=None, concurrency=4, headroom=1.0, pools=(pool,))
        for model in pool.models
    }
    one, two = shared_limiters(store, limits), shared_limiters(store, limits)
    assert one[M3].pools[0] is one["MiniMax-M2.7"].pools[0]  # one pool per worker
    first, second = one[M3].pools[0].requests, two["MiniMax-M2.7"].pools[0].requests
    assert isinstance(first, SharedPacer)
    assert isinstance(second, SharedPacer)
    assert first.name == second.name == "rpm:pool:account"
    waits = [anyio.run(first.take, 1), anyio.run(second.take, 1)]
    assert waits[0] < 0.5
    assert waits[1] > 0.5  # a second after the first, at 60 a minute


@pytest.mark.slow  # ~5-8 s; make test-slow; keeps the default run near 10 minutes
def test_submit_then_worker_once_on_sqlite(tmp_path: Path, sim: RunningSimulator) -> None:
    write_jobs(tmp_path / "jobs.jsonl", prompts(12))
    url = f"{sim.base_url}/anthropic"
    common = ("--db", "team.db", "--base-url", url)
    submitted = batchrun(tmp_path, "submit", "jobs.jsonl", "--models", M3, *common, key=KEY)
    assert submitted.returncode == 0, submitted.stderr
    assert "queued: 12 requests pending" in submitted.stdout
    listed = batchrun(tmp_path, "batches", "--db", "team.db")
    assert "queued" in listed.stdout
    again = batchrun(tmp_path, "submit", "jobs.jsonl", "--models", M3, *common, key=KEY)
    assert "already stored" in again.stdout
    worked = batchrun(tmp_path, "worker", "--once", *common, key=KEY)
    assert worked.returncode == 0, worked.stdout + worked.stderr
    assert "after 1 batch runs" in worked.stdout
    store = Store(f"sqlite:///{tmp_path / 'team.db'}")
    try:
        (batch,) = store.list_batches()
        assert batch.status == "completed"
        assert store.status_counts(batch.id) == {M3: {"succeeded": 12}}
        assert len(store.result_rows(batch.id)) == 12
        with store.engine.connect() as connection:
            assert connection.execute(select(workers)).all() == []  # unregistered on exit
    finally:
        store.close()
    assert KEY not in (tmp_path / "team.db").read_bytes().decode(errors="replace")


def test_workers_take_only_submitted_open_batches(store: Store, tmp_path: Path) -> None:
    batch = load(store, tmp_path, 1).batch  # as `batchrun run` makes it: left to that process
    assert claims.open_batches(store) == []
    store.set_batch(batch.id, settings={"workers": True}, status="queued")
    assert claims.open_batches(store) == [batch.id]
    store.set_batch(batch.id, status="canceled")
    assert claims.open_batches(store) == []


def serve(store: Store, sim: RunningSimulator, key: str = API_KEY) -> WorkerReport:
    """One in-process worker with --once against ``sim``."""
    send = SendSettings(
        limits=LimitOptions(rpm={"*": 100_000}, tpm={"*": 10**12}, concurrency={"*": 4}),
        retry=RetryPolicy(base_delay=0.01, max_delay=0.05),
        deadlines=Deadlines(idle=10, total=30),
        grace_seconds=1.0,
    )
    options = WorkerOptions(send=send, once=True, lease_s=10, poll_s=0.2)
    worker = Worker(
        store=store, catalog=load_catalog(), endpoint=endpoint_for(sim, key), options=options
    )
    return run_fast(worker.serve())


def test_a_worker_holds_the_batch_budget_and_pauses_the_batch(
    store: Store, tmp_path: Path, sim_factory: Callable[..., RunningSimulator]
) -> None:
    sim = sim_factory(api_key=API_KEY)
    batch = load(store, tmp_path, 20).batch
    info = load_catalog().get(M3)
    worst = request_cost(
        info, Usage(input_tokens=30, output_tokens=1024), day_of(time.time()), {}, Decimal(1)
    )
    assert worst is not None
    cap = worst.nanos * 5
    store.set_batch(batch.id, settings={"workers": True}, status="queued", max_cost_nanos=cap)
    report = serve(store, sim)
    assert report.batches_run >= 1
    assert not report.interrupted
    spent = store.batch_spend(batch.id)
    assert 0 < spent <= cap
    counts = store.status_counts(batch.id)[M3]
    assert counts["succeeded"] >= 5
    assert counts["pending"] > 0
    assert store.find_batch(batch.id).status == "paused"
    with store.engine.connect() as connection:
        row = connection.execute(select(budgets.c.spent_nanos, budgets.c.reserved_nanos)).one()
        assert connection.execute(select(budget_holds.c.nanos)).scalars().all() == []
    assert tuple(row) == (spent, 0)


def test_a_worker_whose_key_is_refused_stops_that_model_and_exits(
    store: Store, tmp_path: Path, sim_factory: Callable[..., RunningSimulator]
) -> None:
    sim = sim_factory(api_key=API_KEY)
    batch = load(store, tmp_path, 5).batch
    store.set_batch(batch.id, settings={"workers": True}, status="queued")
    report = serve(store, sim, key="sk-wrong")
    assert list(report.refused) == [M3]
    assert "API key was refused" in report.refused[M3]
    assert store.status_counts(batch.id) == {M3: {"pending": 5}}
    assert claims.pending_counts(store, batch.id, [M3]) == (5, 5)  # released for others

"""The store on real databases: a SQLite file in tmp_path and a fresh PostgreSQL database.

Every test that takes ``store`` or ``store_url`` runs once per backend; the PostgreSQL run is
marked ``postgres`` and is skipped without a server (failed on CI).
"""

from __future__ import annotations

import gc
import importlib.util
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, func, inspect, select, text

from batchrun.exceptions import BatchMoveError, BatchNotFoundError, StoreError
from batchrun.jobs import JobSpec, LineError
from batchrun.store import (
    AttemptRecord,
    BatchInfo,
    Outcome,
    Store,
    alembic_config,
    database_url,
    redact_url,
)
from batchrun.store.migrate import HEAD_REVISION
from batchrun.store.tables import (
    RESULT_METRICS,
    attempts,
    batches,
    metadata,
    requests,
    results,
)
from tests.dbfixtures import engine, postgres_server, postgres_url, sqlite_url, store, store_url

__all__ = ["engine", "postgres_server", "postgres_url", "sqlite_url", "store", "store_url"]

M3 = "MiniMax-M3"
M27 = "MiniMax-M2.7"
# Deliberately not alphabetical: exports must follow the batch's order, not the names'.
MODELS = [M3, M27]
TABLES = set(metadata.tables)


# --------------------------------------------------------------------------- helpers


def batch_row(batch_id: str, **overrides: Any) -> dict[str, Any]:
    """A batches row as the planner writes it."""
    row: dict[str, Any] = {
        "id": batch_id,
        "name": f"name-{batch_id}",
        "source_path": "/data/jobs.jsonl",
        "source_sha256": "a" * 64,
        "models": list(MODELS),
        "status": "running",
        "simulated": True,
        "base_url": "http://127.0.0.1:9/anthropic",
        "settings": {"rpm": 60, "retries": {"max": 3}},
        "jobs_total": 0,
        "lines_invalid": 0,
    }
    row.update(overrides)
    return row


def spec(
    line_no: int,
    custom_id: str,
    *,
    model: str | None = None,
    invalid_for: dict[str, str] | None = None,
) -> JobSpec:
    """A valid job line."""
    return JobSpec(
        line_no=line_no,
        custom_id=custom_id,
        params={
            "model": model or M3,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": f"question {custom_id}"}],
        },
        model=model,
        invalid_for=invalid_for or {},
        content_hash=f"{line_no:064x}",
        expect={"contains": custom_id} if line_no % 2 else None,
    )


def result_row(text_: str, **overrides: Any) -> dict[str, Any]:
    """A results row without its keys, as the runner builds it."""
    row: dict[str, Any] = {
        "sent_at": 1_700_000_000.25,
        "first_event_s": 0.1,
        "first_token_s": 0.2,
        "first_thinking_s": None,
        "first_text_s": 0.2,
        "last_token_s": 0.9,
        "done_s": 1.0,
        "input_tokens": 12,
        "output_tokens": 34,
        "cache_read_tokens": 0,
        "cache_creation_tokens": 0,
        "stop_reason": "end_turn",
        "text": text_,
        "thinking": "",
        "message": {"role": "assistant", "content": [{"type": "text", "text": text_}]},
        "cost_nanos": 3_000_000_123,
        "price_date": "2026-01-01",
        "simulated": True,
    }
    row.update(overrides)
    return row


def attempt(number: int, outcome: str, status: int | None = 200, **extra: Any) -> AttemptRecord:
    """One HTTP call."""
    return AttemptRecord(
        number=number,
        started_at=1_700_000_000.0 + number,
        duration_s=0.5,
        outcome=outcome,
        status=status,
        **extra,
    )


def loaded(store: Store, batch_id: str = "b1", count: int = 3) -> BatchInfo:
    """A batch with ``count`` lines fanned out to MODELS."""
    store.create_batch(batch_row(batch_id))
    store.add_jobs(batch_id, [spec(n, f"q{n}") for n in range(1, count + 1)], MODELS)
    return store.find_batch(batch_id)


def request_ids(store: Store, batch_id: str, model: str) -> dict[str, int]:
    """custom_id -> request id of one model's pending requests."""
    return {item.custom_id: item.request_id for item in store.pending(batch_id, model, 0, 1000)}


def table_rows(engine: Engine, query: Any) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


# --------------------------------------------------------------------------- migrations


def test_open_migrates_an_empty_database_to_the_models(store_url: str, engine: Engine) -> None:
    assert inspect(engine).get_table_names() == []
    Store(store_url).close()

    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    assert schema_diff(engine) == []
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head_revision()


def test_open_twice_is_idempotent_and_keeps_data(store_url: str, engine: Engine) -> None:
    first = Store(store_url)
    first.create_batch(batch_row("b1"))
    first.close()

    second = Store(store_url)
    try:
        assert second.find_batch("b1").name == "name-b1"
        also = Store(store_url)  # while the other is open
        also.close()
    finally:
        second.close()
    assert schema_diff(engine) == []
    assert table_rows(engine, text("SELECT version_num FROM alembic_version")) == [
        {"version_num": head_revision()}
    ]


def test_the_head_constant_is_alembics_head() -> None:
    assert head_revision() == HEAD_REVISION  # opening a store compares against the constant


def test_opening_a_store_at_the_head_does_not_import_alembic(store_url: str) -> None:
    Store(store_url).close()  # migrated here; the fresh process below finds it at the head
    code = (
        "import sys; from batchrun.store import Store; "
        f"Store({store_url!r}).close(); "
        "assert not [m for m in sys.modules if m.startswith('alembic')]"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_alembic_downgrade_to_base_and_upgrade_again(store_url: str, engine: Engine) -> None:
    Store(store_url).close()
    config = alembic_config()
    config.set_main_option("sqlalchemy.url", store_url)  # the `alembic` command line's path

    command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

    command.upgrade(config, "head")
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    assert schema_diff(engine) == []
    gc.collect()  # a leaked connection must warn inside this test, not in a later one


def test_alembic_runs_on_a_given_connection(store_url: str, engine: Engine) -> None:
    Store(store_url).close()
    config = alembic_config()
    with engine.begin() as connection:  # the path Store itself and `batchrun db` use
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

    reopened = Store(store_url)  # a store migrates whatever it opens
    reopened.close()
    assert schema_diff(engine) == []


def test_upgrade_from_0004_keeps_the_results_and_adds_their_flags(
    store_url: str, engine: Engine
) -> None:
    store = Store(store_url)
    loaded(store)
    ids = request_ids(store, "b1", M3)
    store.record(
        [
            Outcome(
                request_id=ids["q1"],
                batch_id="b1",
                model=M3,
                custom_id="q1",
                status="succeeded",
                attempts=[attempt(1, "ok")],
                result=result_row("answer one"),
            )
        ]
    )
    store.close()
    config = alembic_config()
    with engine.begin() as connection:  # back to the schema before flags, with the result in it
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
    assert "flags" not in {c["name"] for c in inspect(engine).get_columns("results")}

    reopened = Store(store_url)  # opening migrates 0004 -> head
    try:
        [kept] = reopened.result_rows("b1")
        assert (kept["text"], kept["flags"]) == ("answer one", None)
        metric_row = next(iter(reopened.result_metric_rows(["b1"])))[0]
        flags_at = 2 + RESULT_METRICS.index("flags")  # after request_id and model
        assert metric_row[flags_at] is None
    finally:
        reopened.close()
    assert schema_diff(engine) == []
    indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("results")}
    assert "flags" in indexes["ix_results_metrics"]


# --------------------------------------------------------------------------- batches


def test_create_and_find_batch_by_id_and_name(store: Store) -> None:
    before = time.time()
    store.create_batch(batch_row("b1", max_cost_nanos=5_000_000_000_000))

    by_id = store.find_batch("b1")
    assert store.find_batch("name-b1") == by_id
    assert by_id.models == MODELS
    assert by_id.settings == {"rpm": 60, "retries": {"max": 3}}
    assert by_id.simulated is True
    assert by_id.max_cost_nanos == 5_000_000_000_000  # beyond 32 bits: BigInteger
    assert by_id.status == "running"
    assert by_id.finished_at is None
    assert (by_id.jobs_total, by_id.lines_invalid) == (0, 0)
    assert before <= by_id.created_at == by_id.updated_at <= time.time()


def test_find_batch_names_the_missing_ref(store: Store) -> None:
    store.create_batch(batch_row("b1"))
    with pytest.raises(BatchNotFoundError, match="'nope'") as caught:
        store.find_batch("nope")
    assert caught.value.ref == "nope"


def test_duplicate_batch_name_is_a_store_error(store: Store) -> None:
    store.create_batch(batch_row("b1", name="same"))
    with pytest.raises(StoreError):
        store.create_batch(batch_row("b2", name="same"))
    assert [batch.id for batch in store.list_batches()] == ["b1"]


def test_list_batches_newest_first_and_name_taken(store: Store) -> None:
    assert store.list_batches() == []
    for batch_id in ("b1", "b2", "b3"):
        store.create_batch(batch_row(batch_id))
    assert [batch.id for batch in store.list_batches()] == ["b3", "b2", "b1"]
    assert store.name_taken("name-b2")
    assert not store.name_taken("b2")  # an id is not a name
    assert not store.name_taken("other")


def test_set_batch_updates_fields_and_updated_at(store: Store) -> None:
    store.create_batch(batch_row("b1"))
    created = store.find_batch("b1")
    store.set_batch("b1", status="completed", finished_at=1_800_000_000.5)
    store.set_batch("missing", status="completed")  # no such batch: nothing happens

    done = store.find_batch("b1")
    assert done.status == "completed"
    assert done.finished_at == 1_800_000_000.5
    assert done.updated_at >= created.updated_at
    assert done.created_at == created.created_at


def test_set_batch_refuses_a_move_the_statuses_do_not_allow(store: Store) -> None:
    store.create_batch(batch_row("b1"))
    store.set_batch("b1", status="canceled")
    with pytest.raises(BatchMoveError, match="is canceled and cannot become running"):
        store.set_batch("b1", status="running")
    assert store.find_batch("b1").status == "canceled"  # the refused update changed nothing
    store.set_batch("b1", name="renamed")  # other fields move freely
    assert store.find_batch("b1").name == "renamed"


def test_find_resumable_matches_content_and_models(store: Store) -> None:
    sha = "f" * 64
    store.create_batch(batch_row("old", source_sha256=sha))
    store.create_batch(batch_row("new", source_sha256=sha))
    store.create_batch(batch_row("other-models", source_sha256=sha, models=[M27]))

    found = store.find_resumable(sha, MODELS)
    assert found is not None
    assert found.id == "new"  # the latest
    assert store.find_resumable(sha, [M27, M3]) is None  # order is part of the plan
    assert store.find_resumable(sha, ["MiniMax-M2.5"]) is None
    assert store.find_resumable("0" * 64, MODELS) is None

    store.set_batch("new", status="canceled")
    assert getattr(store.find_resumable(sha, MODELS), "id", None) == "old"
    store.set_batch("old", status="canceled")
    assert store.find_resumable(sha, MODELS) is None


# --------------------------------------------------------------------------- loading a file


def test_add_jobs_fans_out_to_every_model(store: Store, engine: Engine) -> None:
    store.create_batch(batch_row("b1"))
    specs = [
        spec(1, "q1"),
        spec(2, "q2", invalid_for={M27: "max_tokens exceeds MiniMax-M2.7's limit"}),
        spec(3, "q3"),
    ]
    assert store.add_jobs("b1", specs, MODELS) == 6

    rows = table_rows(
        engine,
        select(
            requests.c.custom_id, requests.c.model, requests.c.status, requests.c.error_message
        ).order_by(requests.c.id),
    )
    assert [(r["custom_id"], r["model"], r["status"]) for r in rows] == [
        ("q1", M3, "pending"),
        ("q1", M27, "pending"),
        ("q2", M3, "pending"),
        ("q2", M27, "invalid"),
        ("q3", M3, "pending"),
        ("q3", M27, "pending"),
    ]
    invalid = next(r for r in rows if r["status"] == "invalid")
    assert invalid["error_message"] == "max_tokens exceeds MiniMax-M2.7's limit"
    assert store.find_batch("b1").jobs_total == 3
    assert store.batch_models("b1") == MODELS
    assert store.status_counts("b1") == {M3: {"pending": 3}, M27: {"pending": 2, "invalid": 1}}


def test_add_jobs_in_chunks_accumulates(store: Store) -> None:
    store.create_batch(batch_row("b1"))
    assert store.add_jobs("b1", [spec(1, "q1"), spec(2, "q2")], MODELS) == 4
    assert store.add_jobs("b1", [spec(3, "q3")], MODELS) == 2
    assert store.add_jobs("b1", [], MODELS) == 0
    assert store.find_batch("b1").jobs_total == 3
    with pytest.raises(StoreError):  # a custom_id is stored once per batch
        store.add_jobs("b1", [spec(4, "q1")], MODELS)
    assert store.find_batch("b1").jobs_total == 3  # the failed chunk left nothing behind


def test_add_jobs_without_fan_out_uses_each_lines_model(store: Store) -> None:
    store.create_batch(batch_row("b1", models=[]))
    specs = [spec(1, "q1", model=M27), spec(2, "q2", model=M3), spec(3, "q3", model=M27)]
    assert store.add_jobs("b1", specs, []) == 3
    assert store.batch_models("b1") == [M27, M3]  # first appearance, not alphabetical
    assert store.status_counts("b1") == {M27: {"pending": 2}, M3: {"pending": 1}}


def test_add_line_errors(store: Store) -> None:
    store.create_batch(batch_row("b1"))
    errors = [
        LineError(path="jobs.jsonl", line_no=7, field=None, message="not JSON", custom_id=None),
        LineError(
            path="jobs.jsonl",
            line_no=2,
            field="params.max_tokens",
            message="must be an integer >= 1, got 0",
            custom_id="q2",
        ),
    ]
    store.add_line_errors("b1", errors)
    store.add_line_errors("b1", [])

    rows = store.line_error_rows("b1")
    assert [(r["line_no"], r["custom_id"], r["field"], r["message"]) for r in rows] == [
        (2, "q2", "params.max_tokens", "must be an integer >= 1, got 0"),
        (7, None, None, "not JSON"),
    ]
    assert store.find_batch("b1").lines_invalid == 2


# --------------------------------------------------------------------------- work


def test_pending_pages_in_id_order(store: Store) -> None:
    loaded(store, count=5)

    pages: list[list[str]] = []
    after = 0
    while page := store.pending("b1", M3, after, 2):
        pages.append([item.custom_id for item in page])
        after = page[-1].request_id
    assert pages == [["q1", "q2"], ["q3", "q4"], ["q5"]]

    first = store.pending("b1", M27, 0, 1)[0]
    assert first.model == M27
    assert first.custom_id == "q1"
    assert first.params == spec(1, "q1").params
    assert first.content_hash == spec(1, "q1").content_hash
    assert (first.attempts, first.input_tokens, first.input_estimated) == (0, None, None)
    assert store.pending("b1", "MiniMax-M2.5", 0, 10) == []
    assert store.pending("other", M3, 0, 10) == []


def test_record_writes_attempts_results_and_statuses(store: Store, engine: Engine) -> None:
    loaded(store)
    ids = request_ids(store, "b1", M3)
    outcomes = [
        Outcome(
            request_id=ids["q1"],
            batch_id="b1",
            model=M3,
            custom_id="q1",
            status="succeeded",
            attempts=[
                attempt(1, "retry", 429, error_type="rate_limit_error", retry_after_s=1.5),
                attempt(2, "ok", request_uid="req_abc"),
            ],
            input_tokens=12,
            input_estimated=False,
            result=result_row("answer one"),
        ),
        Outcome(
            request_id=ids["q2"],
            batch_id="b1",
            model=M3,
            custom_id="q2",
            status="errored",
            attempts=[attempt(1, "failed", 500, error_type="api_error", error_code=1000)],
            error_type="api_error",
            error_message="internal error",
            error_status=500,
            error_code=1000,
        ),
        Outcome(  # interrupted: stays resumable, but the tokens counted so far are kept
            request_id=ids["q3"],
            batch_id="b1",
            model=M3,
            custom_id="q3",
            status="pending",
            attempts=[attempt(1, "interrupted", None)],
            input_tokens=40,
            input_estimated=True,
        ),
    ]
    store.record(outcomes)
    store.record([])

    rows = {
        r["custom_id"]: r
        for r in table_rows(engine, select(requests).where(requests.c.model == M3))
    }
    assert rows["q1"]["status"] == "succeeded"
    assert (rows["q1"]["attempts"], rows["q1"]["input_tokens"]) == (2, 12)
    assert rows["q1"]["input_estimated"] is False
    assert rows["q2"]["status"] == "errored"
    assert (rows["q2"]["error_type"], rows["q2"]["error_message"]) == (
        "api_error",
        "internal error",
    )
    assert (rows["q2"]["error_status"], rows["q2"]["error_code"]) == (500, 1000)
    assert rows["q3"]["status"] == "pending"
    assert (rows["q3"]["attempts"], rows["q3"]["input_tokens"]) == (1, 40)
    assert rows["q3"]["input_estimated"] is True

    logged = table_rows(engine, select(attempts).order_by(attempts.c.id))
    assert [(a["request_id"], a["number"], a["outcome"], a["status"]) for a in logged] == [
        (ids["q1"], 1, "retry", 429),
        (ids["q1"], 2, "ok", 200),
        (ids["q2"], 1, "failed", 500),
        (ids["q3"], 1, "interrupted", None),
    ]
    assert logged[0]["retry_after_s"] == 1.5
    assert logged[1]["request_uid"] == "req_abc"
    assert {a["batch_id"] for a in logged} == {"b1"}

    stored = store.result_rows("b1")
    assert len(stored) == 1
    assert stored[0]["request_id"] == ids["q1"]
    assert (stored[0]["custom_id"], stored[0]["model"]) == ("q1", M3)
    assert stored[0]["text"] == "answer one"
    assert stored[0]["message"] == result_row("answer one")["message"]
    assert stored[0]["cost_nanos"] == 3_000_000_123
    assert stored[0]["first_thinking_s"] is None
    assert [item.custom_id for item in store.pending("b1", M3, 0, 10)] == ["q3"]
    assert store.status_counts("b1")[M3] == {"succeeded": 1, "errored": 1, "pending": 1}


def test_record_never_gives_a_request_two_results(store: Store, engine: Engine) -> None:
    loaded(store)
    rid = request_ids(store, "b1", M3)["q1"]

    def done(text_: str, status: str) -> Outcome:
        return Outcome(
            request_id=rid,
            batch_id="b1",
            model=M3,
            custom_id="q1",
            status=status,
            attempts=[attempt(1, "ok")],
            result=result_row(text_),
        )

    store.record([done("first", "succeeded")])
    store.record([done("second", "succeeded")])  # e.g. a run that overlapped another
    store.record([done("third", "errored")])

    stored = store.result_rows("b1")
    assert [r["text"] for r in stored] == ["first"]
    row = table_rows(engine, select(requests).where(requests.c.id == rid))[0]
    assert row["status"] == "succeeded"  # only a pending request changes status
    assert row["attempts"] == 1
    assert row["error_type"] is None
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(results)).scalar_one()
    assert count == 1


def test_record_is_one_transaction(store: Store, engine: Engine) -> None:
    loaded(store)
    rid = request_ids(store, "b1", M3)["q1"]
    good = Outcome(
        request_id=rid,
        batch_id="b1",
        model=M3,
        custom_id="q1",
        status="succeeded",
        attempts=[attempt(1, "ok")],
        result=result_row("kept?"),
    )
    broken = Outcome(  # no such request: the foreign key refuses the attempt row
        request_id=999_999,
        batch_id="b1",
        model=M3,
        custom_id="ghost",
        status="succeeded",
        attempts=[attempt(1, "ok")],
    )
    with pytest.raises(StoreError):
        store.record([good, broken])

    assert store.result_rows("b1") == []
    assert table_rows(engine, select(attempts)) == []
    assert store.status_counts("b1")[M3] == {"pending": 3}


def test_reset_errored_and_cancel_pending(store: Store) -> None:
    loaded(store, count=4)
    ids = request_ids(store, "b1", M3)
    store.record(
        [
            Outcome(
                request_id=ids[custom_id],
                batch_id="b1",
                model=M3,
                custom_id=custom_id,
                status=status,
                attempts=[attempt(1, "ok" if status == "succeeded" else "failed")],
                result=result_row("ok") if status == "succeeded" else None,
            )
            for custom_id, status in [("q1", "succeeded"), ("q2", "errored"), ("q3", "errored")]
        ]
    )
    assert store.status_counts("b1") == {
        M3: {"succeeded": 1, "errored": 2, "pending": 1},
        M27: {"pending": 4},
    }

    assert store.reset_errored("b1") == 2
    assert store.reset_errored("b1") == 0
    assert store.status_counts("b1")[M3] == {"succeeded": 1, "pending": 3}
    assert [item.custom_id for item in store.pending("b1", M3, 0, 10)] == ["q2", "q3", "q4"]

    assert store.cancel_pending("b1") == 7
    assert store.cancel_pending("b1") == 0
    assert store.status_counts("b1") == {
        M3: {"succeeded": 1, "canceled": 3},
        M27: {"canceled": 4},
    }
    assert store.pending("b1", M3, 0, 10) == []


def test_a_canceled_request_takes_no_late_result(store: Store, engine: Engine) -> None:
    loaded(store, count=1)
    ids = request_ids(store, "b1", M3)
    store.cancel_pending("b1")
    store.record(
        [
            Outcome(
                request_id=ids["q1"],
                batch_id="b1",
                model=M3,
                custom_id="q1",
                status="succeeded",
                attempts=[attempt(1, "ok")],
                result=result_row("late"),
            )
        ]
    )
    with engine.connect() as connection:
        assert connection.execute(text("select count(*) from results")).scalar() == 0
    assert store.status_counts("b1")[M3] == {"canceled": 1}


def test_a_batch_whose_loading_was_interrupted_is_not_continued(store: Store) -> None:
    store.create_batch(batch_row("b1", status="loading"))
    assert store.find_resumable(batch_row("b1")["source_sha256"], batch_row("b1")["models"]) is None
    store.set_batch("b1", status="running")
    found = store.find_resumable(batch_row("b1")["source_sha256"], batch_row("b1")["models"])
    assert found is not None


def test_an_id_wins_over_a_name_that_looks_like_it(store: Store) -> None:
    store.create_batch(batch_row("b1", name="first"))
    store.create_batch(batch_row("b2", name="b1"))
    assert store.find_batch("b1").id == "b1"
    assert store.find_batch("first").id == "b1"


def test_counts_and_reads_stay_within_their_batch(store: Store) -> None:
    loaded(store, "b1", count=2)
    store.create_batch(batch_row("b2", name="second"))
    store.add_jobs("b2", [spec(1, "q1")], [M27])

    assert store.cancel_pending("b2") == 1
    assert store.status_counts("b1") == {M3: {"pending": 2}, M27: {"pending": 2}}
    assert store.status_counts("b2") == {M27: {"canceled": 1}}
    assert store.batch_models("b2") == [M27]
    assert store.status_counts("none") == {}
    assert store.result_rows("none") == []


def test_export_rows_follow_lines_then_the_batchs_model_order(store: Store) -> None:
    store.create_batch(batch_row("b1"))
    # Stored out of line order (as chunks of a resumed load could be): export sorts by line.
    store.add_jobs("b1", [spec(3, "q3"), spec(1, "q1")], MODELS)
    store.add_jobs("b1", [spec(2, "q2", invalid_for={M3: "too long for M3"})], MODELS)
    ids = request_ids(store, "b1", M27)
    store.record(
        [
            Outcome(
                request_id=ids["q1"],
                batch_id="b1",
                model=M27,
                custom_id="q1",
                status="succeeded",
                attempts=[attempt(1, "ok")],
                result=result_row("q1 on M2.7"),
            )
        ]
    )

    rows = list(store.export_rows(store.find_batch("b1")))
    assert [(r["line_no"], r["custom_id"], r["model"]) for r in rows] == [
        (1, "q1", M3),
        (1, "q1", M27),
        (2, "q2", M3),
        (2, "q2", M27),
        (3, "q3", M3),
        (3, "q3", M27),
    ]
    by_key = {(r["custom_id"], r["model"]): r for r in rows}
    done = by_key["q1", M27]
    assert (done["status"], done["attempts"], done["text"]) == ("succeeded", 1, "q1 on M2.7")
    assert done["output_tokens"] == 34
    pending = by_key["q1", M3]
    assert pending["status"] == "pending"
    assert pending["text"] is None
    assert pending["sent_at"] is None
    assert pending["cost_nanos"] is None
    invalid = by_key["q2", M3]
    assert (invalid["status"], invalid["error_message"]) == ("invalid", "too long for M3")

    paged = list(store.export_rows(store.find_batch("b1"), page=1))
    assert [(r["custom_id"], r["model"]) for r in paged] == [
        (r["custom_id"], r["model"]) for r in rows
    ]


def test_export_rows_without_fan_out(store: Store) -> None:
    store.create_batch(batch_row("b1", models=[]))
    store.add_jobs("b1", [spec(2, "q2", model=M3), spec(1, "q1", model=M27)], [])
    rows = list(store.export_rows(store.find_batch("b1")))
    assert [(r["custom_id"], r["model"], r["status"]) for r in rows] == [
        ("q1", M27, "pending"),
        ("q2", M3, "pending"),
    ]


# --------------------------------------------------------------------------- SQLite specifics


def test_sqlite_file_is_in_wal_mode(sqlite_url: str) -> None:
    opened = Store(sqlite_url)
    try:
        with opened.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        opened.close()
    # WAL is a property of the file: a plain connection sees it too.
    plain = create_engine(sqlite_url)
    try:
        with plain.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    finally:
        plain.dispose()


def test_sqlite_reader_is_not_blocked_by_a_writer(sqlite_url: str) -> None:
    writer = Store(sqlite_url)
    reader = Store(sqlite_url)
    writer.create_batch(batch_row("b0"))
    errors: list[BaseException] = []
    reading = threading.Event()
    written = threading.Event()
    commits = 60

    def write() -> None:
        try:
            reading.wait(10)
            for n in range(1, commits + 1):
                writer.create_batch(batch_row(f"b{n}"))
                writer.set_batch(f"b{n}", status="completed")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            written.set()

    def read() -> None:
        try:
            # A statement still being stepped holds its read snapshot while the writer commits;
            # without WAL the writer could not commit until it ends.
            with reader.engine.connect() as connection:
                held = connection.execution_options(stream_results=True).execute(
                    select(batches.c.id)
                )
                reading.set()
                while not written.is_set():
                    reader.list_batches()
                    reader.status_counts("b0")
                assert [row.id for row in held] == ["b0"]  # the snapshot from before
                held.close()
        except BaseException as exc:
            errors.append(exc)
            reading.set()

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert len(reader.list_batches()) == commits + 1
    finally:
        writer.close()
        reader.close()


# --------------------------------------------------------------------------- errors and URLs


def test_unreachable_database_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        Store("postgresql+psycopg://u:s3cret@127.0.0.1:1/x")
    message = str(caught.value)
    assert "s3cret" not in message
    assert message.startswith("cannot open the database postgresql+psycopg://u:***@127.0.0.1:1/x")
    assert "refused" in message.lower()


def test_unopenable_sqlite_file_is_a_store_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}"
    with pytest.raises(StoreError, match="unable to open database file") as caught:
        Store(url)
    assert str(tmp_path) in str(caught.value)


def test_unknown_dialect_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="nodialect") as caught:
        Store("nodialect://u:s3cret@127.0.0.1:1/x")
    assert "s3cret" not in str(caught.value)


def test_malformed_port_is_a_store_error() -> None:
    with pytest.raises(StoreError) as caught:
        Store("postgresql+psycopg://u:s3cret@127.0.0.1:notaport/x")
    assert "s3cret" not in str(caught.value)
    assert "notaport" in str(caught.value)


def test_missing_driver_is_a_store_error() -> None:
    if importlib.util.find_spec("MySQLdb") is not None:
        pytest.skip("MySQLdb is installed here: this test needs a missing driver")
    with pytest.raises(StoreError) as caught:
        Store("mysql+mysqldb://u:s3cret@127.0.0.1:1/x")
    assert "s3cret" not in str(caught.value)
    assert "MySQLdb" in str(caught.value)


def test_password_in_the_query_string_is_never_shown() -> None:
    with pytest.raises(StoreError) as caught:
        Store("postgresql+psycopg://127.0.0.1:1/x?user=u&password=s3cret")
    assert "s3cret" not in str(caught.value)
    assert "password=***" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://u:s3cret@db.example:5432/x",
            "postgresql+psycopg://u:***@db.example:5432/x",
        ),
        ("postgresql://u:p@ss:w@rd@db/x", "postgresql://u:***@db/x"),
        ("sqlite:////tmp/batchrun.db", "sqlite:////tmp/batchrun.db"),
        ("postgresql://db/x", "postgresql://db/x"),
        (
            "postgresql://db/x?sslmode=require&password=s3cret",
            "postgresql://db/x?sslmode=require&password=***",
        ),
        ("postgresql://u:a@db/x?PASSWORD=b&user=u", "postgresql://u:***@db/x?PASSWORD=***&user=u"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_url_leaves_a_url_without_password_alone() -> None:
    assert redact_url("postgresql+psycopg://postgres@127.0.0.1/x") == (
        "postgresql+psycopg://postgres@127.0.0.1/x"
    )


def test_database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert database_url(None) == f"sqlite:///{tmp_path.resolve() / 'batchrun.db'}"
    assert database_url("") == f"sqlite:///{tmp_path.resolve() / 'batchrun.db'}"
    assert database_url("runs/a.db") == f"sqlite:///{tmp_path.resolve() / 'runs' / 'a.db'}"
    assert database_url(str(tmp_path / "b.db")) == f"sqlite:///{tmp_path.resolve() / 'b.db'}"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert database_url("~/c.db") == f"sqlite:///{tmp_path.resolve() / 'c.db'}"
    for url in ("sqlite:///relative.db", "postgresql+psycopg://u:p@h:5432/db"):
        assert database_url(url) == url


def test_database_url_from_a_bare_path_opens_a_store(tmp_path: Path) -> None:
    opened = Store(database_url(str(tmp_path / "fresh.db")))
    try:
        opened.create_batch(batch_row("b1"))
    finally:
        opened.close()
    assert (tmp_path / "fresh.db").is_file()


def test_processes_opening_a_new_sqlite_file_at_once_create_it_once(tmp_path: Path) -> None:
    errors: list[str] = []

    def open_store(url: str) -> None:
        try:
            Store(url).close()
        except StoreError as exc:
            errors.append(str(exc))

    for round_no in range(4):
        url = database_url(str(tmp_path / f"new-{round_no}.db"))
        openers = [threading.Thread(target=open_store, args=(url,)) for _ in range(3)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(60)
    assert errors == []

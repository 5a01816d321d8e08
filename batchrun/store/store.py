"""The ``Store`` facade: one database and the noun objects that hold its SQL.

Other packages call the Store's methods (each hands over to one noun object) or the noun objects
themselves (``store.claims``, ``store.pacers``, ``store.budgets``, ``store.model_budgets``). The
store is synchronous; the runner calls it from one writer task through a worker thread and
commits results in small batches. Opening a store applies any migration it lacks, so a store
made by an older batchrun is upgraded in place.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from batchrun.exceptions import StoreError
from batchrun.jobs import JobSpec, LineError
from batchrun.store import aggregates
from batchrun.store.batches import Batches
from batchrun.store.claims import Claims
from batchrun.store.database import Database, reason, redact_url
from batchrun.store.grades import Grades
from batchrun.store.jobs import Jobs
from batchrun.store.limits import Budgets, Pacers
from batchrun.store.migrate import Upgrade, migrate
from batchrun.store.ratings import Ratings
from batchrun.store.results import Results
from batchrun.store.rows import BatchInfo, CostUpdate, Outcome, WorkItem
from batchrun.store.tables import model_budgets
from batchrun.store.work import Work

Pages = Iterator[list[tuple[Any, ...]]]


class Store:
    """A batchrun database."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.database = Database(url)
            with self.database.engine.begin() as connection:
                self.upgrade: Upgrade | None = migrate(connection)  # None: at the head already
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            # ValueError: a malformed URL (a port that is not a number); ImportError: the
            # database's driver is not installed (psycopg for PostgreSQL: `pip install
            # 'batchrun[postgres]'`).
            raise StoreError(f"cannot open the database {redact_url(url)}: {reason(exc)}") from exc
        self.batches = Batches(self.database)
        self.jobs = Jobs(self.database)
        self.work = Work(self.database)
        self.results = Results(self.database)
        self.grades = Grades(self.database)
        self.ratings = Ratings(self.database)
        self.claims = Claims(self.database)
        self.pacers = Pacers(self.database)
        self.budgets = Budgets(self.database)
        self.model_budgets = Budgets(self.database, model_budgets)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tests and tools that look at the database directly)."""
        return self.database.engine

    def close(self) -> None:
        """Release every connection."""
        self.database.close()

    # --- batches -------------------------------------------------------------------------------

    def create_batch(self, row: Mapping[str, Any]) -> bool:
        """Store a new batch; False (nothing stored) when another holds its ``open_key``."""
        return self.batches.create(row)

    def find_batch(self, ref: str) -> BatchInfo:
        """The batch whose id, or else whose name, is ``ref``."""
        return self.batches.find(ref)

    def find_resumable(
        self, source_sha256: str, models: Sequence[str], name: str | None = None
    ) -> BatchInfo | None:
        """The latest batch of the same file content and models that may be continued, if any;
        with ``name`` (--name), only the batch of that name (ConfigError if it is another's)."""
        if name is not None:
            return self.batches.find_named(name, source_sha256, models)
        return self.batches.find_resumable(source_sha256, models)

    def list_batches(self) -> list[BatchInfo]:
        """Every batch, newest first."""
        return self.batches.newest_first()

    def name_taken(self, name: str) -> bool:
        """Whether a batch already has this name."""
        return self.batches.name_taken(name)

    def set_batch(self, batch_id: str, **values: Any) -> None:
        """Update a batch's status (an allowed move: batchrun.status) or other fields."""
        self.batches.set(batch_id, **values)

    # --- loading a file ------------------------------------------------------------------------

    def add_jobs(self, batch_id: str, specs: Sequence[JobSpec], models: Sequence[str]) -> int:
        """Store valid lines and their requests (one per model); return requests created."""
        return self.jobs.add(batch_id, specs, models)

    def add_line_errors(self, batch_id: str, errors: Sequence[LineError]) -> None:
        """Store the invalid lines of a file."""
        self.jobs.add_line_errors(batch_id, errors)

    # --- work ----------------------------------------------------------------------------------

    def pending(
        self, batch_id: str, model: str, after_id: int, limit: int, only: Sequence[int] = ()
    ) -> list[WorkItem]:
        """Up to ``limit`` pending requests of one model, in id order, after ``after_id``."""
        return self.work.pending(batch_id, model, after_id, limit, only)

    def record(self, outcomes: Sequence[Outcome], claimed_by: str | None = None) -> None:
        """Write what happened to these requests, all in one transaction."""
        self.work.record(outcomes, claimed_by)

    def reset_errored(self, batch_id: str) -> int:
        """Make errored requests pending again (``resume --retry-errored``); return how many."""
        return self.work.reset_errored(batch_id)

    def cancel_pending(self, batch_id: str) -> int:
        """Mark every pending request canceled; return how many."""
        return self.work.cancel_pending(batch_id)

    def set_input_tokens(self, counts: Sequence[tuple[int, int, bool]]) -> None:
        """Store pre-checked input tokens of pending requests: (request id, tokens, estimated)."""
        self.work.set_input_tokens(counts)

    def batch_models(self, batch_id: str) -> list[str]:
        """The models a batch's requests go to, in the order they first appear."""
        return self.work.batch_models(batch_id)

    def status_counts(self, batch_id: str) -> dict[str, dict[str, int]]:
        """Requests per model and status."""
        return self.work.status_counts(batch_id)

    def aggregate_rows(self, batch_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The results' sums per batch, model, UTC hour and origin (store/aggregates.py)."""
        with self.database.connect() as connection:
            return aggregates.rows(connection, batch_ids)

    def rebuild_aggregates(self) -> None:
        """Work the aggregates out again from the results (changed outside batchrun)."""
        with self.database.begin() as connection:
            aggregates.rebuild(connection)

    def retry_counts(self, batch_id: str) -> dict[str, int]:
        """Per model: calls beyond each request's first (the attempts table)."""
        return self.work.retry_counts(batch_id)

    # --- reading -------------------------------------------------------------------------------

    def output_history(self, simulated: bool) -> dict[str, tuple[int, float]]:
        """Per model: how many simulated (or real) results the store has, and their mean output
        tokens."""
        return self.results.output_history(simulated)

    def spend_since(self, since: float, simulated: bool) -> dict[str, int]:
        """Per model: nano-dollars of the priced results (simulated or real) sent since then."""
        return self.results.spend_since(since, simulated)

    def batch_spend(self, batch_id: str, model: str | None = None) -> int:
        """Nano-dollars spent on a batch's priced results so far (of one model, or all)."""
        return self.results.batch_spend(batch_id, model)

    def result_rows(
        self, batch_id: str | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        """Results of one batch or of all, sent at or after ``since`` (epoch seconds)."""
        return self.results.result_rows(batch_id, since)

    def pricing_rows(self, batch_id: str | None) -> list[dict[str, Any]]:
        """What repricing needs of each result: usage, day, model, and the request's params."""
        return self.results.pricing_rows(batch_id)

    def update_costs(self, updates: Sequence[CostUpdate]) -> None:
        """Store recomputed costs: the cost, its price date, the uncached and cache-write costs."""
        self.results.update_costs(updates)

    def export_rows(self, batch: BatchInfo, page: int = 2000) -> Iterator[dict[str, Any]]:
        """Every request of a batch in input-file order, then model order, with its result."""
        return self.results.export_rows(batch, page)

    def line_error_rows(self, batch_id: str) -> list[dict[str, Any]]:
        """The invalid lines of a batch's file, in line order."""
        return self.jobs.line_error_rows(batch_id)

    # --- dashboard reads -----------------------------------------------------------------------

    def metric_rows(
        self, batch_ids: Sequence[str] | None = None, page: int = 50_000
    ) -> tuple[Pages, Pages]:
        """Every request (of some batches, or all) and their results' metrics, in pages."""
        return self.results.metric_rows(batch_ids, page)

    def result_metric_rows(
        self, batch_ids: Sequence[str] | None = None, page: int = 50_000
    ) -> Pages:
        """The results' metric columns (``analytics.RESULT_COLUMNS``), in pages."""
        return self.results.result_metric_rows(batch_ids, page)

    def find_jobs(self, batch_id: str, text: str = "", limit: int = 200) -> list[dict[str, Any]]:
        """Jobs of a batch whose custom_id or request contains ``text``, in file order."""
        return self.jobs.find(batch_id, text, limit)

    def job_answers(self, batch_id: str, custom_id: str) -> list[dict[str, Any]]:
        """Each model's request for one job, with its result where it succeeded."""
        return self.results.job_answers(batch_id, custom_id)

    # --- grades --------------------------------------------------------------------------------

    def grading_rows(self, batch_id: str) -> list[dict[str, Any]]:
        """A batch's results with what grading needs: the answer, the job's expect and params."""
        return self.grades.grading_rows(batch_id)

    def replace_grades(self, batch_id: str, grader: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Store one grader's grades of these results, replacing its earlier ones; return count."""
        return self.grades.replace_grades(batch_id, grader, rows)

    def grade_rows(self, batch_id: str, grader: str | None = None) -> list[dict[str, Any]]:
        """Grades of a batch (of one grader or all) with their result's model, timings and cost."""
        return self.grades.grade_rows(batch_id, grader)

    def judge_spend(self, batch_id: str) -> int:
        """Nano-dollars spent judging a batch's answers (kept apart from the answers' cost)."""
        return self.grades.judge_spend(batch_id)


__all__ = ["Outcome", "Store", "WorkItem"]

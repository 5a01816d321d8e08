"""batchrun from Python (notebooks, scripts): open a store, run or resume a batch, read frames.

The same steps ``batchrun run`` and ``batchrun resume`` take, without a terminal: no progress
display, no question before sending (set ``max_cost_usd`` for a hard cap instead), nothing
printed. With no API key (argument, MINIMAX_API_KEY or ANTHROPIC_API_KEY) the built-in MiniMax
simulator answers, as on the command line, and the batch is marked simulated.

The frames are the dashboard's own: ``requests_frame`` (one row per request with its metrics),
``metrics_frame`` (per model: latency, TTFT and tokens/s percentiles, cost, errors) and
``answers_frame`` (each request's answer text, as ``batchrun results -o FILE.csv`` writes it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import tempfile
import threading
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from batchrun.api.endpoint import Deadlines, Endpoint
from batchrun.catalog import Catalog, check_models, load_catalog
from batchrun.config import Environment, read_environment
from batchrun.exceptions import ConfigError
from batchrun.jobs import check_file
from batchrun.plan.planner import PlanOptions, file_digest, open_file_batch
from batchrun.pricing import parse_usd
from batchrun.run.budget import batch_cap
from batchrun.run.launch import EndpointOptions, LimitOptions, open_endpoint
from batchrun.run.report import check_resumable, count_requests, finish_batch
from batchrun.run.retry import RetryPolicy
from batchrun.run.settings import SendSettings
from batchrun.sim.loop import run_fast
from batchrun.status import BatchStatus, RequestStatus
from batchrun.store import BatchInfo, Outcome, Store, database_url

if TYPE_CHECKING:
    import polars as pl

    from batchrun.run.report import RunReport

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How a batch is sent: the command line's options, as values."""

    models: Sequence[str] = ()  # fan every line out to these; empty: each line's own model
    name: str | None = None
    max_tokens: int = 1024  # for lines that give none
    strict: bool = False  # refuse the whole file if any line is invalid
    precheck: bool = True  # count_tokens before sending
    max_cost_usd: Decimal | str | float | None = None  # hard budget for the batch
    api_key: str | None = field(default=None, repr=False)  # default: $MINIMAX_API_KEY, else
    # $ANTHROPIC_API_KEY; never shown in a repr
    base_url: str | None = None  # default: ANTHROPIC_BASE_URL, else MiniMax's
    simulate: bool = False  # the built-in simulator even with a key
    sim_time_scale: float = 1.0  # simulated latency x this (0: as fast as possible)
    sim_profile: str | None = None  # "field" or "docs" (batchrun.sim.settings.PROFILES)
    rpm: Mapping[str, int] = field(default_factory=dict)  # model (or "*") -> requests/minute
    tpm: Mapping[str, int] = field(default_factory=dict)  # model (or "*") -> tokens/minute
    concurrency: Mapping[str, int] = field(default_factory=dict)
    # One pool over every model of the run (the account's), replacing the catalog's pools.
    account_rpm: int | None = None  # requests/minute for all the models together
    account_tpm: int | None = None  # tokens/minute (input + max_tokens) for all together
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    deadlines: Deadlines = field(default_factory=Deadlines)
    catalog: Path | None = None  # a catalog file of your own (models, prices, limits)

    def __post_init__(self) -> None:
        # Checked here, so that a bad figure fails before anything is stored or sent.
        for name in ("account_rpm", "account_tpm"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(f"{name} must be a whole number of at least 1, not {value!r}")
        if self.sim_profile is not None:
            from batchrun.sim.settings import profile_settings  # noqa: PLC0415 - light

            profile_settings(self.sim_profile)  # an unknown name is refused with the known ones


@dataclass(frozen=True, kw_only=True)
class BatchRun:
    """How a run of a batch ended, and where its requests are now."""

    batch: BatchInfo  # as stored after the run (status: completed, paused or canceled)
    counts: dict[str, dict[str, int]]  # model -> status -> requests
    interrupted: bool = False
    stopped_models: dict[str, str] = field(default_factory=dict)  # model -> why
    budget_reached: bool = False
    store_error: str | None = None
    unsaved: list[Outcome] = field(default_factory=list)  # finished, but not in the store

    @property
    def pending(self) -> int:
        """Requests still to send: ``resume`` sends them."""
        return count_requests(self.counts, RequestStatus.PENDING)


def open_store(db: str | os.PathLike[str] | None = None) -> Store:
    """The store at a SQLite path or database URL (default: $BATCHRUN_DB, else ./batchrun.db),
    created or migrated to the current schema."""
    value = os.fspath(db) if db is not None else read_environment().db
    return Store(database_url(value))


def run_file(
    path: str | os.PathLike[str], *, store: Store, options: RunOptions | None = None
) -> BatchRun:
    """Run every line of a JSONL job file; the same file and models again continue its batch."""
    chosen = options or RunOptions()
    file = Path(path)
    check_file(file)  # empty, unreadable, not JSONL: one clear error before anything is stored
    catalog = load_catalog(chosen.catalog)
    models = check_models(chosen.models, catalog, "models")
    return _in_own_loop(_run_file(file, store, catalog, models, chosen))


def run_jobs(
    jobs: Iterable[Mapping[str, Any]], *, store: Store, options: RunOptions | None = None
) -> BatchRun:
    """Run job lines given as dicts (each what one JSONL line holds), as ``run_file`` does."""
    with tempfile.TemporaryDirectory(prefix="batchrun-jobs-") as folder:
        file = Path(folder) / "jobs.jsonl"
        written = 0
        with file.open("xb") as handle:
            for job in jobs:
                handle.write(orjson.dumps(job) + b"\n")
                written += 1
        if not written:
            raise ConfigError("the job list is empty: give run_jobs at least one job dict")
        return run_file(file, store=store, options=options)


def resume(
    batch: str, *, store: Store, options: RunOptions | None = None, retry_errored: bool = False
) -> BatchRun:
    """Send a batch's pending requests (by id or name); finished ones are never sent again."""
    chosen = options or RunOptions()
    found = store.find_batch(batch)
    check_resumable(found)
    if retry_errored:
        store.reset_errored(found.id)
    catalog = load_catalog(chosen.catalog)
    return _in_own_loop(_resume(store, catalog, found, chosen))


def requests_frame(store: Store, batches: Sequence[str] | None = None) -> pl.DataFrame:
    """One row per request of some batches (ids or names; default all) with its metrics: the
    frame every dashboard page starts from (``analytics.requests_frame``)."""
    from batchrun import analytics  # noqa: PLC0415 - polars only for who reads frames

    chosen = _batches(store, batches)
    ids = [b.id for b in chosen]
    return analytics.requests_frame(*store.metric_rows(ids), [b.as_dict() for b in chosen])


def metrics_frame(
    store: Store, batches: Sequence[str] | None = None, by: Sequence[str] = ("model",)
) -> pl.DataFrame:
    """Per model (or ``by`` other columns): requests, errors, latency, TTFT and tokens/s
    percentiles and cost, as the dashboard's Compare page shows them."""
    from batchrun import analytics  # noqa: PLC0415

    return analytics.model_metrics(requests_frame(store, batches), by=by)


def answers_frame(store: Store, batch: str) -> pl.DataFrame:
    """Each result of one batch in input order: ids, outcome, answer text and metrics."""
    import polars as pl  # noqa: PLC0415

    from batchrun.export import flatten, result_records  # noqa: PLC0415

    rows = [flatten(r) for r in result_records(store, store.find_batch(batch))]
    return pl.DataFrame(rows, infer_schema_length=None)


def _batches(store: Store, refs: Sequence[str] | None) -> list[BatchInfo]:
    if refs is None:
        return store.list_batches()
    return [store.find_batch(ref) for ref in refs]


def _environment(options: RunOptions) -> Environment:
    env = read_environment()
    if options.api_key is None and options.base_url is None:
        return env
    return Environment(
        api_key=options.api_key or env.api_key,
        key_variable=None if options.api_key else env.key_variable,
        base_url=options.base_url or env.base_url,
        db=env.db,
        catalog=env.catalog,
    )


async def _run_file(
    file: Path, store: Store, catalog: Catalog, models: list[str], options: RunOptions
) -> BatchRun:
    with _endpoint(options) as endpoint:
        digest = file_digest(file)
        plan = PlanOptions(
            models=models,
            default_max_tokens=options.max_tokens,
            strict=options.strict,
            name=options.name,
        )
        # The file's batch continued (--name's, or the latest), else one new one, even across
        # processes loading it at once.
        batch = open_file_batch(store, catalog, file, plan, endpoint, digest=digest).batch
        return await _send(store, catalog, batch, endpoint, options)


async def _resume(
    store: Store, catalog: Catalog, batch: BatchInfo, options: RunOptions
) -> BatchRun:
    with _endpoint(options) as endpoint:
        return await _send(store, catalog, batch, endpoint, options)


def _endpoint(options: RunOptions) -> AbstractContextManager[Endpoint]:
    endpoint_options = EndpointOptions(
        base_url=options.base_url,
        simulate=options.simulate,
        sim_time_scale=options.sim_time_scale,
        sim_profile=options.sim_profile,
    )
    return open_endpoint(_environment(options), endpoint_options)


async def _send(
    store: Store, catalog: Catalog, batch: BatchInfo, endpoint: Endpoint, options: RunOptions
) -> BatchRun:
    from batchrun.teams.sender import send_claimed  # noqa: PLC0415 - the SDK, only to send

    usd = options.max_cost_usd
    cap = batch_cap(store, batch, None if usd is None else parse_usd(str(usd), "max_cost_usd"))
    store.set_batch(batch.id, status=BatchStatus.RUNNING)
    report, _ = await send_claimed(
        store=store,
        catalog=catalog,
        batch=batch,
        endpoint=endpoint,
        settings=_send_settings(options, cap),
        handle_signals=_in_main_thread(),
    )
    return _ended(store, batch, report)


def _send_settings(options: RunOptions, cap: int | None) -> SendSettings:
    """How the batch is sent: the options' limits, retries and deadlines, under ``cap``."""
    limits = LimitOptions(
        rpm=options.rpm,
        tpm=options.tpm,
        concurrency=options.concurrency,
        account_rpm=options.account_rpm,
        account_tpm=options.account_tpm,
    )
    return SendSettings(
        limits=limits,
        retry=options.retry,
        deadlines=options.deadlines,
        precheck=options.precheck,
        max_cost_nanos=cap,
    )


def _ended(store: Store, batch: BatchInfo, report: RunReport) -> BatchRun:
    finished = finish_batch(store, batch.id, report)
    return BatchRun(
        batch=store.find_batch(batch.id),
        counts=finished.counts,
        interrupted=report.interrupted,
        stopped_models=dict(report.stopped_models),
        budget_reached=report.budget_reached,
        store_error=report.store_error,
        unsaved=list(report.unsaved),
    )


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _in_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on a fresh event loop; from inside a running one (a notebook), on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_fast(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run_fast, coroutine).result()

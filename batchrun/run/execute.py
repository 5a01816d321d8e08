"""Run a stored batch's pending requests under SIGINT / SIGTERM handling, with a live display,
while the disk has room to save what they bring back (``run.space``)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import anyio

from batchrun.api.client import ApiClient
from batchrun.api.endpoint import Deadlines, Endpoint
from batchrun.catalog import MAX_CONCURRENCY, Catalog
from batchrun.run.budget import Budget, BudgetRoom, period_rooms
from batchrun.run.limits import ModelLimiter, describe_limits
from batchrun.run.progress import ModelProgress, RunProgress
from batchrun.run.report import RunReport
from batchrun.run.runner import BatchRunner, WorkSource, worker_count
from batchrun.run.settings import RunSettings
from batchrun.run.space import WATCH_SECONDS, SpaceGuard, space_guard
from batchrun.status import RequestStatus
from batchrun.store import BatchInfo, Store


async def run_batch(
    *,
    store: Store,
    catalog: Catalog,
    batch: BatchInfo,
    endpoint: Endpoint,
    settings: RunSettings,
    deadlines: Deadlines,
    display: Callable[[RunProgress], object] | None = None,
    max_cost_nanos: int | None = None,
    source: WorkSource | None = None,
    budget: Budget | None = None,
    rooms: Sequence[BudgetRoom] | None = None,
    limiters: Mapping[str, ModelLimiter] | None = None,
    handle_signals: bool = True,
    space: SpaceGuard | None = None,
) -> tuple[RunReport, RunProgress]:
    """Run the batch's pending requests until done, stopped, or interrupted by a signal.

    A worker of a team passes its claim-based ``source``, the shared ``budget`` and limiters
    whose pacers live in the database; a plain run leaves them to their defaults. Without
    ``rooms``: the period budgets that apply to the batch (by default the budgets file's): a
    budget of one model of several caps that model alone, and the spend crossing a budget's
    soft threshold is said at once (``run.budget``). Without
    ``handle_signals`` (a run outside the main thread, where signals cannot be received) Ctrl-C
    is left to the caller. ``space``: the directories that must keep room free (by default the
    database's and the working directory, with the default margin); nothing is sent while one
    is short, and dispatch stops as soon as one becomes so (``RunReport.disk_low``).
    """
    progress = await _pending_progress(store, batch, settings)
    await anyio.to_thread.run_sync(_keep_limits, store, batch.id, settings)
    models = list(progress.models)
    connections = sum(worker_count(settings.limits[m], progress, m) for m in models) or 1
    client = ApiClient(endpoint, deadlines, max_connections=min(connections, MAX_CONCURRENCY))
    if budget is None and max_cost_nanos is not None:
        spent = await anyio.to_thread.run_sync(store.batch_spend, batch.id)
        budget = Budget(max_cost_nanos, spent)
    if rooms is None:
        find = partial(period_rooms, store, batch, simulated=endpoint.simulated)
        rooms = await anyio.to_thread.run_sync(find)
    runner = BatchRunner(
        budget=budget,
        rooms=rooms,
        store=store,
        client=client,
        catalog=catalog,
        batch=batch,
        models=models,
        settings=settings,
        progress=progress,
        source=source,
        limiters=limiters,
    )
    try:
        guard = space or space_guard(store.url)
        report = await _run_watched(runner, progress, display, handle_signals, guard)
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()
    return report, progress


def _keep_limits(store: Store, batch_id: str, settings: RunSettings) -> None:
    """Keep the limits this run paces by (each model's, each pool's) in the batch's settings."""
    kept = store.find_batch(batch_id).settings
    store.set_batch(batch_id, settings={**kept, "limits": describe_limits(settings.limits)})


async def _pending_progress(store: Store, batch: BatchInfo, settings: RunSettings) -> RunProgress:
    """Counters for the models of ``settings`` that have pending requests in the batch."""
    counts = await anyio.to_thread.run_sync(store.status_counts, batch.id)
    pending = {m: counts.get(m, {}).get(RequestStatus.PENDING, 0) for m in settings.limits}
    return RunProgress(models={m: ModelProgress(model=m, total=n) for m, n in pending.items() if n})


async def _run_watched(
    runner: BatchRunner,
    progress: RunProgress,
    display: Callable[[RunProgress], object] | None,
    handle_signals: bool,
    space: SpaceGuard,
) -> RunReport:
    """The runner's run, stopped by SIGINT / SIGTERM or a disk short of space, with the display
    refreshed meanwhile. A disk already short of space stops it before anything is sent."""
    async with anyio.create_task_group() as group:
        if not _stopped_for_space(runner, space):
            group.start_soon(_watch_space, runner, space)
        if handle_signals:
            group.start_soon(_stop_on_signals, runner)
        if display is not None:
            group.start_soon(_refresh, display, progress)
        report = await runner.run()
        group.cancel_scope.cancel()
    return report


async def _stop_on_signals(runner: BatchRunner) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            runner.stop(interrupted=True)


def _stopped_for_space(runner: BatchRunner, space: SpaceGuard) -> bool:
    """Stop the runner's dispatch if a directory is short of space; whether it was."""
    short = space.shortage()
    if short is None:
        return False
    runner.report.disk_low = short
    runner.stop(interrupted=False)
    return True


async def _watch_space(runner: BatchRunner, space: SpaceGuard) -> None:
    """Stop dispatch once a directory the run writes to is short of space; the calls in flight
    then finish into the room the margin kept."""
    while True:
        await anyio.sleep(WATCH_SECONDS)
        if _stopped_for_space(runner, space):
            return


async def _refresh(display: Callable[[RunProgress], object], progress: RunProgress) -> None:
    while True:
        display(progress)
        await anyio.sleep(0.5)

"""Running a stored batch: pick the endpoint (MiniMax, or the simulator when there is no key),
set each model's limits, and run the worker pool under SIGINT / SIGTERM handling.
"""

from __future__ import annotations

import contextlib
import math
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import anyio

from batchrun.catalog import Catalog
from batchrun.client import ApiClient, Deadlines, Endpoint
from batchrun.config import MINIMAX_BASE_URL, Environment
from batchrun.limits import ModelLimitSettings
from batchrun.progress import ModelProgress, RunProgress
from batchrun.runner import BatchRunner, RunReport, RunSettings, default_concurrency
from batchrun.sim import SimSettings, simulator_process
from batchrun.store import BatchInfo, Store

SIMULATOR_KEY = "batchrun-simulator"


@dataclass(frozen=True, kw_only=True)
class EndpointOptions:
    """Where to send requests, from options and the environment."""

    base_url: str | None = None
    simulate: bool = False
    sim_time_scale: float = 1.0
    sim_seed: int = 0


@dataclass(frozen=True, kw_only=True)
class LimitOptions:
    """Limit overrides from the command line: ``*`` applies to every model."""

    rpm: Mapping[str, int]
    tpm: Mapping[str, int]
    concurrency: Mapping[str, int]


@contextlib.contextmanager
def open_endpoint(env: Environment, options: EndpointOptions) -> Iterator[Endpoint]:
    """MiniMax with the user's key, or a simulator started for this run."""
    if env.api_key and not options.simulate:
        base_url = options.base_url or env.base_url or MINIMAX_BASE_URL
        yield Endpoint(base_url=base_url.rstrip("/"), api_key=env.api_key, simulated=False)
        return
    settings = SimSettings(time_scale=options.sim_time_scale, seed=options.sim_seed)
    with simulator_process(settings) as sim:
        yield Endpoint(base_url=f"{sim.base_url}/anthropic", api_key=SIMULATOR_KEY, simulated=True)


def limit_settings(
    catalog: Catalog, models: Sequence[str], options: LimitOptions
) -> dict[str, ModelLimitSettings]:
    """Each model's limits: the command line over the catalog (and the user's catalog file)."""
    limits = {}
    for model in models:
        info = catalog.get(model)
        rpm = _pick(options.rpm, model, info.rpm)
        tpm = _pick(options.tpm, model, info.tpm)
        concurrency = _pick(options.concurrency, model, info.concurrency)
        limits[model] = ModelLimitSettings(
            rpm=rpm, tpm=tpm, concurrency=concurrency or default_concurrency(rpm)
        )
    return limits


def _pick(overrides: Mapping[str, int], model: str, default: int | None) -> int | None:
    return overrides.get(model, overrides.get("*", default))


async def run_batch(
    *,
    store: Store,
    catalog: Catalog,
    batch: BatchInfo,
    endpoint: Endpoint,
    settings: RunSettings,
    deadlines: Deadlines,
    on_start: Callable[[BatchRunner], None] | None = None,
    display: Callable[[RunProgress], object] | None = None,
) -> tuple[RunReport, RunProgress]:
    """Run the batch's pending requests until done, stopped, or interrupted by a signal."""
    counts = await anyio.to_thread.run_sync(store.status_counts, batch.id)
    models = [m for m in settings.limits if counts.get(m, {}).get("pending")]
    progress = RunProgress(
        models={m: ModelProgress(model=m, total=counts[m].get("pending", 0)) for m in models}
    )
    connections = sum(settings.limits[m].concurrency for m in models) or 1
    client = ApiClient(endpoint, deadlines, max_connections=min(connections, 4096))
    runner = BatchRunner(
        store=store,
        client=client,
        catalog=catalog,
        batch=batch,
        models=models,
        settings=settings,
        progress=progress,
    )
    if on_start is not None:
        on_start(runner)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_stop_on_signals, runner)
            if display is not None:
                group.start_soon(_refresh, display, progress)
            report = await runner.run()
            group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()
    return report, progress


async def _stop_on_signals(runner: BatchRunner) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            runner.stop(interrupted=True)


async def _refresh(display: Callable[[RunProgress], object], progress: RunProgress) -> None:
    while True:
        display(progress)
        await anyio.sleep(0.5)


def eta_text(seconds: float | None) -> str:
    """Seconds as a short duration, '?' when unknown."""
    if seconds is None or math.isinf(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"

"""What the commands that send (run, resume, submit, worker) share before anything is sent: the
models named on the command line, the endpoint announced, a job file stored as a batch, and the
estimate of its pending requests shown and confirmed.

Light to import: the store, the planner and the SDK load only when a command uses them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
import typer

from batchrun.api.endpoint import Deadlines
from batchrun.catalog import check_models
from batchrun.cli.display import print_estimate
from batchrun.cli.output import shown_url
from batchrun.cli.startup import load_sender
from batchrun.exceptions import ConfigError
from batchrun.pricing import usd

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console

    from batchrun.api.endpoint import Endpoint
    from batchrun.catalog import Catalog
    from batchrun.cli.options import Connection
    from batchrun.plan.estimate import Estimate
    from batchrun.plan.planner import Plan, PlanOptions
    from batchrun.store import BatchInfo, Store


def parse_models(spec: str | None, catalog: Catalog) -> list[str]:
    """The models of ``--models A,B``, each known to the catalog; [] without the option."""
    names = [name.strip() for name in (spec or "").split(",") if name.strip()]
    if spec is not None and not names:
        raise ConfigError(
            f"--models {spec!r} names no model; give one or more, such as "
            f"--models {catalog.names()[0]}, or leave --models out"
        )
    return check_models(names, catalog, "--models")


def announce_endpoint(out: Console, endpoint: Endpoint) -> None:
    """Say where requests go: MiniMax (the URL without secrets) or the simulator."""
    if endpoint.simulated:
        out.print(
            "[bold yellow]No API key (MINIMAX_API_KEY or ANTHROPIC_API_KEY): running against "
            "batchrun's built-in MiniMax simulator. Results are marked simulated.[/]"
        )
    else:
        out.print(f"Sending to {shown_url(endpoint.base_url)}")


def open_from_file(
    store: Store,
    catalog: Catalog,
    file: Path,
    options: PlanOptions,
    endpoint: Endpoint,
    out: Console,
    *,
    digest: str,
) -> BatchInfo:
    """The batch of ``file`` (of ``digest``) with these models: the unfinished one continued,
    else a new one stored now (one, even when several processes load the file at once)."""
    from batchrun.plan.planner import open_file_batch  # noqa: PLC0415

    def waiting(batch: BatchInfo) -> None:
        out.print(
            f"Batch [bold]{batch.name}[/] ({batch.id}) of {file} is being loaded by another "
            "batchrun process; waiting for it, then continuing it."
        )

    opened = open_file_batch(
        store, catalog, file, options, endpoint, digest=digest, waiting=waiting
    )
    if opened.plan is None:
        out.print(
            f"Continuing batch [bold]{opened.batch.name}[/] ({opened.batch.id}) of {file}: "
            "finished requests are not sent again."
        )
    else:
        say_loaded(store, opened.plan, file, out)
    return opened.batch


def say_loaded(store: Store, plan: Plan, file: Path, out: Console) -> None:
    """Say what a newly stored batch holds, invalid lines included."""
    from batchrun.jobs import format_line_errors  # noqa: PLC0415

    out.print(
        f"Batch [bold]{plan.batch.name}[/] ({plan.batch.id}): {plan.batch.jobs_total:,} jobs, "
        f"{plan.requests:,} requests"
        + (f", {plan.line_error_count:,} invalid lines" if plan.line_error_count else "")
    )
    if plan.line_errors:
        out.print("[yellow]Invalid lines (they are not sent; the others are):[/]")
        out.print(format_line_errors(plan.line_errors), markup=False)
    _print_invalid_for_model(store, plan.batch, file, out)


def _print_invalid_for_model(store: Store, batch: BatchInfo, file: Path, out: Console) -> None:
    """The lines that one of their models cannot take: file, line, model and why."""
    count, first = store.jobs.invalid_requests(batch.id)
    if not count:
        return
    what = "1 request cannot" if count == 1 else f"{count:,} requests cannot"
    out.print(
        f"[yellow]{what} go to their model (not sent to it; the line's other models still get "
        "it):[/]"
    )
    for row in first:
        out.print(
            f"{file}:{row.line_no} ({row.custom_id}) for {row.model}: {row.why}",
            markup=False,
            highlight=False,
        )
    if count > len(first):
        out.print(f"... and {count - len(first):,} more", highlight=False)


async def estimate_requests(
    planned: Any,
    catalog: Catalog,
    endpoint: Endpoint,
    store: Store,
    precheck: bool,
    keep: bool = False,
) -> Estimate:
    """The estimate of the planned requests; with ``keep``, their counts are stored as they come
    (so the run does not count them again)."""
    # Loaded here, not at the top: only the commands that call the API need the SDK.
    load_sender()
    from batchrun.api.client import ApiClient  # noqa: PLC0415
    from batchrun.plan.estimate import estimate  # noqa: PLC0415
    from batchrun.plan.precheck import TokenCounter  # noqa: PLC0415

    client = ApiClient(endpoint, Deadlines(), max_connections=64)
    try:
        counter = TokenCounter(client, enabled=precheck)
        # Expected output from past results of the run's own origin (see plan.estimate).
        history = await anyio.to_thread.run_sync(store.output_history, endpoint.simulated)
        other = await anyio.to_thread.run_sync(store.output_history, not endpoint.simulated)
        kept = store.set_input_tokens if keep else None
        return await estimate(
            planned,
            catalog,
            counter,
            history,
            keep=kept,
            history_simulated=endpoint.simulated,
            unused_history={model: n for model, (n, _) in other.items()},
        )
    finally:
        await client.aclose()


def estimate_and_confirm(
    store: Store,
    catalog: Catalog,
    batch: BatchInfo,
    endpoint: Endpoint,
    connection: Connection,
    out: Console,
) -> bool:
    """Show what the pending requests will cost (their counts are kept); False if declined.

    A refusal is remembered (``declined_at``): the next run of the batch shows the estimate of
    everything still to send, not only of what was never counted, and asks again.
    """
    from batchrun.plan.estimate import planned_from_store  # noqa: PLC0415
    from batchrun.sim.loop import run_fast  # noqa: PLC0415

    declined = batch.declined_at is not None
    if declined:
        out.print(
            f"The estimate of batch {batch.name} was declined at "
            f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(batch.declined_at))}: here is "
            "everything it still has to send."
        )
    models = store.batch_models(batch.id)
    planned = planned_from_store(store, batch.id, models, every=declined)
    found = run_fast(
        estimate_requests(planned, catalog, endpoint, store, connection.precheck, keep=True)
    )
    if not found.models:
        return True
    _keep_estimate(store, batch, found)
    print_estimate(out, found, "Estimate of the requests to send (prices of today, USD)")
    total = found.total()
    threshold = connection.confirm_above_nanos
    if declined and threshold is None and not connection.yes:
        out.print(
            "This estimate was declined before, and there is no terminal here to ask again: add "
            "--yes to send it anyway."
        )
        return False
    if threshold is None or total.cost_max_nanos <= threshold:
        _remember_answer(store, batch, accepted=True)
        return True
    expected, cached = total.cost_expected_nanos, total.cached_cost_max_nanos
    question = (
        f"This may cost up to {usd(total.cost_max_nanos)}"
        + (f" (expected {usd(expected)})" if expected is not None else "")
        + (
            f", up to {usd(cached)} with the expected cache reads"
            if total.expected_cache_read_tokens and cached is not None
            else ""
        )
        + ". Send it?"
    )
    try:
        accepted = typer.confirm(question, default=False)
    except typer.Abort as exc:  # no answer (end of input): a "no", remembered as one
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise  # Ctrl-C: the command's own interrupt, not an answer
        out.print()
        accepted = False
    _remember_answer(store, batch, accepted=accepted)
    return accepted


def _remember_answer(store: Store, batch: BatchInfo, *, accepted: bool) -> None:
    """Mark a declined estimate on the batch (its next run asks again); clear it once sent."""
    if accepted and batch.declined_at is None:
        return
    store.set_batch(batch.id, declined_at=None if accepted else time.time())


def _keep_estimate(store: Store, batch: BatchInfo, found: Estimate) -> None:
    """Store the first estimate with the batch, for the dashboard's estimate-against-actual."""
    if "estimate" in batch.settings:
        return  # a resumed batch keeps the estimate made before it first ran
    fields = (
        "requests", "input_tokens", "cost_min_nanos", "cost_expected_nanos", "cost_max_nanos",
        "expected_cache_read_tokens", "cached_cost_min_nanos", "cached_cost_expected_nanos",
        "cached_cost_max_nanos",
    )  # fmt: skip
    kept = {m.model: {f: getattr(m, f) for f in fields} for m in found.models.values()}
    store.set_batch(batch.id, settings={**batch.settings, "estimate": kept})

"""``batchrun run`` and ``batchrun resume``: load a job file as a batch and run it."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import orjson
import typer
from rich.console import Console

from batchrun.api.endpoint import Deadlines, Endpoint
from batchrun.catalog import Catalog
from batchrun.cli import options as opt
from batchrun.cli.display import ProgressDisplay, estimate_table, summary_of, summary_table
from batchrun.cli.errors import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK
from batchrun.cli.grade import grade_expectations, print_quality
from batchrun.cli.output import console
from batchrun.config import read_environment
from batchrun.exceptions import ConfigError
from batchrun.jobs import ReadOptions, check_file, format_line_errors, read_jobs
from batchrun.plan.estimate import Estimate, estimate, planned_from_file, planned_from_store
from batchrun.plan.planner import PlanOptions, create_batch, file_digest
from batchrun.plan.precheck import TokenCounter
from batchrun.pricing import usd
from batchrun.run.launch import (
    EndpointOptions,
    limit_settings,
    open_endpoint,
)
from batchrun.run.progress import RunProgress

if TYPE_CHECKING:
    from batchrun.run.runner import RunReport
from batchrun.sim.loop import run_fast
from batchrun.store import BatchInfo, Outcome, Store, redact_url


def run_command(
    file: opt.JobFile,
    models: opt.FanOut = None,
    name: opt.BatchName = None,
    max_tokens: opt.MaxTokens = 1024,
    strict: opt.Strict = False,
    no_precheck: opt.NoPrecheck = False,
    db: opt.Db = None,
    catalog: opt.CatalogFile = None,
    base_url: opt.BaseUrl = None,
    concurrency: opt.Concurrency = None,
    rpm: opt.Rpm = None,
    tpm: opt.Tpm = None,
    simulate: opt.Simulate = False,
    sim_time_scale: opt.SimTimeScale = 1.0,
    max_attempts: opt.MaxAttempts = 8,
    idle_timeout: opt.IdleTimeout = 60.0,
    timeout: opt.Timeout = 900.0,
    max_cost: opt.MaxCost = None,
    yes: opt.Yes = False,
    confirm_above: opt.ConfirmAbove = "1.00",
    grade: Annotated[
        bool,
        typer.Option(
            "--grade",
            help='After the run, grade the answers by each job\'s "expect" and show quality '
            "next to cost and speed (as `batchrun grade` does).",
        ),
    ] = False,
) -> None:
    """Run every line of FILE against MiniMax (or the simulator when no API key is set).

    Running the same file with the same models again continues its unfinished batch.
    """
    connection = opt.connection(
        db, catalog, base_url, concurrency, rpm, tpm, simulate, sim_time_scale,
        max_attempts, idle_timeout, timeout, not no_precheck, opt.parse_usd(max_cost),
        _confirm_threshold(yes, confirm_above),
    )  # fmt: skip
    out = console()
    loaded = opt.open_catalog(connection.catalog)
    fan_out = _models(models, loaded)
    check_file(file)
    store = opt.open_store(connection.db)
    digest = file_digest(file)
    with open_endpoint(read_environment(), connection.endpoint) as endpoint:
        _announce(out, endpoint)
        batch = store.find_resumable(digest, fan_out)
        if batch is not None:
            out.print(
                f"Continuing batch [bold]{batch.name}[/] ({batch.id}) of {file}: "
                "finished requests are not sent again."
            )
        else:
            batch = _create(store, loaded, file, fan_out, name, max_tokens, strict, endpoint, out)
        code = _execute(store, loaded, batch, endpoint, connection, out)
    if grade and code != EXIT_INTERRUPTED:
        grade_expectations(store, batch, out)
        print_quality(store, batch, out)
    raise typer.Exit(code)


def estimate_command(
    file: Annotated[Path, typer.Argument(help="The JSONL job file.", show_default=False)],
    models: Annotated[
        str | None,
        typer.Option("--models", help="Comma-separated models, as for run.", show_default=False),
    ] = None,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="max_tokens for lines that give none.")
    ] = 1024,
    no_precheck: Annotated[
        bool, typer.Option("--no-precheck", help="Estimate input tokens locally, send nothing.")
    ] = False,
    db: opt.Db = None,
    catalog: opt.CatalogFile = None,
    base_url: opt.BaseUrl = None,
    simulate: opt.Simulate = False,
    sim_time_scale: opt.SimTimeScale = 1.0,
) -> None:
    """What FILE would cost on these models, from count_tokens alone: nothing is generated.

    Input tokens are exact where counted (marked * where estimated); output is a range from 0 to
    max_tokens, with an expected figure from this database's past results of each model.
    """
    out = console()
    loaded = opt.open_catalog(catalog)
    fan_out = _models(models, loaded)
    check_file(file)
    store = opt.open_store(db)
    read = ReadOptions(models=fan_out or None, default_max_tokens=max_tokens)
    endpoint_options = EndpointOptions(
        base_url=base_url, simulate=simulate, sim_time_scale=sim_time_scale
    )
    lines = read_jobs(file, loaded, read)
    with open_endpoint(read_environment(), endpoint_options) as endpoint:
        _announce(out, endpoint)
        found = run_fast(
            _estimate(planned_from_file(lines, fan_out), loaded, endpoint, store, not no_precheck)
        )
    out.print(estimate_table(found, f"Estimate for {file} (prices of today, USD)"))


async def _estimate(
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
    from batchrun.api.client import ApiClient  # noqa: PLC0415

    client = ApiClient(endpoint, Deadlines(), max_connections=64)
    try:
        counter = TokenCounter(client, enabled=precheck)
        history = await anyio.to_thread.run_sync(store.output_history)
        kept = store.set_input_tokens if keep else None
        return await estimate(planned, catalog, counter, history, keep=kept)
    finally:
        await client.aclose()


def resume_command(
    batch_ref: Annotated[str, typer.Argument(metavar="BATCH", help="Batch id or name.")],
    retry_errored: Annotated[
        bool, typer.Option("--retry-errored", help="Also send again the requests that failed.")
    ] = False,
    db: opt.Db = None,
    catalog: opt.CatalogFile = None,
    base_url: opt.BaseUrl = None,
    concurrency: opt.Concurrency = None,
    rpm: opt.Rpm = None,
    tpm: opt.Tpm = None,
    simulate: opt.Simulate = False,
    sim_time_scale: opt.SimTimeScale = 1.0,
    max_attempts: opt.MaxAttempts = 8,
    idle_timeout: opt.IdleTimeout = 60.0,
    timeout: opt.Timeout = 900.0,
    max_cost: opt.MaxCost = None,
    yes: opt.Yes = False,
    confirm_above: opt.ConfirmAbove = "1.00",
) -> None:
    """Continue a batch: its pending requests run, finished ones are never sent again."""
    connection = opt.connection(
        db, catalog, base_url, concurrency, rpm, tpm, simulate, sim_time_scale,
        max_attempts, idle_timeout, timeout, True, opt.parse_usd(max_cost),
        _confirm_threshold(yes, confirm_above),
    )  # fmt: skip
    out = console()
    loaded = opt.open_catalog(connection.catalog)
    store = opt.open_store(connection.db)
    batch = store.find_batch(batch_ref)
    if batch.status == "canceled":
        raise ConfigError(f"batch {batch.name} was canceled; run its file again for a new batch")
    if batch.status == "loading":
        raise ConfigError(
            f"batch {batch.name} was interrupted while its file was being loaded, so it holds "
            "only part of the file; run the file again (that makes a complete new batch)"
        )
    if retry_errored:
        out.print(f"{store.reset_errored(batch.id):,} failed requests will be sent again.")
    with open_endpoint(read_environment(), connection.endpoint) as endpoint:
        _announce(out, endpoint)
        if batch.simulated != endpoint.simulated:
            out.print("[yellow]Note:[/] this batch mixes simulated and real results.")
        store.set_batch(batch.id, status="running")
        code = _execute(store, loaded, batch, endpoint, connection, out)
    raise typer.Exit(code)


def _confirm_threshold(yes: bool, confirm_above: str) -> int | None:
    """Above how much to ask before sending; None when nobody can answer (or --yes)."""
    threshold = opt.parse_usd(confirm_above, "--confirm-above", allow_zero=True)
    asks = not yes and sys.stdin.isatty() and sys.stdout.isatty()
    return threshold if asks else None


def _models(spec: str | None, catalog: Catalog) -> list[str]:
    names = [name.strip() for name in (spec or "").split(",") if name.strip()]
    for name in names:
        catalog.get(name)  # UnknownModelError lists the known models
    if len(set(names)) != len(names):
        raise ConfigError(f"--models names a model twice: {spec}")
    return names


def _announce(out: Console, endpoint: Endpoint) -> None:
    if endpoint.simulated:
        out.print(
            "[bold yellow]No API key (MINIMAX_API_KEY or ANTHROPIC_API_KEY): running against "
            "batchrun's built-in MiniMax simulator. Results are marked simulated.[/]"
        )
    else:
        out.print(f"Sending to {redact_url(endpoint.base_url)}")


def _create(
    store: Store,
    catalog: Catalog,
    file: Path,
    fan_out: list[str],
    name: str | None,
    max_tokens: int,
    strict: bool,
    endpoint: Endpoint,
    out: Console,
) -> BatchInfo:
    settings: dict[str, Any] = {"default_max_tokens": max_tokens}
    plan = create_batch(
        store,
        catalog,
        file,
        PlanOptions(models=fan_out, default_max_tokens=max_tokens, strict=strict, name=name),
        digest=file_digest(file),
        base_url=redact_url(endpoint.base_url),
        simulated=endpoint.simulated,
        settings=settings,
    )
    out.print(
        f"Batch [bold]{plan.batch.name}[/] ({plan.batch.id}): {plan.batch.jobs_total:,} jobs, "
        f"{plan.requests:,} requests"
        + (f", {plan.line_error_count:,} invalid lines" if plan.line_error_count else "")
    )
    if plan.line_errors:
        out.print("[yellow]Invalid lines (they are not sent; the others are):[/]")
        out.print(format_line_errors(plan.line_errors), markup=False)
    return plan.batch


def _execute(
    store: Store,
    catalog: Catalog,
    batch: BatchInfo,
    endpoint: Endpoint,
    connection: opt.Connection,
    out: Console,
) -> int:
    # Loaded here, not at the top: only this command needs the SDK, so the others start fast.
    from batchrun.run.execute import run_batch  # noqa: PLC0415
    from batchrun.run.runner import RunSettings  # noqa: PLC0415

    cap = connection.max_cost_nanos if connection.max_cost_nanos else batch.max_cost_nanos
    if cap is not None:
        store.set_batch(batch.id, max_cost_nanos=cap)
        out.print(f"Budget: {usd(cap)} for this batch, {usd(store.batch_spend(batch.id))} spent.")
    models = store.batch_models(batch.id)
    if not _estimate_and_confirm(store, catalog, batch, endpoint, connection, out, models):
        out.print(f"Nothing sent. When you are ready: [bold]batchrun resume {batch.name}[/]")
        return EXIT_OK
    settings = RunSettings(
        limits=limit_settings(catalog, models, connection.limits),
        retry=connection.retry,
        precheck=connection.precheck,
    )
    with ProgressDisplay(out) as display:
        report, progress = run_fast(
            run_batch(
                store=store,
                catalog=catalog,
                batch=batch,
                endpoint=endpoint,
                settings=settings,
                deadlines=connection.deadlines,
                display=display,
                max_cost_nanos=cap,
            )
        )
    return _finish(store, batch, report, progress, out)


def _estimate_and_confirm(
    store: Store,
    catalog: Catalog,
    batch: BatchInfo,
    endpoint: Endpoint,
    connection: opt.Connection,
    out: Console,
    models: list[str],
) -> bool:
    """Show what the pending requests will cost (their counts are kept); False if declined."""
    planned = planned_from_store(store, batch.id, models)
    found = run_fast(_estimate(planned, catalog, endpoint, store, connection.precheck, keep=True))
    if not found.models:
        return True
    _keep_estimate(store, batch, found)
    out.print(estimate_table(found, "Estimate of the requests to send (prices of today, USD)"))
    total = found.total()
    threshold = connection.confirm_above_nanos
    if threshold is None or total.cost_max_nanos <= threshold:
        return True
    expected = total.cost_expected_nanos
    question = (
        f"This may cost up to {usd(total.cost_max_nanos)}"
        + (f" (expected {usd(expected)})" if expected is not None else "")
        + ". Send it?"
    )
    return typer.confirm(question, default=False)


def _keep_estimate(store: Store, batch: BatchInfo, found: Estimate) -> None:
    """Store the first estimate with the batch, for the dashboard's estimate-against-actual."""
    if "estimate" in batch.settings:
        return  # a resumed batch keeps the estimate made before it first ran
    fields = ("requests", "input_tokens", "cost_min_nanos", "cost_expected_nanos", "cost_max_nanos")
    kept = {m.model: {f: getattr(m, f) for f in fields} for m in found.models.values()}
    store.set_batch(batch.id, settings={**batch.settings, "estimate": kept})


def _finish(
    store: Store, batch: BatchInfo, report: RunReport, progress: RunProgress, out: Console
) -> int:
    """Mark the batch, print the summary, and choose the exit code."""
    if report.unsaved:
        _save_unsaved(batch, report.unsaved, out)
    counts = store.status_counts(batch.id)
    pending = sum(by.get("pending", 0) for by in counts.values())
    canceled = report.canceled or store.find_batch(batch.id).status == "canceled"
    if canceled:
        pass  # `batchrun cancel` ran meanwhile: the batch stays canceled
    elif pending:
        store.set_batch(batch.id, status="paused")
    else:
        store.set_batch(batch.id, status="completed", finished_at=time.time())
    summary = summary_of(store, batch)
    label = " (simulated)" if batch.simulated else ""
    out.print(summary_table(summary, f"Batch {batch.name}{label}: {progress.elapsed():.1f}s"))
    for model, reason in report.stopped_models.items():
        out.print(f"[red]Stopped sending to {model}[/]: {reason}", markup=True, highlight=False)
    if report.store_error:
        out.print(f"[red]Could not save results:[/] {report.store_error}")
    failed = sum(by.get("errored", 0) + by.get("invalid", 0) for by in counts.values())
    if report.budget_reached:
        spent = usd(store.batch_spend(batch.id))
        out.print(
            f"[yellow]Budget reached:[/] {spent} spent; the next request's worst case would pass "
            f"the cap. Raise it to go on: [bold]batchrun resume {batch.name} --max-cost USD[/]"
        )
    elif pending:
        out.print(
            f"{pending:,} requests are still pending. Continue with: "
            f"[bold]batchrun resume {batch.name}[/]"
        )
    if canceled:
        out.print(
            f"[yellow]Batch {batch.name} was canceled while it ran:[/] nothing more was sent "
            "and the calls in flight were abandoned."
        )
        return EXIT_INTERRUPTED
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILURES if failed or pending or batch.lines_invalid else EXIT_OK


def _save_unsaved(batch: BatchInfo, unsaved: list[Outcome], out: Console) -> None:
    path = Path(f"batchrun-unsaved-{batch.id}.jsonl")
    with path.open("ab") as handle:
        for outcome in unsaved:
            handle.write(orjson.dumps(outcome, default=vars) + b"\n")
    out.print(
        f"[red]{len(unsaved):,} finished requests could not be written to the database; "
        f"they are in {path}.[/] They stay pending in the database and run again on resume."
    )

"""``batchrun worker``: claim and run the pending requests of a shared store's open batches."""

from __future__ import annotations

from typing import Annotated

import typer

from batchrun.cli import options as opt
from batchrun.cli.errors import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK
from batchrun.cli.output import console
from batchrun.cli.run import _announce, _models
from batchrun.config import read_environment
from batchrun.run.launch import open_endpoint
from batchrun.sim.loop import run_fast
from batchrun.store import redact_url


def worker_command(
    db: opt.Db = None,
    once: Annotated[
        bool,
        typer.Option("--once", help="Drain the open batches, then exit (default: keep waiting)."),
    ] = False,
    models: Annotated[
        str | None,
        typer.Option(
            "--models", help="Comma-separated: serve only these models.", show_default=False
        ),
    ] = None,
    lease: Annotated[
        float,
        typer.Option(
            "--lease",
            min=1.0,
            help="Seconds a claim holds without a heartbeat; a dead worker's requests are "
            "taken over after it.",
        ),
    ] = 30.0,
    poll: Annotated[
        float, typer.Option("--poll", min=0.1, help="Seconds between looks for new batches.")
    ] = 5.0,
    no_precheck: opt.NoPrecheck = False,
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
) -> None:
    """Run the pending requests of the store's open batches, alongside any other workers.

    Start one on each machine against the same --db postgresql://... URL. Requests are claimed
    under a lease renewed by heartbeat; per-model RPM / TPM and each batch's --max-cost hold
    across all workers together.
    """
    # Loaded here, not at the top: only this command needs the SDK, so the others start fast.
    from batchrun.teams.worker import Worker, WorkerOptions  # noqa: PLC0415

    connection = opt.connection(
        db, catalog, base_url, concurrency, rpm, tpm, simulate, sim_time_scale,
        max_attempts, idle_timeout, timeout, not no_precheck, None, None,
    )  # fmt: skip
    out = console()
    loaded = opt.open_catalog(connection.catalog)
    only = _models(models, loaded)
    store = opt.open_store(connection.db)
    options = WorkerOptions(
        once=once,
        models=only,
        lease_s=lease,
        poll_s=poll,
        limits=connection.limits,
        retry=connection.retry,
        deadlines=connection.deadlines,
        precheck=connection.precheck,
    )
    with open_endpoint(read_environment(), connection.endpoint) as endpoint:
        _announce(out, endpoint)
        worker = Worker(
            store=store, catalog=loaded, endpoint=endpoint, options=options, say=out.print
        )
        what = "draining the open batches" if once else "waiting for batches (Ctrl-C stops)"
        out.print(f"Worker {worker.id} on {redact_url(store.url)}: {what}")
        report = run_fast(worker.serve())
    out.print(f"Worker {worker.id} stopped after {report.batches_run} batch runs.")
    for model, reason in report.refused.items():
        out.print(f"[red]Stopped sending to {model}[/]: {reason}", highlight=False)
    if report.store_error:
        out.print(f"[red]Could not save results:[/] {report.store_error}")
    if report.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_FAILURES if report.refused or report.store_error else EXIT_OK)

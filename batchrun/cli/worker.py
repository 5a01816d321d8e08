"""``batchrun worker``: claim and run the pending requests of a shared store's open batches."""

from __future__ import annotations

from typing import Annotated

import typer

from batchrun.cli import options as opt
from batchrun.cli.display import ProgressDisplay
from batchrun.cli.errors import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK
from batchrun.cli.output import console, shown_url
from batchrun.cli.prepare import announce_endpoint, parse_models
from batchrun.cli.startup import load_sender
from batchrun.cli.unsaved import check_space, import_found, save_unsaved
from batchrun.config import read_environment
from batchrun.run.launch import open_endpoint
from batchrun.run.settings import SendSettings
from batchrun.run.space import DEFAULT_MIN_FREE_TEXT


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
    share_concurrency: Annotated[
        bool,
        typer.Option(
            "--share-concurrency",
            help="Make each model's concurrency (--concurrency, else the catalog's) the team's: "
            "all workers together keep at most that many calls in flight.",
        ),
    ] = False,
    no_precheck: opt.NoPrecheck = False,
    catalog: opt.CatalogFile = None,
    base_url: opt.BaseUrl = None,
    concurrency: opt.Concurrency = None,
    rpm: opt.Rpm = None,
    tpm: opt.Tpm = None,
    account_rpm: opt.AccountRpm = None,
    account_tpm: opt.AccountTpm = None,
    simulate: opt.Simulate = False,
    sim_time_scale: opt.SimTimeScale = 1.0,
    sim_profile: opt.SimProfile = None,
    max_attempts: opt.MaxAttempts = opt.MAX_ATTEMPTS,
    idle_timeout: opt.IdleTimeout = opt.IDLE_TIMEOUT,
    timeout: opt.Timeout = opt.TIMEOUT,
    quota_wait: opt.QuotaWait = opt.QUOTA_WAIT,
) -> None:
    """Run the pending requests of the store's open batches, alongside any other workers.

    Start one on each machine against the same --db postgresql://... URL. Requests are claimed
    under a lease renewed by heartbeat; per-model RPM / TPM and each batch's --max-cost hold
    across all workers together.
    """
    # Loaded here, not at the top: only this command needs the SDK, so the others start fast.
    load_sender()
    from batchrun.sim.loop import run_fast  # noqa: PLC0415
    from batchrun.teams.vitals import BEAT_S, Vitals, serve_watched  # noqa: PLC0415
    from batchrun.teams.worker import Worker, WorkerOptions  # noqa: PLC0415

    opt.check_seconds(lease, "--lease")
    opt.check_seconds(poll, "--poll")
    connection = opt.connection(
        db=db, catalog=catalog, base_url=base_url, concurrency=concurrency, rpm=rpm, tpm=tpm,
        account_rpm=account_rpm, account_tpm=account_tpm,
        simulate=simulate, sim_time_scale=sim_time_scale, sim_profile=sim_profile,
        max_attempts=max_attempts,
        idle_timeout=idle_timeout, timeout=timeout, quota_wait=quota_wait,
        precheck=not no_precheck,
    )  # fmt: skip
    out = console()
    loaded = opt.open_catalog(connection.catalog)
    only = parse_models(models, loaded)
    check_space(connection.db, DEFAULT_MIN_FREE_TEXT)  # nothing is sent on a full disk
    store = opt.open_store(connection.db)
    import_found(store, out)
    send = SendSettings(
        limits=connection.limits,
        retry=connection.retry,
        deadlines=connection.deadlines,
        precheck=connection.precheck,
    )
    options = WorkerOptions(
        send=send,
        once=once,
        models=only,
        lease_s=lease,
        poll_s=poll,
        share_concurrency=share_concurrency,
    )
    vitals = Vitals()
    with open_endpoint(read_environment(), connection.endpoint) as endpoint:
        announce_endpoint(out, endpoint)
        with ProgressDisplay(out) as display:
            worker = Worker(
                store=store, catalog=loaded, endpoint=endpoint, options=options, say=out.print,
                display=vitals.showing(display),
            )  # fmt: skip
            what = "draining the open batches" if once else "waiting for batches (Ctrl-C stops)"
            out.print(f"Worker {worker.id} on {shown_url(store.url)}: {what}")
            report = run_fast(serve_watched(worker, vitals, min(BEAT_S, lease / 3)))
    out.print(f"Worker {worker.id} stopped after {report.batches_run} batch runs.")
    for run in report.reports:  # what a run paid for but could not commit: into a file
        if run.unsaved:
            save_unsaved(store, store.find_batch(run.unsaved[0].batch_id), run.unsaved, out)
    for model, reason in report.refused.items():
        out.print(f"[red]Stopped sending to {model}[/]: {reason}", highlight=False)
    if report.store_error:
        out.print(f"[red]Could not save results:[/] {report.store_error}")
    if report.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_FAILURES if report.refused or report.store_error else EXIT_OK)

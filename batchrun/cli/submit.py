"""``batchrun submit``: validate, pre-check and store a batch for workers to run; send nothing."""

from __future__ import annotations

import time

import typer

from batchrun.budgets import budgets_file, load_budgets
from batchrun.cli import options as opt
from batchrun.cli.budgets import say_run_budgets
from batchrun.cli.errors import EXIT_INTERRUPTED, interrupt_on_sigterm, is_interrupt
from batchrun.cli.output import console, shown_url
from batchrun.cli.prepare import (
    announce_endpoint,
    estimate_and_confirm,
    parse_models,
    say_loaded,
)
from batchrun.config import read_environment
from batchrun.pricing import parse_usd, usd
from batchrun.run.budget import run_cap
from batchrun.run.launch import ACCOUNT_SETTING, account_setting, open_endpoint, pool_text
from batchrun.run.report import count_requests
from batchrun.status import OPEN_BATCHES, BatchStatus, RequestStatus


def submit_command(
    file: opt.JobFile,
    models: opt.FanOut = None,
    name: opt.BatchName = None,
    max_tokens: opt.MaxTokens = 1024,
    strict: opt.Strict = False,
    no_precheck: opt.NoPrecheck = False,
    db: opt.Db = None,
    catalog: opt.CatalogFile = None,
    base_url: opt.BaseUrl = None,
    simulate: opt.Simulate = False,
    sim_time_scale: opt.SimTimeScale = 1.0,
    sim_profile: opt.SimProfile = None,
    max_cost: opt.MaxCost = None,
    account_rpm: opt.AccountRpm = None,
    account_tpm: opt.AccountTpm = None,
) -> None:
    """Store FILE as a batch that `batchrun worker` processes run; nothing is generated here.

    Every line is validated and (unless --no-precheck) its input counted with count_tokens, as
    for run. Submitting the same file with the same models again keeps the batch already stored.
    --account-rpm / --account-tpm are kept with the batch: its workers pace every model of it by
    that pool unless they are given their own.
    """
    connection = opt.connection(
        db=db, catalog=catalog, base_url=base_url, simulate=simulate,
        sim_time_scale=sim_time_scale, sim_profile=sim_profile,
        max_attempts=1, precheck=not no_precheck,
        max_cost_nanos=parse_usd(max_cost), account_rpm=account_rpm, account_tpm=account_tpm,
    )  # fmt: skip
    interrupt_on_sigterm()  # SIGTERM, like Ctrl-C, leaves no batch running (see below)
    from batchrun.jobs import check_file  # noqa: PLC0415 - loaded only when used
    from batchrun.plan.planner import PlanOptions, file_digest, open_file_batch  # noqa: PLC0415

    out = console()
    loaded = opt.open_catalog(connection.catalog)
    fan_out = parse_models(models, loaded)
    check_file(file)
    store = opt.open_store(connection.db)
    digest = file_digest(file)
    plan = PlanOptions(models=fan_out, default_max_tokens=max_tokens, strict=strict, name=name)
    with open_endpoint(read_environment(), connection.endpoint) as endpoint:
        announce_endpoint(out, endpoint)
        # One batch per file and models (and --name), even when loaded elsewhere at this instant.
        opened = open_file_batch(store, loaded, file, plan, endpoint, digest=digest)
        batch = opened.batch
        found = batch if opened.plan is None else None
        if opened.plan is not None:
            say_loaded(store, opened.plan, file, out)
        else:
            out.print(f"{file} is already stored as batch [bold]{batch.name}[/] ({batch.id}).")
        path, now = budgets_file(), time.time()
        chosen = load_budgets(path)  # workers enforce them: here they are only said
        cap = run_cap(
            store, batch, connection.max_cost_nanos, chosen, simulated=endpoint.simulated, now=now
        )
        if connection.max_cost_nanos is not None:
            out.print(f"Budget: {usd(connection.max_cost_nanos)} for this batch, across workers.")
        say_run_budgets(out, cap, path, now)
        try:
            estimate_and_confirm(store, loaded, batch, endpoint, connection, out)
        except BaseException as exc:  # Ctrl-C or SIGTERM during the pre-check
            if not is_interrupt(exc):
                raise
            if store.find_batch(batch.id).status == BatchStatus.RUNNING:
                store.set_batch(batch.id, status=BatchStatus.PAUSED)
            out.print(
                f"\n[yellow]Interrupted:[/] batch {batch.name} is paused, not queued. Submit "
                f"{file} again to finish its pre-check and queue it for workers."
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
    pending = count_requests(store.status_counts(batch.id), RequestStatus.PENDING)
    if not pending:
        out.print(f"Batch {batch.name} has no pending requests: nothing for workers to do.")
        return
    if found is None or batch.status not in OPEN_BATCHES:
        store.set_batch(batch.id, status=BatchStatus.QUEUED)
    # Read again: the estimate may have added to the settings meanwhile.
    settings = {**store.find_batch(batch.id).settings, "workers": True}
    limits = connection.limits
    if limits.account:
        settings[ACCOUNT_SETTING] = account_setting(limits)
        shared = pool_text(limits.account_rpm, limits.account_tpm)
        out.print(f"Workers pace the batch's models by one account limit: {shared} together.")
    store.set_batch(batch.id, settings=settings)
    where = shown_url(store.url)
    out.print(
        f"Batch [bold]{batch.name}[/] ({batch.id}) queued: {pending:,} requests pending. "
        f"Run it with: [bold]batchrun worker --db {where}[/] (on any number of machines)"
    )

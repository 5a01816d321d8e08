"""``batchrun run`` and ``batchrun resume``: load a job file as a batch and run it."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from batchrun import interrupts
from batchrun.budgets import budgets_file, load_budgets
from batchrun.cli import options as opt
from batchrun.cli.budgets import budget_reached_text, say_crossed, say_run_budgets
from batchrun.cli.display import (
    ProgressDisplay,
    print_batch_cache,
    print_estimate,
    quota_waits,
    summary_of,
    summary_table,
)
from batchrun.cli.errors import (
    EXIT_FAILURES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    interrupt_on_sigterm,
    is_interrupt,
)
from batchrun.cli.grade import grade_expectations, print_quality
from batchrun.cli.output import console
from batchrun.cli.prepare import (
    announce_endpoint,
    estimate_and_confirm,
    estimate_requests,
    open_from_file,
    parse_models,
)
from batchrun.cli.startup import load_sender
from batchrun.cli.unsaved import MinFreeSpace, check_space, import_found, save_unsaved
from batchrun.config import read_environment
from batchrun.exceptions import StoreError
from batchrun.pricing import parse_usd, usd
from batchrun.run.budget import RunCap, budget_rooms, run_cap
from batchrun.run.launch import EndpointOptions, open_endpoint, pool_lines
from batchrun.run.progress import utc_minute
from batchrun.run.report import FinishedBatch, check_resumable, finish_batch
from batchrun.run.settings import SendSettings
from batchrun.run.space import DEFAULT_MIN_FREE_TEXT, Reserve
from batchrun.status import BatchStatus

if TYPE_CHECKING:
    from rich.console import Console

    from batchrun.api.endpoint import Endpoint
    from batchrun.catalog import Catalog
    from batchrun.plan.planner import PlanOptions
    from batchrun.run.budget import BudgetRoom
    from batchrun.run.progress import RunProgress
    from batchrun.run.report import RunReport
    from batchrun.run.space import SpaceGuard
    from batchrun.store import BatchInfo, Store


Processes = Annotated[
    int,
    typer.Option(
        "--processes",
        min=1,
        max=16,
        help="Send from this many processes on this machine, each at 1/N of every model's "
        "limits (one process cannot read MiniMax's full published rate: README, 'Full rate "
        "at real pace'). The others end with this one.",
    ),
]


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
    account_rpm: opt.AccountRpm = None,
    account_tpm: opt.AccountTpm = None,
    simulate: opt.Simulate = False,
    sim_time_scale: opt.SimTimeScale = 1.0,
    sim_profile: opt.SimProfile = None,
    max_attempts: opt.MaxAttempts = opt.MAX_ATTEMPTS,
    idle_timeout: opt.IdleTimeout = opt.IDLE_TIMEOUT,
    timeout: opt.Timeout = opt.TIMEOUT,
    quota_wait: opt.QuotaWait = opt.QUOTA_WAIT,
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
    min_free_space: MinFreeSpace = DEFAULT_MIN_FREE_TEXT,
    processes: Processes = 1,
) -> None:
    """Run every line of FILE against MiniMax (or the simulator when no API key is set).

    Running the same file with the same models again continues its latest batch; with --name,
    the batch of that name, or a new batch when no batch has that name.
    """
    connection = opt.connection(
        db=db, catalog=catalog, base_url=base_url, concurrency=concurrency, rpm=rpm, tpm=tpm,
        account_rpm=account_rpm, account_tpm=account_tpm,
        simulate=simulate, sim_time_scale=sim_time_scale, sim_profile=sim_profile,
        max_attempts=max_attempts,
        idle_timeout=idle_timeout, timeout=timeout, quota_wait=quota_wait,
        precheck=not no_precheck, max_cost_nanos=parse_usd(max_cost),
        confirm_above_nanos=_confirm_threshold(yes, confirm_above), yes=yes,
    )  # fmt: skip
    from batchrun.jobs import check_file  # noqa: PLC0415 - loaded only when used
    from batchrun.plan.planner import PlanOptions, file_digest  # noqa: PLC0415

    interrupt_on_sigterm()
    out = console()
    loaded = opt.open_catalog(connection.catalog)
    fan_out = parse_models(models, loaded)
    check_file(file)
    space = check_space(connection.db, min_free_space)
    store = opt.open_store(connection.db)
    import_found(store, out)
    digest = file_digest(file)
    plan = PlanOptions(models=fan_out, default_max_tokens=max_tokens, strict=strict, name=name)
    with open_endpoint(read_environment(), connection.endpoint) as endpoint:
        announce_endpoint(out, endpoint)
        batch = _load(store, loaded, file, plan, endpoint, out, digest)
        code = _execute(store, loaded, batch, endpoint, connection, out, space, processes)
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
    sim_profile: opt.SimProfile = None,
) -> None:
    """What FILE would cost on these models, from count_tokens alone: nothing is generated.

    Input tokens are exact where counted (marked * where estimated); output is a range from 0 to
    max_tokens, with an expected figure from this database's past results of each model.
    """
    from batchrun.jobs import ReadOptions, check_file, read_jobs  # noqa: PLC0415 - only when used
    from batchrun.plan.estimate import planned_from_file  # noqa: PLC0415
    from batchrun.sim.loop import run_fast  # noqa: PLC0415

    out = console()
    loaded = opt.open_catalog(catalog)
    fan_out = parse_models(models, loaded)
    check_file(file)
    store = opt.open_store(db)
    read = ReadOptions(models=fan_out or None, default_max_tokens=max_tokens)
    opt.check_sim_profile(sim_profile)
    endpoint_options = EndpointOptions(
        base_url=base_url, simulate=simulate, sim_time_scale=sim_time_scale, sim_profile=sim_profile
    )
    lines = read_jobs(file, loaded, read)
    with open_endpoint(read_environment(), endpoint_options) as endpoint:
        announce_endpoint(out, endpoint)
        planned = planned_from_file(lines, fan_out)
        found = run_fast(estimate_requests(planned, loaded, endpoint, store, not no_precheck))
    print_estimate(out, found, f"Estimate for {file} (prices of today, USD)")


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
    account_rpm: opt.AccountRpm = None,
    account_tpm: opt.AccountTpm = None,
    simulate: opt.Simulate = False,
    sim_time_scale: opt.SimTimeScale = 1.0,
    sim_profile: opt.SimProfile = None,
    max_attempts: opt.MaxAttempts = opt.MAX_ATTEMPTS,
    idle_timeout: opt.IdleTimeout = opt.IDLE_TIMEOUT,
    timeout: opt.Timeout = opt.TIMEOUT,
    quota_wait: opt.QuotaWait = opt.QUOTA_WAIT,
    max_cost: opt.MaxCost = None,
    yes: opt.Yes = False,
    confirm_above: opt.ConfirmAbove = "1.00",
    min_free_space: MinFreeSpace = DEFAULT_MIN_FREE_TEXT,
    processes: Processes = 1,
) -> None:
    """Continue a batch: its pending requests run, finished ones are never sent again.

    Answers an earlier run paid for but could not save (a full disk) are imported first.
    """
    connection = opt.connection(
        db=db, catalog=catalog, base_url=base_url, concurrency=concurrency, rpm=rpm, tpm=tpm,
        account_rpm=account_rpm, account_tpm=account_tpm,
        simulate=simulate, sim_time_scale=sim_time_scale, sim_profile=sim_profile,
        max_attempts=max_attempts,
        idle_timeout=idle_timeout, timeout=timeout, quota_wait=quota_wait,
        max_cost_nanos=parse_usd(max_cost),
        confirm_above_nanos=_confirm_threshold(yes, confirm_above), yes=yes,
    )  # fmt: skip
    interrupt_on_sigterm()
    out = console()
    loaded = opt.open_catalog(connection.catalog)
    space = check_space(connection.db, min_free_space)
    store = opt.open_store(connection.db)
    batch = store.find_batch(batch_ref)
    check_resumable(batch)
    import_found(store, out)
    if retry_errored:
        out.print(f"{store.reset_errored(batch.id):,} failed requests will be sent again.")
    with open_endpoint(read_environment(), connection.endpoint) as endpoint:
        announce_endpoint(out, endpoint)
        if batch.simulated != endpoint.simulated:
            out.print("[yellow]Note:[/] this batch mixes simulated and real results.")
        store.set_batch(batch.id, status=BatchStatus.RUNNING)
        code = _execute(store, loaded, batch, endpoint, connection, out, space, processes)
    raise typer.Exit(code)


def _confirm_threshold(yes: bool, confirm_above: str) -> int | None:
    """Above how much to ask before sending; None when nobody can answer (or --yes)."""
    threshold = parse_usd(confirm_above, "--confirm-above", allow_zero=True)
    asks = not yes and sys.stdin.isatty() and sys.stdout.isatty()
    return threshold if asks else None


def _execute(
    store: Store,
    catalog: Catalog,
    batch: BatchInfo,
    endpoint: Endpoint,
    connection: opt.Connection,
    out: Console,
    space: SpaceGuard,
    processes: int,
) -> int:
    try:
        sent = _estimate_and_send(
            store, catalog, batch, endpoint, connection, out, space, processes
        )
    except BaseException as exc:  # Ctrl-C or SIGTERM before sending began (or as it ended)
        if not is_interrupt(exc):
            raise
        _pause(store, batch)
        out.print(
            f"\n[yellow]Interrupted:[/] batch {batch.name} is paused. Continue with: "
            f"[bold]batchrun resume {batch.name}[/]"
        )
        return EXIT_INTERRUPTED
    interrupt_on_sigterm()  # the run's signal receiver left SIGTERM at its default
    if sent is None:
        return EXIT_OK
    report, progress, owner, cap = sent
    code = _finish(store, batch, report, progress, out, owner, cap)
    after = _rooms(store, batch, cap, endpoint)
    say_crossed(out, cap, after, progress.budget_warnings)
    return code


def _rooms(store: Store, batch: BatchInfo, cap: RunCap, endpoint: Endpoint) -> list[BudgetRoom]:
    """The run's period budgets again, with what the run spent."""
    chosen = [room.budget for room in cap.rooms]
    models = store.batch_models(batch.id)
    return list(budget_rooms(store, models, chosen, simulated=endpoint.simulated, now=time.time()))


def _estimate_and_send(
    store: Store,
    catalog: Catalog,
    batch: BatchInfo,
    endpoint: Endpoint,
    connection: opt.Connection,
    out: Console,
    space: SpaceGuard,
    processes: int,
) -> tuple[RunReport, RunProgress, str, RunCap] | None:
    """The estimate shown and confirmed, then the batch sent (with the id it was sent under);
    None when it was declined."""
    # Loaded here, not at the top: only this command needs the SDK, so the others start fast.
    load_sender()
    from batchrun.cli.processes import send_in_processes  # noqa: PLC0415
    from batchrun.teams.sender import new_sender_id  # noqa: PLC0415

    cap = _set_budget(store, batch, connection, out, endpoint.simulated)
    for line in pool_lines(catalog, store.batch_models(batch.id), connection.limits):
        out.print(line, highlight=False)
    if not _confirmed(store, catalog, batch, endpoint, connection, out):
        _pause(store, batch)
        out.print(f"Nothing sent. When you are ready: [bold]batchrun resume {batch.name}[/]")
        return None
    interrupts.raise_if_dropped()  # an interrupt Python dropped on the way pauses, not sends
    owner = new_sender_id()  # whose claims are this run's own when it ends
    with Reserve(space.store_directory) as reserve, ProgressDisplay(out) as display:
        report, progress = send_in_processes(
            processes,
            store=store,
            catalog=catalog,
            batch=batch,
            endpoint=endpoint,
            settings=_send_settings(connection, cap),
            display=display,
            space=space,
            owner=owner,
            catalog_file=connection.catalog,
        )
        reserve.release()  # its room is for the writes that end the run, on a disk maybe full
    return report, progress, owner, cap


def _send_settings(connection: opt.Connection, cap: RunCap) -> SendSettings:
    """How the batch is sent: the command line's settings, under the run's cap."""
    return SendSettings(
        limits=connection.limits,
        retry=connection.retry,
        deadlines=connection.deadlines,
        precheck=connection.precheck,
        max_cost_nanos=cap.cap_nanos,
    )


def _load(
    store: Store,
    catalog: Catalog,
    file: Path,
    plan: PlanOptions,
    endpoint: Endpoint,
    out: Console,
    digest: str,
) -> BatchInfo:
    """The file's batch continued, else stored as a new one (one, even when several processes
    load it at once); interrupted, its part stored is canceled (never run)."""
    try:
        return open_from_file(store, catalog, file, plan, endpoint, out, digest=digest)
    except BaseException as exc:
        if not is_interrupt(exc):
            raise
        out.print(
            f"\n[yellow]Interrupted while loading {file}:[/] nothing was sent, and the part "
            "already stored will not be run. Run the same command again to load it afresh."
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _confirmed(
    store: Store,
    catalog: Catalog,
    batch: BatchInfo,
    endpoint: Endpoint,
    connection: opt.Connection,
    out: Console,
) -> bool:
    """The estimate shown and, where asked, accepted; no answer (end of input) is a no."""
    try:
        return estimate_and_confirm(store, catalog, batch, endpoint, connection, out)
    except typer.Abort as exc:  # what the question raises on Ctrl-C and end of input
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        out.print()
        return False


def _pause(store: Store, batch: BatchInfo) -> None:
    """A batch nobody is sending for is paused, never left running."""
    from batchrun.teams.sender import held_elsewhere  # noqa: PLC0415

    if held_elsewhere(store, batch.id):  # another process is sending it: it stays running
        return
    if store.find_batch(batch.id).status == BatchStatus.RUNNING:
        store.set_batch(batch.id, status=BatchStatus.PAUSED)


def _set_budget(
    store: Store, batch: BatchInfo, connection: opt.Connection, out: Console, simulated: bool
) -> RunCap:
    """The run's cap: --max-cost, else the one the batch had (kept with it), lowered to what is
    left of the period budgets; shown, with the budgets past their threshold."""
    path, now = budgets_file(), time.time()
    cap = run_cap(
        store, batch, connection.max_cost_nanos, load_budgets(path), simulated=simulated, now=now
    )
    if cap.cap_nanos is not None and cap.binding is None:
        spent = usd(store.batch_spend(batch.id))
        out.print(f"Budget: {usd(cap.cap_nanos)} for this batch, {spent} spent.")
    say_run_budgets(out, cap, path, now)
    return cap


def _finish(
    store: Store,
    batch: BatchInfo,
    report: RunReport,
    progress: RunProgress,
    out: Console,
    owner: str,
    cap: RunCap,
) -> int:
    """Mark the batch, print the summary, and choose the exit code."""
    from batchrun.teams.sender import held_elsewhere  # noqa: PLC0415

    # Another process still sending the batch's other requests leaves it running, not paused.
    others = held_elsewhere(store, batch.id, owner)  # not its own, if they could not be released
    finished = _mark_batch(store, batch, report, out, pause=not others)  # first: then the file
    if report.unsaved:
        save_unsaved(store, batch, report.unsaved, out)
    summary = summary_of(store, batch)
    label = " (simulated)" if batch.simulated else ""
    out.print(summary_table(summary, f"Batch {batch.name}{label}: {progress.elapsed():.1f}s"))
    print_batch_cache(out, summary)
    for line in quota_waits(progress):
        out.print(f"[yellow]Quota:[/] {line}.", highlight=False)
    for model, reason in report.stopped_models.items():
        out.print(f"[red]Stopped sending to {model}[/]: {reason}", markup=True, highlight=False)
    if report.store_error:
        out.print(f"[red]Could not save results:[/] {report.store_error}")
    if report.disk_low:
        out.print(f"[red]Stopped sending:[/] {report.disk_low}. Free some space, then resume.")
    if others:
        out.print(
            f"{others:,} requests of batch {batch.name} are being sent by another batchrun "
            "process; it finishes them (batchrun status shows how far it is)."
        )
    _print_what_is_left(store, batch, report, finished, out, cap)
    _print_quota_resume(batch, report, progress, out)
    if finished.status is BatchStatus.CANCELED or report.interrupted:
        return EXIT_INTERRUPTED
    unfinished = finished.failed or finished.pending or batch.lines_invalid
    return EXIT_FAILURES if unfinished else EXIT_OK


def _print_what_is_left(
    store: Store,
    batch: BatchInfo,
    report: RunReport,
    finished: FinishedBatch,
    out: Console,
    cap: RunCap,
) -> None:
    """Why requests are left, and how to go on with them."""
    period = budget_reached_text(cap, batch.name, time.time())
    if report.budget_reached and period is not None:
        out.print(period, highlight=False)
    elif report.budget_reached:
        spent = usd(store.batch_spend(batch.id))
        out.print(
            f"[yellow]Budget reached:[/] {spent} spent; the next request's worst case would pass "
            f"the cap. Raise it to go on: [bold]batchrun resume {batch.name} --max-cost USD[/]"
        )
    elif finished.pending:
        out.print(
            f"{finished.pending:,} requests are still pending. Continue with: "
            f"[bold]batchrun resume {batch.name}[/]"
        )
    if finished.status is BatchStatus.CANCELED:
        out.print(
            f"[yellow]Batch {batch.name} was canceled while it ran:[/] nothing more was sent "
            "and the calls in flight were abandoned."
        )


def _print_quota_resume(
    batch: BatchInfo, report: RunReport, progress: RunProgress, out: Console
) -> None:
    """For each model stopped on its plan's quota: when it renews, and the command to resume."""
    for model in report.stopped_models:
        reset = progress.of(model).quota_reset
        if reset is not None:
            out.print(
                f"{model}: resume after {utc_minute(reset)}: [bold]batchrun resume {batch.name}[/]",
                highlight=False,
            )


def _mark_batch(
    store: Store, batch: BatchInfo, report: RunReport, out: Console, *, pause: bool = True
) -> FinishedBatch:
    """``finish_batch``; when even that cannot be written, say so (resume works all the same)."""
    try:
        return finish_batch(store, batch.id, report, pause=pause)
    except StoreError as exc:
        out.print(
            f"[red]Could not mark batch {batch.name} paused:[/] {exc}. It shows running until "
            f"[bold]batchrun resume {batch.name}[/] runs it again."
        )
        return FinishedBatch(status=BatchStatus.PAUSED, counts=store.status_counts(batch.id))

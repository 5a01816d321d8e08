"""``batchrun batches``, ``status``, ``results``, ``cancel`` and ``db upgrade``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.table import Table

from batchrun.cli import options as opt
from batchrun.cli.display import print_batch_cache, summary_of, summary_table
from batchrun.cli.files import database_files, write_user_file
from batchrun.cli.output import console, shown_url
from batchrun.exceptions import ConfigError
from batchrun.export import FORMATS, format_for, result_records, write_jsonl, write_records
from batchrun.run.report import STOP_TEXT, StopReason, budget_models_text
from batchrun.status import BatchStatus, RequestStatus

if TYPE_CHECKING:
    import polars as pl
    from rich.console import Console

    from batchrun.store import BatchInfo, Store

STATUSES = (
    RequestStatus.SUCCEEDED,
    RequestStatus.ERRORED,
    RequestStatus.INVALID,
    RequestStatus.PENDING,
    RequestStatus.CANCELED,
)


def batches_command(db: opt.Db = None) -> None:
    """List the batches in the database, newest first."""
    store = opt.open_store(db)
    table = Table(title="Batches")
    for column in ("name", "id", "status", "created", "models", "jobs", "invalid lines", "data"):
        table.add_column(column)
    for batch in store.list_batches():
        table.add_row(
            batch.name,
            batch.id,
            batch.status,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(batch.created_at)),
            ", ".join(store.batch_models(batch.id)),
            f"{batch.jobs_total:,}",
            f"{batch.lines_invalid:,}",
            "simulated" if batch.simulated else "MiniMax",
        )
    console().print(table)


def status_command(
    batch_ref: Annotated[
        str | None, typer.Argument(metavar="[BATCH]", help="Batch id or name (default: latest).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    db: opt.Db = None,
) -> None:
    """Requests per model and status, with latency, TTFT, tps, tokens, cost and prompt cache."""
    from batchrun.analytics import cache_total  # noqa: PLC0415 - polars loads only when used

    store = opt.open_store(db)
    batch = _batch(store, batch_ref)
    counts = store.status_counts(batch.id)
    summary = summary_of(store, batch)
    own = summary.filter(summary["simulated"] == batch.simulated)  # the batch's own origin
    total = cache_total(own, also=("succeeded", "unpriced")).row(0, named=True)
    if as_json:
        document = {
            "id": batch.id,
            "name": batch.name,
            "status": batch.status,
            "stop_reason": batch.stop_reason,
            "simulated": batch.simulated,
            "source_path": batch.source_path,
            "jobs": batch.jobs_total,
            "invalid_lines": batch.lines_invalid,
            "requests": counts,
            "models": summary.to_dicts(),
            "cache": total,
            "spend": spend_by_origin(summary),
            "workers": _worker_figures(store),
        }
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    out = console()
    out.print(
        f"[bold]{batch.name}[/] ({batch.id}) {batch.status}{_stopped(batch)}"
        f"{' - simulated' if batch.simulated else ''}: {batch.source_path}, "
        f"{batch.jobs_total:,} jobs, {batch.lines_invalid:,} invalid lines"
    )
    table = Table()
    table.add_column("model")
    for status in STATUSES:
        table.add_column(status, justify="right")
    for model, by_status in counts.items():
        table.add_row(model, *(f"{by_status.get(s, 0):,}" for s in STATUSES))
    out.print(table)
    out.print(summary_table(summary, "Metrics of the succeeded requests"))
    print_batch_cache(out, summary)
    print_workers(out, store)


def print_workers(out: Console, store: Store) -> None:
    """The registered workers of a team (``batchrun worker``), when there are any."""
    from batchrun.teams.vitals import worker_cells  # noqa: PLC0415 - see _worker_figures

    rows = [worker_cells(w) for w in _worker_figures(store)]
    if not rows:
        return
    table = Table(title="Workers (rate: requests sent in the last minute; ? until reported)")
    for label in rows[0]:
        table.add_column(label, justify="left" if label in ("worker", "host") else "right")
    for row in rows:
        table.add_row(*("?" if v is None else f"{v:,}" if isinstance(v, int) else str(v)
                        for v in row.values()))  # fmt: skip
    out.print(table)


def _stopped(batch: BatchInfo) -> str:
    """`` (last run: interrupted)``: why a batch not running stopped, when it was stored."""
    if batch.stop_reason is None or batch.status == BatchStatus.RUNNING:
        return ""
    reason = StopReason(batch.stop_reason)
    models = budget_models_text(batch) if reason is StopReason.BUDGET else ""
    return f" (last run: {STOP_TEXT[reason]}{': ' + models if models else ''})"


def spend_by_origin(summary: pl.DataFrame) -> dict[str, dict[str, Any] | None]:
    """A batch's real spend and, apart from it, what its simulated results would have cost:
    results, priced cost and unpriced results of each; None for an origin with no results."""
    spent: dict[str, dict[str, Any] | None] = {}
    for name, simulated in (("real", False), ("simulated", True)):
        rows = summary.filter(summary["simulated"] == simulated)
        results = int(rows["succeeded"].sum())
        priced = rows["cost_nanos"].drop_nulls()
        spent[name] = (
            {
                "results": results,
                "cost_nanos": int(priced.sum()) if len(priced) else None,
                "unpriced": int(rows["unpriced"].fill_null(0).sum()),
            }
            if results
            else None
        )
    return spent


def results_command(
    batch_ref: Annotated[str, typer.Argument(metavar="BATCH", help="Batch id or name.")],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help=f"One of {', '.join(FORMATS)}. Default: the one the file name's extension "
            "names (.jsonl, .csv, .tsv, .parquet), else jsonl.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="File to write (default: standard output, JSONL only). It is written whole "
            "or not at all, and an existing file is left alone unless --force.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the -o file if it exists already.")
    ] = False,
    db: opt.Db = None,
) -> None:
    """Export a batch's results in input order, then model order."""
    chosen = _results_format(fmt, output)
    store = opt.open_store(db)
    batch = store.find_batch(batch_ref)
    records = result_records(store, batch)
    if output is None:
        write_jsonl(records, sys.stdout.buffer)
        return
    count = write_user_file(
        output,
        lambda out: write_records(records, out, chosen),
        force=force,
        keep=database_files(store),
    )
    console(stderr=True).print(f"{count:,} results written to {output} ({chosen})")


def _results_format(fmt: str | None, output: Path | None) -> str:
    """The export format: ``--format``, else the -o file's extension; checked against both."""
    if output is not None:
        return format_for(output.name, fmt)
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt not in (None, "jsonl"):
        raise ConfigError(f"--format {fmt} writes a file: give it with -o FILE")
    return "jsonl"


def cancel_command(
    batch_ref: Annotated[str, typer.Argument(metavar="BATCH", help="Batch id or name.")],
    db: opt.Db = None,
) -> None:
    """Cancel a batch: its pending requests will not run (finished results are kept)."""
    store = opt.open_store(db)
    batch = store.find_batch(batch_ref)
    canceled = store.cancel_pending(batch.id)
    store.set_batch(batch.id, status=BatchStatus.CANCELED, finished_at=time.time())
    console().print(f"Batch {batch.name} canceled: {canceled:,} pending requests will not run.")


db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade_command(db: opt.Db = None) -> None:
    """Create the database or bring it to the current schema (also done on first use)."""
    store = opt.open_store(db)
    done = store.upgrade
    if done is not None:
        console().print(f"Schema upgraded from {done.before or 'nothing'} to {done.after}.")
    if done is not None and done.completed:
        console().print(
            "An earlier batchrun had left a migration half-done; completed it "
            f"(already there: {_listed(done.completed)})."
        )
    console().print(f"Database ready: {shown_url(store.url)}")


def _listed(things: tuple[str, ...], shown: int = 3) -> str:
    more = len(things) - shown
    return ", ".join(things[:shown]) + (f" and {more} more" if more > 0 else "")


def _batch(store: Store, ref: str | None) -> BatchInfo:
    if ref is not None:
        return store.find_batch(ref)
    found = store.list_batches()
    if not found:
        raise ConfigError("no batches in this database yet: start one with `batchrun run FILE`")
    return found[0]


def _worker_figures(store: Store) -> list[dict[str, Any]]:
    """The registered workers' figures (imported here: `batchrun --help` loads no store)."""
    from batchrun.teams.claims import worker_rows  # noqa: PLC0415
    from batchrun.teams.vitals import worker_figures  # noqa: PLC0415

    return worker_figures(worker_rows(store), time.time())

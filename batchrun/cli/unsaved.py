"""Answers that were paid for but could not be saved: ``batchrun import FILE``, the file a run
writes them to, and the checks ``run`` and ``resume`` make before they send anything (free space,
then any such file of this database imported first, so that nothing is paid for twice)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from batchrun.cli import options as opt
from batchrun.cli.output import console
from batchrun.config import read_environment
from batchrun.exceptions import StoreError
from batchrun.run.space import SpaceGuard, parse_size, space_guard, sqlite_directory

if TYPE_CHECKING:
    from rich.console import Console

    from batchrun.run.unsaved import Imported
    from batchrun.store import BatchInfo, Outcome, Store

MinFreeSpace = Annotated[
    str,
    typer.Option(
        "--min-free-space",
        metavar="SIZE",
        help="Send nothing, and stop sending, while the database's directory or the working "
        "directory has less than SIZE free (KB, MB, GB: powers of 1024; 0: no check), so that "
        "the answers already paid for can still be saved.",
    ),
]


def import_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="A batchrun-unsaved-*.jsonl file that a run named.", show_default=False
        ),
    ],
    db: opt.Db = None,
) -> None:
    """Put back into the database the answers a run paid for but could not save (a full disk).

    Each request still pending takes its result and attempts as if the run had saved them, so it
    is not sent (nor paid for) again; a request finished meanwhile is left as it is, and a file
    imported twice adds nothing. The file is then renamed *.imported. run, resume and worker do
    this by themselves, before sending anything, for the files of their database in its
    directory, the working directory, your home directory and the temporary directory.
    """
    from batchrun.run import unsaved  # noqa: PLC0415 - loaded only when used (the store's SQL)

    out = console()
    try:
        store = opt.open_store(db)
    except StoreError as exc:
        kept = f"{file} is kept as it was: fix that, then import it again"
        raise StoreError(f"{exc}; {kept}") from exc
    print_imported(out, unsaved.import_file(store, file))


def check_space(db: str | None, min_free_space: str) -> SpaceGuard:
    """Before the database is even opened (SQLite cannot open one on a disk with no room at
    all): the directories the run writes to have room, else DiskSpaceError and nothing is sent.
    The guard that then watches the run."""
    from batchrun.store import database_url  # noqa: PLC0415 - loaded only when used

    url = database_url(db or read_environment().db)  # as opt.open_store finds it
    guard = space_guard(url, parse_size(min_free_space))
    guard.check()
    return guard


def import_found(store: Store, out: Console) -> None:
    """Import the unsaved answers of this database that earlier runs left, before anything is
    sent: their requests are then finished and not paid for again."""
    from batchrun.run import unsaved  # noqa: PLC0415 - loaded only when used (the store's SQL)

    for path in unsaved.find(store, unsaved_directories(store)):
        print_imported(out, unsaved.import_file(store, path))


def unsaved_directories(store: Store) -> list[Path]:
    """Where a run of ``store`` writes what it could not save, in the order tried."""
    from batchrun.run import unsaved  # noqa: PLC0415 - loaded only when used (the store's SQL)

    try:
        home: Path | None = Path.home()
    except RuntimeError:  # no home directory to be found
        home = None
    return unsaved.directories(
        sqlite_directory(store.url), Path.cwd(), home, Path(tempfile.gettempdir())
    )


def save_unsaved(store: Store, batch: BatchInfo, outcomes: list[Outcome], out: Console) -> None:
    """Write the answers the run could not commit where there is room, and say where."""
    from batchrun.run import unsaved  # noqa: PLC0415 - loaded only when used (the store's SQL)

    saved = unsaved.save(outcomes, batch.id, unsaved_directories(store))
    for directory, why in saved.refused:
        out.print(f"[yellow]Not in {escape(str(directory))}:[/] {escape(why)}", highlight=False)
    if saved.path is None:
        out.print(
            f"[red]{saved.count:,} finished requests could not be saved anywhere[/]: they stay "
            "pending and are sent again (and paid for again) on resume.",
            highlight=False,
        )
        return
    out.print(
        f"[red]{saved.count:,} finished requests could not be written to the database; they are "
        f"saved in {escape(str(saved.path))}.[/] The next [bold]batchrun resume {batch.name}[/] "
        "(or run, or worker, on this database) imports them before sending anything, or: "
        f"[bold]batchrun import {saved.path}[/]; so they are not paid for again.",
        highlight=False,
    )


def print_imported(out: Console, done: Imported) -> None:
    """What importing one file did."""
    where = f"; the file is now {done.renamed}" if done.renamed else ""
    out.print(
        f"Imported {done.recorded:,} unsaved results from {escape(str(done.path))} "
        f"({done.already:,} were already in the database){escape(where)}.",
        highlight=False,
    )
    if done.bad_lines:
        lines = ", ".join(str(n) for n in done.bad_lines[:10])
        out.print(
            f"[yellow]{len(done.bad_lines):,} lines of it are not whole results and were "
            f"skipped[/] (lines {lines}); their requests stay pending.",
            highlight=False,
        )

"""``batchrun budgets``: each budget of the budgets file (per UTC day or month, per model or for
all) against the spend of the period going on, as the dashboard's Spend page shows them."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.table import Table

from batchrun import budgets
from batchrun.cli import options as opt
from batchrun.cli.output import console
from batchrun.pricing import usd

if TYPE_CHECKING:
    from rich.console import Console

    from batchrun.run.budget import BudgetRoom, RunCap
    from batchrun.run.progress import BudgetWarning

STYLE = {"over": "red", "warn": "yellow", "ok": ""}
SAID = {"over": "over the budget", "warn": "past its threshold", "ok": "ok"}


def budgets_command(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help=f"The budgets file (default: $BATCHRUN_BUDGETS, else ./{budgets.DEFAULT_FILE}).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    db: opt.Db = None,
) -> None:
    """Budgets per UTC day and month, per model or for all: the spend of the period going on
    against each, and whether it passed its soft threshold (warn_at) or the budget. run, resume
    and worker stop at what is left of them, as at --max-cost."""
    from batchrun.analytics import real, simulated, sums_frame  # noqa: PLC0415

    path = file or budgets.budgets_file()
    chosen = budgets.load_budgets(path)
    out = console()
    if not chosen:
        out.print(
            f"No budgets: {path} does not exist or sets none ([[budget]] tables).", markup=False
        )
        return
    now = time.time()
    store = opt.open_store(db)  # the per-batch sums (a few rows an hour), not every result
    batches = [batch.as_dict() for batch in store.list_batches()]
    frame = sums_frame(store.aggregate_rows(), {}, batches)
    billed = real(frame)
    is_real = billed.height > 0
    use = budgets.budget_use(chosen, billed if is_real else simulated(frame), now)
    if as_json:
        rows = use.with_columns(use["since"].cast(str)).to_dicts()
        document = {"file": str(path), "real": is_real, "budgets": rows}
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    title = f"Budgets from {path}" + ("" if is_real else " (simulated cost: no real spend)")
    table = Table(title=title)
    for column in ("period", "model", "spent", "budget", "used", "state"):
        table.add_column(
            column, justify="right" if column in ("spent", "budget", "used") else "left"
        )
    for row in use.iter_rows(named=True):
        nothing = row["cost_nanos"] is None and not row["unpriced"]
        spent = "-" if row["cost_nanos"] is None and not nothing else usd(row["cost_nanos"] or 0)
        if row["unpriced"]:
            spent += f" + {row['unpriced']:,} unpriced"
        table.add_row(
            "today" if row["period"] == "day" else f"month since {row['since']}",
            row["model"] or "all models",
            spent,
            usd(row["cap_nanos"]),
            f"{row['used']:.0%}",
            SAID[row["state"]] + (f" ({row['warn_at']:.0%})" if row["state"] == "warn" else ""),
            style=STYLE[row["state"]],
        )
    out.print(table)


def say_run_budgets(out: Console, cap: RunCap, path: Path, now: float) -> None:
    """Before a run: each period budget past its threshold, each only watched, and the one that
    caps the run with what is left of it."""
    for room in cap.rooms:
        if room.warned:
            say_warned(out, room)
    for model, room in cap.model_rooms().items():
        say_model_cap(out, model, room, now)
    binding = cap.binding
    if binding is None:
        return
    if binding.left_nanos == 0:
        out.print(
            f"[yellow]Budget reached:[/] {binding.name()} is spent: nothing will be sent. It "
            f"is whole again at {binding.renews(now)}; or raise it in {path}.",
            highlight=False,
        )
        return
    out.print(
        f"Budget: {binding.name()} has {usd(binding.left_nanos)} left this "
        f"{binding.budget.period}; the run stops there (set in {path}).",
        highlight=False,
    )


def say_model_cap(out: Console, model: str, room: BudgetRoom, now: float) -> None:
    """A budget of one model of several: what is left of it, and that only that model stops."""
    if room.left_nanos == 0:
        out.print(
            f"[yellow]Budget reached:[/] {room.name()} is spent: nothing will be sent to "
            f"{model}; the other models go on. It is whole again at {room.renews(now)}.",
            highlight=False,
        )
        return
    out.print(
        f"Budget: {room.name()} has {usd(room.left_nanos)} left this {room.budget.period}; "
        f"{model} stops there, the other models go on.",
        highlight=False,
    )


def say_warned(out: Console, room: BudgetRoom) -> None:
    """One budget past its soft threshold, in amber."""
    out.print(f"[yellow]Warning:[/] {room.warning()}.", highlight=False)


def say_crossed(
    out: Console,
    before: RunCap,
    after: Sequence[BudgetRoom],
    during: Sequence[BudgetWarning] = (),
) -> None:
    """After a run: the budgets whose soft threshold the run crossed, unless warned of already
    (before the run, or while it ran: ``during``, the run's ``budget_warnings``)."""
    was = {room.budget for room in before.rooms if room.warned}
    was.update(warning.budget for warning in during)
    for room in after:
        if room.warned and room.budget not in was:
            say_warned(out, room)


def budget_reached_text(cap: RunCap, batch_name: str, now: float) -> str | None:
    """When a period budget stopped the run: which, when it renews, and how to go on."""
    if cap.binding is None:
        return None
    return (
        f"[yellow]Budget reached:[/] {cap.binding.name()} has no room for the next request's "
        f"worst case. It is whole again at {cap.binding.renews(now)}; then (or once it is "
        f"raised in the budgets file) continue with: [bold]batchrun resume {batch_name}[/]"
    )

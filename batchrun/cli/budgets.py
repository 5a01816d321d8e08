"""``batchrun budgets``: each budget of the budgets file (per UTC day or month, per model or for
all) against the spend of the period going on, as the dashboard's Spend page shows them."""

from __future__ import annotations

import calendar
import sys
import time
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from batchrun import budgets
from batchrun.cli import options as opt
from batchrun.cli.output import console
from batchrun.pricing import usd

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
    against each, and whether it passed its soft threshold (warn_at) or the budget. Budgets are
    watched, not enforced: a batch's hard cap is --max-cost."""
    from batchrun.analytics import real, results_frame, simulated  # noqa: PLC0415

    path = file or budgets.budgets_file()
    chosen = budgets.load_budgets(path)
    out = console()
    if not chosen:
        out.print(
            f"No budgets: {path} does not exist or sets none ([[budget]] tables).", markup=False
        )
        return
    now = time.time()
    month = budgets.period_start("month", now)
    since = calendar.timegm(month.timetuple())  # the month's first UTC midnight
    frame = results_frame(opt.open_store(db).result_rows(since=since))
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

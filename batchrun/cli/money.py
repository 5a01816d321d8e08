"""``batchrun spend`` and ``batchrun reprice``: what was spent, and recomputing it."""

from __future__ import annotations

import calendar
import sys
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.table import Table

from batchrun.cli import options as opt
from batchrun.cli.display import print_cache
from batchrun.cli.output import console
from batchrun.exceptions import ConfigError
from batchrun.pricing import usd

if TYPE_CHECKING:
    from rich.console import Console


ORIGINS = (
    ("real", False, "MiniMax: billed"),
    ("simulated", True, "simulated: not billed, at MiniMax's prices"),
)  # (JSON key, results' simulated mark, what the tables say)


def spend_command(
    by: Annotated[str, typer.Option("--by", help="Group by model, batch or day (UTC).")] = "model",
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only requests sent on or after this UTC date (YYYY-MM-DD).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    db: opt.Db = None,
) -> None:
    """Spend tables: requests, tokens, cost and the prompt cache's hit rate and saving; unpriced
    requests are counted, never added as $0. Real spend (MiniMax) and what simulated results
    would have cost are shown apart, each with its own total, never added together."""
    from batchrun.analytics import SPEND_KEYS, cache_total, results_frame, spend  # noqa: PLC0415

    if by not in SPEND_KEYS:
        raise ConfigError(f"--by must be one of {', '.join(SPEND_KEYS)}, not {by!r}")
    start = _day(since) if since else None
    store = opt.open_store(db)
    every = spend(results_frame(store.result_rows(since=start)), by)
    parts: dict[str, dict[str, Any]] = {}
    for key, simulated, _ in ORIGINS:
        table_rows = every.filter(every["simulated"] == simulated)
        total = cache_total(table_rows, also=("requests", "unpriced")).row(0, named=True)
        priced = [n for n in table_rows["cost_nanos"].to_list() if n is not None]
        total["cost_nanos"] = sum(priced) if priced else None
        parts[key] = {"rows": table_rows.drop("simulated").to_dicts(), "total": total}
    if as_json:
        document = {"by": by, "since": since, **parts}
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    title = f"by {by}" + (f" since {since}" if since else "")
    out = console()
    if not parts["real"]["rows"]:
        out.print("No real spend: no result here was sent to MiniMax.")
    for key, _, label in ORIGINS:
        if parts[key]["rows"]:
            _print_spend(out, parts[key]["rows"], parts[key]["total"], by, title, label)


def _print_spend(
    out: Console, rows: list[dict[str, Any]], total: dict[str, Any], by: str, title: str, label: str
) -> None:
    """One origin's spend table (``label``: real or simulated), its total, then the prompt
    cache's table and warnings."""
    simulated = label.startswith("simulated")
    table = Table(title=f"{'Simulated cost' if simulated else 'Spend'} {title} ({label})")
    for column in (
        by,
        "requests",
        "input tokens",
        "output tokens",
        "cache read",
        "cache write",
        "cost",
        "unpriced",
    ):
        table.add_column(column, justify="left" if column == by else "right")
    for row in rows:
        table.add_row(
            str(row[by]),
            f"{row['requests']:,}",
            f"{row['input_tokens']:,}",
            f"{row['output_tokens']:,}",
            f"{row['cache_read_tokens']:,}",
            f"{row['cache_creation_tokens']:,}",
            usd(row["cost_nanos"]) if row["cost_nanos"] is not None else "-",
            f"{row['unpriced']:,}",
        )
    out.print(table)
    unpriced = total["unpriced"]
    out.print(
        ("Total simulated (not billed)" if simulated else "Total spent on MiniMax")
        + f": {usd(total['cost_nanos']) if total['cost_nanos'] is not None else '-'}"
        + (
            f", plus {unpriced:,} unpriced requests (no price on their model and day)"
            if unpriced
            else ""
        )
    )
    suffix = ", simulated" if simulated else ""
    print_cache(out, rows, total, key=by, results="requests", title=f"Prompt cache {title}{suffix}")


def reprice_command(
    batch_ref: Annotated[
        str | None, typer.Argument(metavar="[BATCH]", help="Batch id or name (default: all).")
    ] = None,
    db: opt.Db = None,
    catalog: opt.CatalogFile = None,
) -> None:
    """Recompute stored costs with the current prices (and your catalog file); show what changed."""
    from batchrun.reprice import reprice  # noqa: PLC0415 - loaded only when used

    store = opt.open_store(db)
    batch_id = store.find_batch(batch_ref).id if batch_ref else None
    changes = reprice(store, opt.open_catalog(catalog), batch_id)
    table = Table(title="Repriced" + (f" batch {batch_ref}" if batch_ref else " every batch"))
    for column in (
        "model",
        "results",
        "changed",
        "before",
        "after",
        "unpriced before",
        "unpriced after",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    for change in changes:
        table.add_row(
            change.model,
            f"{change.results:,}",
            f"{change.changed:,}",
            usd(change.before_nanos),
            usd(change.after_nanos),
            f"{change.unpriced_before:,}",
            f"{change.unpriced_after:,}",
        )
    out = console()
    out.print(table)
    filled = sum(change.cache_figures_filled for change in changes)
    if filled:
        out.print(
            f"{filled:,} results gained their cache figures (cache-write cost, and what they would "
            "have cost without the prompt cache), so their saving is now known."
        )


def _day(text: str) -> float:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since must be a date like 2026-11-22, not {text!r}") from None
    return float(calendar.timegm(day.timetuple()))

"""``batchrun models``: the model catalog as a table."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from batchrun.catalog import Catalog, ModelInfo, Rates, load_catalog
from batchrun.cli.output import console
from batchrun.run.launch import pool_text

CatalogOption = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        envvar="BATCHRUN_CATALOG",
        help="Your own catalog TOML file; its prices and limits override the built-in ones.",
        dir_okay=False,
    ),
]


def models_command(catalog: CatalogOption = None) -> None:
    """List the models batchrun knows: context window, prices, rate limits and speed, and the
    limits several models share (pools)."""
    loaded = load_catalog(catalog)
    table = Table(title=f"MiniMax models (prices in USD per million tokens, on {date.today()})")
    table.add_column("model", no_wrap=True)
    for column in (
        "context",
        "input",
        "output",
        "cache read",
        "cache write",
        "RPM",
        "TPM",
        "speed",
    ):
        table.add_column(column, justify="right")
    table.add_column("thinking")
    table.add_column("image/video")
    for model in loaded:
        table.add_row(*_row(model))
    out = console()
    out.print(table)
    out.print(f"Catalog: {' + '.join(loaded.sources)}. '-' means MiniMax publishes no figure.")
    _print_pools(loaded, out)
    for model in loaded:
        price = model.price_on(date.today())
        if price is not None and price.long_context is not None:
            tier = price.long_context
            out.print(
                f"{model.name}: input above {tier.above_input_tokens:,} tokens is charged "
                f"{_rates_text(tier.rates)} for the whole request."
            )


def _print_pools(catalog: Catalog, out: Console) -> None:
    """The limits several models share, or why there are none."""
    if not catalog.pools:
        out.print(
            "Shared limits: none. Each model is paced by its own RPM / TPM, as MiniMax's "
            "rate-limit guide lists them; whether models on one account share one pool is "
            "disputed. If yours do: --account-rpm / --account-tpm, or [pools.NAME] in your "
            "catalog file.",
            highlight=False,
            markup=False,
        )
        return
    for pool in catalog.pools.values():
        out.print(
            f"Shared limit {pool.name!r}: {pool_text(pool.rpm, pool.tpm)} for "
            f"{', '.join(pool.models)} together ({pool.source}).",
            highlight=False,
            markup=False,
        )


def _row(model: ModelInfo) -> list[str]:
    price = model.price_on(date.today())
    rates = (
        price.rates if price else Rates(input=None, output=None, cache_read=None, cache_write=None)
    )
    return [
        model.name,
        f"{model.context_window:,}",
        _money(rates.input),
        _money(rates.output),
        _money(rates.cache_read),
        _money(rates.cache_write),
        _number(model.rpm),
        _number(model.tpm),
        f"~{model.speed_tps:g} tps" if model.speed_tps else "-",
        "always" if model.thinking == "always" else "opt-in",
        "yes" if model.accepts("image") else "no",
    ]


def _money(value: object) -> str:
    return f"{value}" if value is not None else "-"


def _number(value: int | None) -> str:
    return f"{value:,}" if value is not None else "-"


def _rates_text(rates: Rates) -> str:
    return (
        f"input {_money(rates.input)}, output {_money(rates.output)}, "
        f"cache read {_money(rates.cache_read)}"
    )

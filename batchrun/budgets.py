"""Budgets per period (UTC day, UTC month) and per model, with a soft threshold, kept in a TOML
file that the dashboard and the command line both read.

    # batchrun-budgets.toml (or the file $BATCHRUN_BUDGETS names)
    warn_at = 0.8              # warn at 80% of a budget (the default)

    [[budget]]
    period = "day"             # "day" or "month", UTC
    usd = "5.00"               # a string or a number

    [[budget]]
    period = "month"
    usd = 120
    model = "MiniMax-M2.7"     # one model's spend; without it, every model's
    warn_at = 0.9              # this budget's own threshold

run, resume and worker stop at what is left of a budget (run/budget.py: a budget over every
model caps the batch; a budget of one model of several stops that model alone). Past its soft
threshold a budget is warned of before a run, at the moment a run crosses it, and on the
dashboard's Spend page (amber past its threshold, red past the budget). Spend is
the real spend (results sent to MiniMax) in the period now going on; a store with no real
results is measured on its simulated cost, marked so.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchrun.config import read_environment
from batchrun.exceptions import ConfigError

if TYPE_CHECKING:  # polars is loaded by the reading, not by every command that imports this
    import polars as pl

DEFAULT_FILE = "batchrun-budgets.toml"
DEFAULT_WARN_AT = 0.8
PERIODS = ("day", "month")
NANOS_PER_USD = 1_000_000_000


@dataclass(frozen=True, kw_only=True, slots=True)
class PeriodBudget:
    """One budget: so many nano-dollars per UTC day or month, of one model or of all."""

    period: str
    cap_nanos: int
    model: str | None = None
    warn_at: float = DEFAULT_WARN_AT


def budgets_file(env: Mapping[str, str] | None = None) -> Path:
    """The budgets file: $BATCHRUN_BUDGETS, else ./batchrun-budgets.toml."""
    return Path(read_environment(env).budgets or DEFAULT_FILE)


def load_budgets(path: Path) -> list[PeriodBudget]:
    """The budgets the file sets; none when it does not exist. ConfigError names what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read the budgets file {path}: {exc.strerror}") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    warn_at = _share(document.get("warn_at", DEFAULT_WARN_AT), f"{path}: warn_at")
    entries = document.get("budget", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: budget must be a list of tables ([[budget]])")
    return [_budget(entry, warn_at, f"{path}: budget {n}") for n, entry in enumerate(entries, 1)]


def _budget(entry: Any, warn_at: float, where: str) -> PeriodBudget:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = set(entry) - {"period", "usd", "model", "warn_at"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    period = entry.get("period")
    if period not in PERIODS:
        raise ConfigError(f"{where}: period must be 'day' or 'month', not {period!r}")
    model = entry.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise ConfigError(f"{where}: model must be a model name")
    return PeriodBudget(
        period=period,
        cap_nanos=_nanos(entry.get("usd"), where),
        model=model,
        warn_at=_share(entry.get("warn_at", warn_at), f"{where}: warn_at"),
    )


def _nanos(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: usd must be an amount in USD, as '5.00' or 5")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise ConfigError(f"{where}: usd {value!r} is not an amount") from exc
    if not amount.is_finite() or amount <= 0:
        raise ConfigError(f"{where}: usd must be more than 0")
    return int(amount * NANOS_PER_USD)


def _share(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"{where} must be a share between 0 and 1, as 0.8")
    return float(value)


def period_start(period: str, now: float) -> date:
    """The first UTC day of the day or month that ``now`` (epoch seconds) is in."""
    today = datetime.fromtimestamp(now, UTC).date()
    return today if period == "day" else today.replace(day=1)


def budget_use(budgets: Sequence[PeriodBudget], spend: pl.DataFrame, now: float) -> pl.DataFrame:
    """Each budget against the priced spend of the period now going on: spend, unpriced results
    (never counted as $0), share used, and ``state``: ``over`` (past the budget), ``warn`` (past
    its threshold) or ``ok``.

    ``spend`` is a sums frame (analytics.sums_frame: each row ``n`` results, ``priced`` of them
    with a cost, per UTC hour; a requests frame through analytics.weighed has both columns too);
    a row with no ``day`` was not sent and counts in no period."""
    import polars as pl  # noqa: PLC0415

    sent = spend.filter(pl.col("day").is_not_null())
    rows = []
    for budget in budgets:
        start = period_start(budget.period, now)
        chosen = sent.filter(pl.col("day") >= start)
        if budget.model is not None:
            chosen = chosen.filter(pl.col("model") == budget.model)
        counts = chosen.select(
            pl.col("cost_nanos").sum(), pl.col("priced").sum(), pl.col("n").sum()
        ).row(0)
        spent = int(counts[0]) if counts[1] else None
        used = (spent or 0) / budget.cap_nanos
        rows.append(
            {
                "period": budget.period,
                "since": start,
                "model": budget.model,
                "cap_nanos": budget.cap_nanos,
                "cost_nanos": spent,
                "unpriced": int(counts[2] - counts[1]),
                "used": used,
                "warn_at": budget.warn_at,
                "state": "over" if used > 1 else "warn" if used >= budget.warn_at else "ok",
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "period": pl.String,
            "since": pl.Date,
            "model": pl.String,
            "cap_nanos": pl.Int64,
            "cost_nanos": pl.Int64,
            "unpriced": pl.Int64,
            "used": pl.Float64,
            "warn_at": pl.Float64,
            "state": pl.String,
        },
    )

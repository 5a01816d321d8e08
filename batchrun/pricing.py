"""What a request costs: each kind of token at its own rate, at the price in effect that day.

Money is integer nano-dollars (1e-9 USD) so sums are exact. None means unpriced: the model has
no price on that day, or a token kind it used has none (for example cache writes on M3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from batchrun.catalog import ModelInfo, Price, Rates
from batchrun.exceptions import ConfigError

NANOS_PER_USD = 1_000_000_000
# The largest amount an option in USD takes: a billion dollars, far below what the store's 64-bit
# integers hold (about 9.2e9 USD in nano-dollars), so sums of caps and spend never overflow.
MAX_USD_NANOS = 1_000_000_000 * NANOS_PER_USD
_NANOS_PER_TOKEN_PER_RATE = Decimal(NANOS_PER_USD) / Decimal(1_000_000)  # rate is per million


@dataclass(frozen=True, kw_only=True, slots=True)
class Usage:
    """Token counts of one request, as the API reports them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        """Every input token, cached or not: what the long-context threshold is measured on."""
        return self.input_tokens + self.cache_read_tokens + self.cache_creation_tokens


@dataclass(frozen=True, kw_only=True, slots=True)
class Cost:
    """A priced request: nano-dollars and the effective date of the price used.

    ``uncached_nanos``: what the same usage would have cost with every prompt token at the input
    rate (same price, tier and multiplier), None if the price has no input rate;
    ``cache_write_nanos``: the part of ``nanos`` paid for cache-creation tokens. Each figure is
    rounded to the nano-dollar on its own.
    """

    nanos: int
    price_date: date
    uncached_nanos: int | None
    cache_write_nanos: int

    @property
    def saving_nanos(self) -> int | None:
        """What reading from the cache saved: the uncached cost minus the cost."""
        return None if self.uncached_nanos is None else self.uncached_nanos - self.nanos


def rates_for(price: Price, usage: Usage) -> Rates:
    """The rates that apply to a request: the long-context tier once its prompt passes it."""
    tier = price.long_context
    if tier is not None and usage.prompt_tokens > tier.above_input_tokens:
        return tier.rates
    return price.rates


def cost_of(
    model: ModelInfo, usage: Usage, day: date, multiplier: Decimal = Decimal(1)
) -> Cost | None:
    """The cost of ``usage`` on ``model`` on ``day``; None when any part cannot be priced.

    ``multiplier`` is 1.5 (the catalog's priority_multiplier) for ``service_tier: "priority"``.
    The uncached cost and the cache-write part come from the same rates, tier and multiplier.
    """
    price = model.price_on(day)
    if price is None:
        return None
    rates = rates_for(price, usage)
    write = _at_rate(usage.cache_creation_tokens, rates.cache_write)
    output = _at_rate(usage.output_tokens, rates.output)
    paid = (
        _at_rate(usage.input_tokens, rates.input),
        output,
        _at_rate(usage.cache_read_tokens, rates.cache_read),
        write,
    )
    nanos = _total(paid, multiplier)
    if nanos is None:
        return None
    return Cost(
        nanos=nanos,
        price_date=price.effective,
        uncached_nanos=_total((_at_rate(usage.prompt_tokens, rates.input), output), multiplier),
        cache_write_nanos=_total((write,), multiplier) or 0,
    )


def _at_rate(tokens: int, rate: Decimal | None) -> Decimal | None:
    """``tokens`` at ``rate`` (USD per million) in nano-dollars; None: tokens without a rate."""
    if not tokens:
        return Decimal(0)
    return None if rate is None else tokens * rate * _NANOS_PER_TOKEN_PER_RATE


def _total(parts: tuple[Decimal | None, ...], multiplier: Decimal) -> int | None:
    """The parts' sum times ``multiplier``, rounded to the nano-dollar; None if a part is."""
    total = Decimal(0)
    for part in parts:
        if part is None:
            return None
        total += part
    return int((total * multiplier).quantize(Decimal(1), ROUND_HALF_UP))


def tier_multiplier(params: Mapping[str, object], priority_multiplier: Decimal) -> Decimal:
    """The price multiplier a request's parameters ask for: priority costs more."""
    return priority_multiplier if params.get("service_tier") == "priority" else Decimal(1)


def request_cost(
    model: ModelInfo,
    usage: Usage,
    day: date,
    params: Mapping[str, object],
    priority_multiplier: Decimal,
) -> Cost | None:
    """The cost of one request sent with ``params`` on ``day`` (its service tier included)."""
    return cost_of(model, usage, day, tier_multiplier(params, priority_multiplier))


def day_of(epoch_seconds: float) -> date:
    """The UTC calendar day of a timestamp: prices change by UTC day."""
    return datetime.fromtimestamp(epoch_seconds, UTC).date()


def usd(nanos: int | None) -> str:
    """Nano-dollars as a dollar amount for people; 'unpriced' for None, never $0."""
    if nanos is None:
        return "unpriced"
    if nanos < 0:  # a saving that cache writes outweighed
        return f"-{usd(-nanos)}"
    value = Decimal(nanos) / NANOS_PER_USD
    places = 6 if value < 1 else 4 if value < 100 else 2  # sub-cent amounts stay visible
    return f"${value:,.{places}f}"


def parse_usd(text: str | None, option: str = "--max-cost", allow_zero: bool = False) -> int | None:
    """An amount in USD given to ``option``, in nano-dollars."""
    if text is None:
        return None
    try:
        amount = Decimal(text.strip().lstrip("$"))
    except InvalidOperation:
        amount = Decimal(-1)
    nanos = int(amount * NANOS_PER_USD) if amount.is_finite() else -1
    # Below one nano-dollar (the unit money is kept in) a cap would round to 0, which means none.
    if nanos < 0 or (nanos == 0 and not (allow_zero and amount == 0)) or nanos > MAX_USD_NANOS:
        least = "0" if allow_zero else "0.000000001 (one nano-dollar)"
        most = f"{MAX_USD_NANOS // NANOS_PER_USD:,}"
        raise ConfigError(
            f"{option} must be an amount in USD from {least} to {most}, such as 2.50, not {text!r}"
        )
    return nanos

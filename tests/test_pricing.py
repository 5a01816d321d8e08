"""Each pricing rule against costs computed by hand (USD per million tokens, in nano-dollars)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from batchrun.catalog import load_catalog
from batchrun.pricing import Usage, cost_of, tier_multiplier, usd

DAY = date(2026, 12, 1)


def nanos(
    model: str, day: date = DAY, multiplier: Decimal = Decimal(1), **tokens: int
) -> int | None:
    cost = cost_of(load_catalog().get(model), Usage(**tokens), day, multiplier)
    return None if cost is None else cost.nanos


def test_each_kind_of_token_has_its_own_rate() -> None:
    # 1,000 x 0.30 + 500 x 1.20 + 200 x 0.06 + 100 x 0.375 = 949.5 USD per million tokens
    assert (
        nanos(
            "MiniMax-M2.7",
            input_tokens=1_000,
            output_tokens=500,
            cache_read_tokens=200,
            cache_creation_tokens=100,
        )
        == 949_500
    )


def test_highspeed_costs_twice_the_input_and_output() -> None:
    # 1,000 x 0.60 + 1,000 x 2.40 = 3,000 per million
    assert nanos("MiniMax-M2.5-highspeed", input_tokens=1_000, output_tokens=1_000) == 3_000_000


def test_m3_long_context_tier_applies_to_the_whole_request() -> None:
    # at the threshold: 512,000 x 0.30 + 1,000 x 1.20 = 154,800 per million
    assert nanos("MiniMax-M3", input_tokens=512_000, output_tokens=1_000) == 154_800_000
    # above it, every token at the tier: 600,000 x 0.60 + 1,000 x 2.40 = 362,400
    assert nanos("MiniMax-M3", input_tokens=600_000, output_tokens=1_000) == 362_400_000
    # cached tokens count toward the threshold: 500,000 x 0.60 + 20,000 x 0.12 = 302,400
    assert nanos("MiniMax-M3", input_tokens=500_000, cache_read_tokens=20_000) == 302_400_000


def test_a_token_kind_without_a_price_makes_the_request_unpriced() -> None:
    assert nanos("MiniMax-M3", input_tokens=10, cache_creation_tokens=5) is None
    assert nanos("MiniMax-M3", input_tokens=10) == 3_000  # no cache writes: priced


def test_no_price_before_the_first_effective_date() -> None:
    assert nanos("MiniMax-M2", date(2026, 1, 1), input_tokens=1_000) is None
    assert nanos("MiniMax-M2", date(2026, 11, 22), input_tokens=1_000) == 300_000


def test_priority_tier_multiplies_the_cost() -> None:
    multiplier = tier_multiplier({"service_tier": "priority"}, load_catalog().priority_multiplier)
    assert multiplier == Decimal("1.5")
    assert tier_multiplier({}, Decimal("1.5")) == 1
    # (1,000 x 0.30 + 1,000 x 1.20) x 1.5 = 2,250 per million
    assert nanos(
        "MiniMax-M2.7", multiplier=multiplier, input_tokens=1_000, output_tokens=1_000
    ) == (2_250_000)


def test_user_prices_apply_from_their_date_and_round_half_up(tmp_path: Path) -> None:
    override = tmp_path / "prices.toml"
    override.write_text(
        '[[models."MiniMax-M2.7".prices]]\n'
        "effective = 2027-01-01\ninput = 0.0000005\noutput = 1\ncache_read = 0\ncache_write = 0\n"
    )
    model = load_catalog(override).get("MiniMax-M2.7")
    before = cost_of(model, Usage(input_tokens=1_000), date(2026, 12, 31))
    after = cost_of(model, Usage(input_tokens=3, output_tokens=1), date(2027, 1, 2))
    assert before is not None
    assert after is not None
    assert (before.nanos, before.price_date) == (300_000, date(2026, 11, 22))
    # 3 x 0.0000005 = 0.0000015 per million = 0.0015 nano-dollars -> 0; plus 1 x 1 = 1,000
    assert (after.nanos, after.price_date) == (1_000, date(2027, 1, 1))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "unpriced"),
        (0, "$0.000000"),
        (949_500, "$0.000950"),
        (12_345_678_900, "$12.3457"),
        (123_456_789_000, "$123.46"),
    ],
)
def test_amounts_for_people(value: int | None, text: str) -> None:
    assert usd(value) == text

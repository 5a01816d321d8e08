"""The model catalog: built-in figures, price dates, user overrides and their errors."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchrun.catalog import load_catalog
from batchrun.cli import app
from batchrun.exceptions import CatalogError, UnknownModelError

ALL_MODELS = [
    "MiniMax-M3",
    "MiniMax-M2.7",
    "MiniMax-M2.7-highspeed",
    "MiniMax-M2.5",
    "MiniMax-M2.5-highspeed",
    "MiniMax-M2.1",
    "MiniMax-M2.1-highspeed",
    "MiniMax-M2",
]


def test_builtin_catalog_has_the_eight_documented_models() -> None:
    catalog = load_catalog()
    assert catalog.names() == ALL_MODELS
    m3 = catalog.get("MiniMax-M3")
    assert (m3.context_window, m3.rpm, m3.tpm, m3.thinking) == (
        1_000_000,
        200,
        10_000_000,
        "adaptive",
    )
    assert m3.accepts("image")
    assert m3.accepts("video")
    for name in ALL_MODELS[1:]:
        model = catalog.get(name)
        assert (model.context_window, model.rpm, model.tpm) == (204_800, 500, 20_000_000)
        assert model.thinking == "always"
        assert not model.accepts("image")
        assert model.accepts("tool_use")
    assert catalog.get("MiniMax-M2").speed_tps is None  # MiniMax states no speed for M2
    assert catalog.get("MiniMax-M2.7-highspeed").speed_tps == 100


def test_prices_are_decimal_with_dates_and_sources() -> None:
    catalog = load_catalog()
    price = catalog.get("MiniMax-M2.5").price_on(date(2026, 12, 1))
    assert price is not None
    assert price.rates.input == Decimal("0.30")
    assert price.rates.output == Decimal("1.20")
    assert price.rates.cache_read == Decimal("0.03")
    assert price.rates.cache_write == Decimal("0.375")
    assert price.source
    m3 = catalog.get("MiniMax-M3").price_on(date(2026, 12, 1))
    assert m3 is not None
    assert m3.rates.cache_write is None  # MiniMax lists no cache-write price for M3
    assert m3.long_context is not None
    assert m3.long_context.above_input_tokens == 512_000
    assert m3.long_context.rates.input == Decimal("0.60")
    # Before the first recorded date there is no price at all: never a silent $0.
    assert catalog.get("MiniMax-M3").price_on(date(2020, 1, 1)) is None


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(UnknownModelError, match=r"MiniMax-M2\.7") as caught:
        load_catalog().get("MiniMax-M9")
    assert "batchrun models" in str(caught.value)


def test_override_replaces_limits_adds_prices_and_models(tmp_path: Path) -> None:
    override = tmp_path / "mine.toml"
    override.write_text(
        """
[models."MiniMax-M2.7"]
rpm = 20
tpm = 1_000_000
concurrency = 8

[[models."MiniMax-M2.7".prices]]
effective = 2027-01-01
input = 0.25
output = 1.00
cache_read = 0.05
cache_write = 0.30

[[models."MiniMax-M2.7".prices]]
effective = 2026-11-22
input = 0.31
output = 1.21

[models."My-Finetune"]
context_window = 32_000
thinking = "adaptive"
content_kinds = ["text"]
"""
    )
    catalog = load_catalog(override)
    model = catalog.get("MiniMax-M2.7")
    assert (model.rpm, model.tpm, model.concurrency) == (20, 1_000_000, 8)
    assert model.context_window == 204_800  # untouched fields stay
    dec = model.price_on(date(2026, 12, 1))
    jan = model.price_on(date(2027, 2, 1))
    assert dec is not None
    assert jan is not None
    assert dec.rates.input == Decimal("0.31")  # same date as ours: theirs wins
    assert dec.rates.cache_read is None  # ...and is taken whole, not mixed with ours
    assert jan.rates.input == Decimal("0.25")
    assert catalog.get("My-Finetune").price_on(date(2027, 1, 1)) is None  # unpriced
    assert catalog.sources[-1] == str(override)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not toml [", "not valid TOML"),
        ('[models."MiniMax-M2"]\nrpm = -1\n', "rpm must be a whole number > 0"),
        ('[models."MiniMax-M2"]\nthinking = "never"\n', "thinking"),
        ('[models."MiniMax-M2"]\nspeeed = 3\n', "unknown field(s): speeed"),
        ('[[models."MiniMax-M2".prices]]\neffective = "soon"\n', "effective must be a date"),
        ('[[models."MiniMax-M2".prices]]\neffective = 2027-01-01\ninput = -2\n', "input"),
        ('[models."New"]\nthinking = "always"\ncontent_kinds = ["text"]\n', "context_window"),
    ],
)
def test_bad_override_names_file_and_field(tmp_path: Path, text: str, fragment: str) -> None:
    override = tmp_path / "bad.toml"
    override.write_text(text)
    with pytest.raises(CatalogError) as caught:
        load_catalog(override)
    assert str(override) in str(caught.value)
    assert fragment in str(caught.value)


def test_models_command_prints_every_model_and_price() -> None:
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for name in ALL_MODELS:
        assert name in result.output
    assert "1,000,000" in result.output
    assert "0.375" in result.output
    assert "512,000" in result.output


def test_models_command_reports_a_bad_catalog_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["models", "--catalog", str(tmp_path / "missing.toml")])
    assert result.exit_code != 0


# --- pools: limits several models share ------------------------------------------------------


def test_builtin_catalog_has_no_pool_and_its_commented_example_loads(tmp_path: Path) -> None:
    # MiniMax's guide gives each model its own limits: no pool unless the user adds one. The
    # example in catalog.toml, uncommented, must be a valid pool.
    assert load_catalog().pools == {}
    text = (Path(__file__).parents[1] / "batchrun/data/catalog.toml").read_text("utf-8")
    lines = text.splitlines()
    start = lines.index("# [pools.minimax-text]")
    example = []
    for line in lines[start:]:
        if not line.startswith("# ") and line != "#":
            break
        example.append(line[2:])
    mine = tmp_path / "pool.toml"
    mine.write_text("\n".join(example) + "\n")
    pool = load_catalog(mine).pools["minimax-text"]
    assert (pool.rpm, pool.tpm) == (500, 20_000_000)
    assert set(pool.models) == set(ALL_MODELS)
    assert "disputed" in pool.source


def test_a_users_pool_is_added(tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text(
        '[pools.team]\nmodels = ["MiniMax-M3", "MiniMax-M2.7"]\nrpm = 300\n'
        'source = "our account manager"\n'
    )
    catalog = load_catalog(mine)
    pool = catalog.pools["team"]
    assert (pool.models, pool.rpm, pool.tpm) == (("MiniMax-M3", "MiniMax-M2.7"), 300, None)
    assert pool.source == "our account manager"
    assert catalog.get("MiniMax-M3").rpm == 200  # each model keeps its own limits


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[pools.p]\nmodels = ["MiniMax-M9"]\nrpm = 5\n', "names unknown model(s) MiniMax-M9"),
        (
            '[pools.p]\nmodels = ["MiniMax-M3"]\nrpm = 0\n',
            "pools.'p'.rpm must be a whole number > 0",
        ),
        ('[pools.p]\nmodels = ["MiniMax-M3"]\ntpm = -5\n', "tpm must be a whole number > 0"),
        ('[pools.p]\nmodels = ["MiniMax-M3"]\nrpm = 2.5\n', "rpm must be a whole number > 0"),
        ('[pools.p]\nmodels = ["MiniMax-M3"]\n', "needs rpm or tpm"),
        ("[pools.p]\nmodels = []\nrpm = 5\n", "must list model names"),
        ('[pools.p]\nmodels = "MiniMax-M3"\nrpm = 5\n', "must list model names"),
        ('[pools.p]\nmodels = ["MiniMax-M3", "MiniMax-M3"]\nrpm = 5\n', "names a model twice"),
        ('[pools.p]\nmodels = ["MiniMax-M3"]\nrpm = 5\nburst = 9\n', "unknown field(s): burst"),
        ("pools = 5\n", "pools must be tables"),
    ],
)
def test_a_bad_pool_is_a_clear_catalog_error(tmp_path: Path, text: str, fragment: str) -> None:
    override = tmp_path / "bad.toml"
    override.write_text(text)
    with pytest.raises(CatalogError) as caught:
        load_catalog(override)
    assert str(override) in str(caught.value)
    assert fragment in str(caught.value)


def test_models_command_shows_the_pools(tmp_path: Path) -> None:
    plain = CliRunner().invoke(app, ["models"])
    assert plain.exit_code == 0, plain.output
    assert "Shared limits: none" in plain.output
    assert "disputed" in plain.output
    mine = tmp_path / "pool.toml"
    mine.write_text('[pools.team]\nmodels = ["MiniMax-M3", "MiniMax-M2.7"]\nrpm = 300\n')
    shown = CliRunner().invoke(app, ["models", "--catalog", str(mine)], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "Shared limit 'team': 300 requests/min for MiniMax-M3, MiniMax-M2.7" in shown.output

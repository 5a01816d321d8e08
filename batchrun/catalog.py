"""The model catalog: context windows, prices with effective dates, rate limits and speeds.

The data lives in ``data/catalog.toml`` (with the source of every figure); a user's own TOML file
of the same shape overrides it: scalar fields replace ours, price entries are added, and an entry
with the same effective date as ours replaces it.

``[pools.NAME]`` tables name limits several models share (``models``, ``rpm``, ``tpm``,
``source``): an account's, if MiniMax counts the account rather than the model. The built-in
catalog has none (MiniMax's guide gives each model its own limits); a user's file may add one (a
pool of the same name as one of ours replaces it whole).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

from batchrun.exceptions import CatalogError, ConfigError, UnknownModelError

ThinkingRule = Literal["always", "adaptive"]
BUILTIN_NAME = "batchrun/data/catalog.toml"
_MODEL_FIELDS = {
    "context_window",
    "max_output_tokens",
    "max_output_source",
    "thinking",
    "content_kinds",
    "default_top_p",
    "speed_tps",
    "speed_source",
    "rpm",
    "tpm",
    "concurrency",
    "count_tokens",
    "cache_min_tokens",
    "cache_ttl_seconds",
    "prices",
}
DEFAULT_CACHE_TTL_SECONDS = 300  # MiniMax's stated lifetime of cache_control marks (row 7)
_RATE_FIELDS = ("input", "output", "cache_read", "cache_write")
# The most requests batchrun keeps in flight per model: the size of its connection pool.
MAX_CONCURRENCY = 4096
_POOL_FIELDS = {"models", "rpm", "tpm", "source"}


@dataclass(frozen=True, kw_only=True)
class Rates:
    """USD per million tokens for each kind of token; None where no price is known."""

    input: Decimal | None
    output: Decimal | None
    cache_read: Decimal | None
    cache_write: Decimal | None


@dataclass(frozen=True, kw_only=True)
class LongContextTier:
    """Rates that apply to the whole request once its input passes ``above_input_tokens``."""

    above_input_tokens: int
    rates: Rates


@dataclass(frozen=True, kw_only=True)
class Price:
    """One dated price list entry for a model."""

    effective: date
    rates: Rates
    long_context: LongContextTier | None
    source: str


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """Everything batchrun knows about one model."""

    name: str
    context_window: int
    thinking: ThinkingRule
    content_kinds: frozenset[str]
    default_top_p: float
    speed_tps: float | None
    speed_source: str
    rpm: int | None
    tpm: int | None
    concurrency: int | None
    count_tokens: str
    prices: tuple[Price, ...]
    max_output_tokens: int | None = None  # the most max_tokens the model accepts; None: the window
    max_output_source: str = "unknown"
    # Passive prompt caching: the least prompt MiniMax caches (None: expect no cache reads), and
    # how long batchrun expects a cached prefix to live without being used again.
    cache_min_tokens: int | None = None
    cache_ttl_seconds: int = DEFAULT_CACHE_TTL_SECONDS

    def price_on(self, day: date) -> Price | None:
        """The price in effect on ``day``, or None when no entry had started by then."""
        current = None
        for price in self.prices:
            if price.effective <= day:
                current = price
        return current

    def refuses_max_tokens(self, max_tokens: int) -> str | None:
        """Why this model refuses a request asking ``max_tokens``, or None when it may ask it."""
        if max_tokens > self.context_window:
            return (
                f"max_tokens {max_tokens} is more than {self.name}'s context window "
                f"of {self.context_window} tokens"
            )
        cap = self.max_output_tokens
        if cap is not None and max_tokens > cap:
            return (
                f"max_tokens {max_tokens} is more than {self.name}'s output cap of {cap} tokens "
                f"({self.max_output_source}): MiniMax refuses it (2013); ask {cap} or fewer"
            )
        return None

    def refuses_request(self, max_tokens: int, input_tokens: int, estimated: bool) -> str | None:
        """Why this model refuses a request before it is sent, or None: ``max_tokens`` over its
        window or output cap, or a counted input that with ``max_tokens`` passes the window (a
        local estimate is generous, so it never refuses a request by itself)."""
        refused = self.refuses_max_tokens(max_tokens)
        if refused is not None or estimated or input_tokens + max_tokens <= self.context_window:
            return refused
        return (
            f"input ({input_tokens:,} tokens) plus max_tokens ({max_tokens:,}) exceeds "
            f"{self.name}'s context window of {self.context_window:,} tokens"
        )

    def accepts(self, content_kind: str) -> bool:
        """Whether messages to this model may contain blocks of this kind."""
        return content_kind in self.content_kinds


@dataclass(frozen=True, kw_only=True)
class PoolInfo:
    """Rate limits several models share (``[pools.NAME]``); None means no limit of that kind."""

    name: str
    models: tuple[str, ...]
    rpm: int | None
    tpm: int | None
    source: str


@dataclass(frozen=True, kw_only=True)
class Catalog:
    """All models, looked up by exact name, and the pools of limits they share."""

    models: Mapping[str, ModelInfo]
    priority_multiplier: Decimal
    sources: tuple[str, ...]
    pools: Mapping[str, PoolInfo] = field(default_factory=dict)

    def get(self, name: str) -> ModelInfo:
        """The model called ``name``; UnknownModelError names the known ones otherwise."""
        try:
            return self.models[name]
        except KeyError:
            raise UnknownModelError(name, self.names()) from None

    def names(self) -> list[str]:
        """Model names in catalog order."""
        return list(self.models)

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self.models.values())

    def __contains__(self, name: object) -> bool:
        return name in self.models


def load_catalog(override: Path | None = None) -> Catalog:
    """The built-in catalog, with ``override`` (a user's TOML file) applied on top."""
    text = resources.files("batchrun").joinpath("data/catalog.toml").read_text("utf-8")
    raw = _parse(text, BUILTIN_NAME)
    sources = [BUILTIN_NAME]
    if override is not None:
        raw = _merge(raw, _read_override(override))
        sources.append(str(override))
    return _build(raw, " + ".join(sources), tuple(sources))


def _read_override(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise CatalogError(str(path), f"cannot read the catalog file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise CatalogError(str(path), "the catalog file is not UTF-8 text") from exc
    return _parse(text, str(path))


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(where, f"not valid TOML: {exc}") from exc


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = {**base, "pricing": {**base.get("pricing", {}), **extra.get("pricing", {})}}
    models = {name: dict(fields) for name, fields in base.get("models", {}).items()}
    for name, fields in extra.get("models", {}).items():
        target = models.setdefault(name, {})
        for key, value in fields.items():
            if key == "prices":
                target["prices"] = _merge_prices(target.get("prices", []), value)
            else:
                target[key] = value
    merged["models"] = models
    merged["pools"] = _merge_tables(base.get("pools", {}), extra.get("pools", {}))
    return merged


def _merge_tables(ours: Any, theirs: Any) -> Any:
    """Tables by name: one of theirs replaces ours of the same name whole (not tables: as given,
    for _build_pools to refuse)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return {**ours, **theirs}
    return theirs or ours


def _merge_prices(ours: list[Any], theirs: list[Any]) -> list[Any]:
    by_date = {entry.get("effective"): entry for entry in ours if isinstance(entry, dict)}
    for entry in theirs if isinstance(theirs, list) else [theirs]:
        by_date[entry.get("effective") if isinstance(entry, dict) else None] = entry
    return list(by_date.values())


def _build(raw: dict[str, Any], where: str, sources: tuple[str, ...]) -> Catalog:
    models_raw = raw.get("models")
    if not isinstance(models_raw, dict) or not models_raw:
        raise CatalogError(where, "no [models] table")
    models = {name: _build_model(name, fields, where) for name, fields in models_raw.items()}
    pricing = raw.get("pricing", {})
    multiplier = _number(pricing, "priority_multiplier", f"{where}: pricing", required=False)
    return Catalog(
        models=models,
        priority_multiplier=Decimal(multiplier) if multiplier is not None else Decimal("1.5"),
        sources=sources,
        pools=_build_pools(raw.get("pools", {}), models, where),
    )


def _build_pools(raw: Any, models: Mapping[str, ModelInfo], where: str) -> dict[str, PoolInfo]:
    if not isinstance(raw, dict):
        raise CatalogError(where, "pools must be tables: [pools.NAME] with models = [...]")
    return {name: _build_pool(name, fields, models, where) for name, fields in raw.items()}


def _build_pool(name: str, fields: Any, models: Mapping[str, ModelInfo], where: str) -> PoolInfo:
    ctx = f"pools.{name!r}"
    if not isinstance(fields, dict):
        raise CatalogError(where, f"{ctx} must be a table")
    unknown = set(fields) - _POOL_FIELDS
    if unknown:
        raise CatalogError(where, f"{ctx} has unknown field(s): {', '.join(sorted(unknown))}")
    members = fields.get("models")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise CatalogError(where, f'{ctx}.models must list model names, e.g. ["MiniMax-M2.7"]')
    strangers = [m for m in members if m not in models]
    if strangers:
        raise CatalogError(
            where,
            f"{ctx} names unknown model(s) {', '.join(strangers)}; "
            f"known models: {', '.join(models)}",
        )
    if len(set(members)) != len(members):
        raise CatalogError(where, f"{ctx}.models names a model twice")
    rpm = _positive_int(fields, "rpm", where, ctx)
    tpm = _positive_int(fields, "tpm", where, ctx)
    if rpm is None and tpm is None:
        raise CatalogError(where, f"{ctx} needs rpm or tpm (or both): the limits its models share")
    return PoolInfo(
        name=name,
        models=tuple(members),
        rpm=rpm,
        tpm=tpm,
        source=str(fields.get("source", "user catalog")),
    )


def _build_model(name: str, fields: Any, where: str) -> ModelInfo:
    ctx = f"models.{name!r}"
    if not isinstance(fields, dict):
        raise CatalogError(where, f"{ctx} must be a table")
    unknown = set(fields) - _MODEL_FIELDS
    if unknown:
        raise CatalogError(where, f"{ctx} has unknown field(s): {', '.join(sorted(unknown))}")
    thinking = fields.get("thinking")
    if thinking not in ("always", "adaptive"):
        raise CatalogError(where, f'{ctx}.thinking must be "always" or "adaptive"')
    kinds = fields.get("content_kinds")
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise CatalogError(where, f"{ctx}.content_kinds must be a list of block types")
    prices = fields.get("prices", [])
    if not isinstance(prices, list):
        raise CatalogError(where, f"{ctx}.prices must be an array of tables")
    speed = _number(fields, "speed_tps", f"{where}: {ctx}", required=False)
    return ModelInfo(
        name=name,
        context_window=_positive_int(fields, "context_window", where, ctx, required=True) or 0,
        thinking=cast(ThinkingRule, thinking),
        content_kinds=frozenset(kinds),
        default_top_p=float(_number(fields, "default_top_p", f"{where}: {ctx}") or 1),
        speed_tps=float(speed) if speed is not None else None,
        speed_source=str(fields.get("speed_source", "unknown")),
        rpm=_positive_int(fields, "rpm", where, ctx),
        tpm=_positive_int(fields, "tpm", where, ctx),
        concurrency=_concurrency(fields, where, ctx),
        count_tokens=str(fields.get("count_tokens", "undocumented")),
        max_output_tokens=_positive_int(fields, "max_output_tokens", where, ctx),
        max_output_source=str(fields.get("max_output_source", "unknown")),
        cache_min_tokens=_whole(fields, "cache_min_tokens", where, ctx) or None,
        cache_ttl_seconds=_positive_int(fields, "cache_ttl_seconds", where, ctx)
        or DEFAULT_CACHE_TTL_SECONDS,
        prices=tuple(
            sorted(
                (
                    _build_price(entry, where, f"{ctx}.prices[{i}]")
                    for i, entry in enumerate(prices)
                ),
                key=lambda p: p.effective,
            )
        ),
    )


def _build_price(entry: Any, where: str, ctx: str) -> Price:
    if not isinstance(entry, dict):
        raise CatalogError(where, f"{ctx} must be a table")
    effective = entry.get("effective")
    if not isinstance(effective, date):
        raise CatalogError(where, f"{ctx}.effective must be a date such as 2026-11-22")
    tier_raw = entry.get("long_context")
    tier = None
    if tier_raw is not None:
        if not isinstance(tier_raw, dict):
            raise CatalogError(where, f"{ctx}.long_context must be a table")
        above = _positive_int(tier_raw, "above_input_tokens", where, f"{ctx}.long_context", True)
        tier = LongContextTier(
            above_input_tokens=above or 0, rates=_rates(tier_raw, where, f"{ctx}.long_context")
        )
    return Price(
        effective=effective,
        rates=_rates(entry, where, ctx),
        long_context=tier,
        source=str(entry.get("source", "user override")),
    )


def _rates(table: dict[str, Any], where: str, ctx: str) -> Rates:
    values = {key: _number(table, key, f"{where}: {ctx}", required=False) for key in _RATE_FIELDS}
    return Rates(**{key: Decimal(v) if v is not None else None for key, v in values.items()})


def _number(table: Mapping[str, Any], key: str, ctx: str, required: bool = False) -> Any:
    value = table.get(key)
    if value is None:
        if required:
            raise CatalogError(ctx, f"{key} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal) or value < 0:
        raise CatalogError(ctx, f"{key} must be a number >= 0, not {value!r}")
    return value


def _concurrency(fields: Mapping[str, Any], where: str, ctx: str) -> int | None:
    value = _positive_int(fields, "concurrency", where, ctx)
    if value is not None and value > MAX_CONCURRENCY:
        raise CatalogError(
            where,
            f"{ctx}.concurrency {value:,} is more than batchrun keeps in flight per model "
            f"({MAX_CONCURRENCY:,}, its connection pool's size): give {MAX_CONCURRENCY:,} or less",
        )
    return value


def _positive_int(
    table: Mapping[str, Any], key: str, where: str, ctx: str, required: bool = False
) -> int | None:
    value = table.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CatalogError(where, f"{ctx}.{key} must be a whole number > 0, not {value!r}")
    return value


def _whole(table: Mapping[str, Any], key: str, where: str, ctx: str) -> int | None:
    """A whole number >= 0, or None when absent."""
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CatalogError(where, f"{ctx}.{key} must be a whole number >= 0, not {value!r}")
    return value


def check_models(names: Sequence[str], catalog: Catalog, what: str) -> list[str]:
    """``names``, each known to the catalog and none twice (``what`` names the option in errors)."""
    for name in names:
        catalog.get(name)  # UnknownModelError lists the known models
    if len(set(names)) != len(names):
        raise ConfigError(f"{what} names a model twice: {', '.join(names)}")
    return list(names)

"""Before a run: pick the endpoint (MiniMax, or the simulator when there is no key) and set each
model's limits and the pools they share. Light to import: the commands that do not send requests
never load the SDK.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batchrun.api.endpoint import Endpoint
from batchrun.catalog import Catalog
from batchrun.config import MINIMAX_BASE_URL, Environment, check_base_url, check_key_for_host
from batchrun.run.limits import ModelLimitSettings, PoolSettings, default_concurrency

SIMULATOR_KEY = "batchrun-simulator"
ACCOUNT_POOL = "account"  # the pool --account-rpm / --account-tpm make
# The key of a batch's settings where ``submit --account-rpm/--account-tpm`` leaves the account's
# pool for the workers that run the batch.
ACCOUNT_SETTING = "account_limits"


@dataclass(frozen=True, kw_only=True)
class EndpointOptions:
    """Where to send requests, from options and the environment."""

    base_url: str | None = None
    simulate: bool = False
    sim_time_scale: float = 1.0
    sim_seed: int = 0
    sim_profile: str | None = None  # a simulator profile (batchrun.sim.settings.PROFILES)


@dataclass(frozen=True, kw_only=True)
class LimitOptions:
    """Limit overrides from the command line: ``*`` applies to every model."""

    rpm: Mapping[str, int]
    tpm: Mapping[str, int]
    concurrency: Mapping[str, int]
    # One pool over every model of the run (--account-rpm / --account-tpm): given, it replaces
    # the catalog's pools.
    account_rpm: int | None = None
    account_tpm: int | None = None
    # One of this many senders of one batch (run --processes): the catalog's pools are each
    # paced at this part of their limits, as the models' and the account's are divided.
    pool_part: int = 1

    @property
    def account(self) -> bool:
        """Whether the command line sets the account's pool."""
        return self.account_rpm is not None or self.account_tpm is not None


@contextlib.contextmanager
def open_endpoint(env: Environment, options: EndpointOptions) -> Iterator[Endpoint]:
    """MiniMax with the user's key, or a simulator started for this run."""
    if env.api_key and not options.simulate:
        base_url = real_base_url(env, options)
        check_key_for_host(env, base_url)
        yield Endpoint(base_url=base_url, api_key=env.api_key, simulated=False)
        return
    from batchrun.sim import SimSettings, simulator_process  # noqa: PLC0415 - only when used

    settings = SimSettings.from_profile(
        options.sim_profile, time_scale=options.sim_time_scale, seed=options.sim_seed
    )
    with simulator_process(settings) as sim:
        yield Endpoint(base_url=f"{sim.base_url}/anthropic", api_key=SIMULATOR_KEY, simulated=True)


def real_base_url(env: Environment, options: EndpointOptions) -> str:
    """Where a run with a key sends its requests: --base-url, ANTHROPIC_BASE_URL or MiniMax's."""
    if options.base_url:
        return check_base_url(options.base_url, "--base-url")
    if env.base_url:
        return check_base_url(env.base_url, "ANTHROPIC_BASE_URL")
    return MINIMAX_BASE_URL


def limit_settings(
    catalog: Catalog, models: Sequence[str], options: LimitOptions
) -> dict[str, ModelLimitSettings]:
    """Each model's limits and pools: the command line over the catalog (and the user's file)."""
    pools = run_pools(catalog, models, options)
    limits = {}
    for model in models:
        info = catalog.get(model)
        rpm = _pick(options.rpm, model, info.rpm)
        tpm = _pick(options.tpm, model, info.tpm)
        concurrency = _pick(options.concurrency, model, info.concurrency)
        limits[model] = ModelLimitSettings(
            rpm=rpm,
            tpm=tpm,
            concurrency=concurrency or default_concurrency(rpm),
            pools=tuple(pool for pool in pools if model in pool.models),
        )
    return limits


def split_limits(
    catalog: Catalog, models: Sequence[str], limits: LimitOptions, processes: int
) -> LimitOptions:
    """Every model's limits and every pool's (the account's, else the catalog's) divided by
    ``processes``: what each of that many senders paces itself by (``run --processes``)."""
    resolved = limit_settings(catalog, models, limits)
    rpm = {m: _process_part(s.rpm, processes) for m, s in resolved.items() if s.rpm}
    tpm = {m: _process_part(s.tpm, processes) for m, s in resolved.items() if s.tpm}
    concurrency = {m: math.ceil(s.concurrency / processes) for m, s in resolved.items()}
    return LimitOptions(
        rpm=rpm,
        tpm=tpm,
        concurrency=concurrency,
        account_rpm=_process_part(limits.account_rpm, processes) if limits.account_rpm else None,
        account_tpm=_process_part(limits.account_tpm, processes) if limits.account_tpm else None,
        pool_part=limits.pool_part * processes,
    )


def _process_part(value: float | None, processes: int) -> int:
    """One process's part of a limit: at least 1, so that each of them still sends."""
    return max(1, math.floor((value or 0) / processes))


def run_pools(
    catalog: Catalog, models: Sequence[str], options: LimitOptions
) -> tuple[PoolSettings, ...]:
    """The pools over the run's models: the account's from the command line over every model,
    else the catalog's pools that hold at least one of them (at ``pool_part`` of their
    limits)."""
    if options.account:
        account = PoolSettings(
            name=ACCOUNT_POOL,
            models=tuple(models),
            rpm=options.account_rpm,
            tpm=options.account_tpm,
            source="--account-rpm / --account-tpm",
        )
        return (account,)
    part = options.pool_part
    return tuple(
        PoolSettings(
            name=pool.name,
            models=pool.models,
            rpm=_process_part(pool.rpm, part) if pool.rpm and part > 1 else pool.rpm,
            tpm=_process_part(pool.tpm, part) if pool.tpm and part > 1 else pool.tpm,
            source=_part_source(pool.source, part),
        )
        for pool in catalog.pools.values()
        if set(pool.models) & set(models)
    )


def _part_source(source: str, part: int) -> str:
    """Where a pool's figures come from, and that each process paces at its part of them."""
    if part == 1:
        return source
    return ", ".join(filter(None, (source, f"1/{part} of it in each process")))


def pool_text(rpm: float | None, tpm: float | None) -> str:
    """A pool's figures for people: ``500 requests/min, 20,000,000 tokens/min``."""
    parts = [
        f"{_figure(rpm)} requests/min" if rpm else "",
        f"{_figure(tpm)} tokens/min" if tpm else "",
    ]
    return ", ".join(part for part in parts if part) or "no limit"


def _figure(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


def pool_lines(catalog: Catalog, models: Sequence[str], options: LimitOptions) -> list[str]:
    """One line per pool a run over ``models`` paces by, for the run's output."""
    return [
        f"Shared limit {pool.name!r}: {pool_text(pool.rpm, pool.tpm)} for "
        f"{', '.join(m for m in pool.models if m in models)} together ({pool.source})."
        for pool in run_pools(catalog, models, options)
    ]


def account_setting(options: LimitOptions) -> dict[str, int | None]:
    """The account's pool as ``submit`` keeps it in a batch's settings (ACCOUNT_SETTING)."""
    return {"rpm": options.account_rpm, "tpm": options.account_tpm}


def with_batch_account(options: LimitOptions, settings: Mapping[str, Any]) -> LimitOptions:
    """The options, with the account's pool the batch was submitted with when they set none."""
    stored = settings.get(ACCOUNT_SETTING)
    if options.account or not isinstance(stored, dict):
        return options
    return dataclasses.replace(
        options, account_rpm=_count(stored.get("rpm")), account_tpm=_count(stored.get("tpm"))
    )


def _count(value: object) -> int | None:
    """A positive whole number from stored JSON, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _pick(overrides: Mapping[str, int], model: str, default: int | None) -> int | None:
    return overrides.get(model, overrides.get("*", default))

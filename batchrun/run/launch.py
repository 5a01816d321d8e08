"""Before a run: pick the endpoint (MiniMax, or the simulator when there is no key) and set each
model's limits. Light to import: the commands that do not send requests never load the SDK.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from batchrun.api.endpoint import Endpoint
from batchrun.catalog import Catalog
from batchrun.config import MINIMAX_BASE_URL, Environment
from batchrun.run.limits import ModelLimitSettings, default_concurrency

SIMULATOR_KEY = "batchrun-simulator"


@dataclass(frozen=True, kw_only=True)
class EndpointOptions:
    """Where to send requests, from options and the environment."""

    base_url: str | None = None
    simulate: bool = False
    sim_time_scale: float = 1.0
    sim_seed: int = 0


@dataclass(frozen=True, kw_only=True)
class LimitOptions:
    """Limit overrides from the command line: ``*`` applies to every model."""

    rpm: Mapping[str, int]
    tpm: Mapping[str, int]
    concurrency: Mapping[str, int]


@contextlib.contextmanager
def open_endpoint(env: Environment, options: EndpointOptions) -> Iterator[Endpoint]:
    """MiniMax with the user's key, or a simulator started for this run."""
    if env.api_key and not options.simulate:
        base_url = options.base_url or env.base_url or MINIMAX_BASE_URL
        yield Endpoint(base_url=base_url.rstrip("/"), api_key=env.api_key, simulated=False)
        return
    from batchrun.sim import SimSettings, simulator_process  # noqa: PLC0415 - only when used

    settings = SimSettings(time_scale=options.sim_time_scale, seed=options.sim_seed)
    with simulator_process(settings) as sim:
        yield Endpoint(base_url=f"{sim.base_url}/anthropic", api_key=SIMULATOR_KEY, simulated=True)


def limit_settings(
    catalog: Catalog, models: Sequence[str], options: LimitOptions
) -> dict[str, ModelLimitSettings]:
    """Each model's limits: the command line over the catalog (and the user's catalog file)."""
    limits = {}
    for model in models:
        info = catalog.get(model)
        rpm = _pick(options.rpm, model, info.rpm)
        tpm = _pick(options.tpm, model, info.tpm)
        concurrency = _pick(options.concurrency, model, info.concurrency)
        limits[model] = ModelLimitSettings(
            rpm=rpm, tpm=tpm, concurrency=concurrency or default_concurrency(rpm)
        )
    return limits


def _pick(overrides: Mapping[str, int], model: str, default: int | None) -> int | None:
    return overrides.get(model, overrides.get("*", default))

"""The simulator's state and decisions apart from HTTP: auth, limits, faults, prompt cache."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from batchrun.catalog import Catalog
from batchrun.exceptions import SimulatorError
from batchrun.sim import errors
from batchrun.sim.cache import PromptCache
from batchrun.sim.errors import ApiFailure
from batchrun.sim.limits import ModelLimits, model_limits, per_window
from batchrun.sim.settings import SimSettings
from batchrun.sim.stats import SimStats

_FAULT_SALT = 0x5EED_FA17


class SimulatorCore:
    """Everything the simulator decides about a request before and after generating it."""

    def __init__(self, settings: SimSettings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.stats = SimStats()
        self._faults = random.Random(settings.seed ^ _FAULT_SALT)
        self._limits: dict[str, ModelLimits] = {}
        self._cache = PromptCache(settings)
        if settings.limits:
            for model in catalog.names():
                _check_window(model, self._rpm(model), settings.limit_window)

    def authorize(self, headers: Mapping[str, str]) -> None:
        """Refuse a request without a key, or with another key than the configured one."""
        key = headers.get("x-api-key")
        if key is None:
            bearer = headers.get("authorization", "")
            key = bearer[7:] if bearer.lower().startswith("bearer ") else None
        if not key:
            raise errors.unauthorized("no API key: send x-api-key or Authorization: Bearer")
        if self.settings.api_key is not None and key != self.settings.api_key:
            raise errors.unauthorized("invalid API key")

    def admit(self, model: str, input_tokens: int) -> None:
        """Count the request against its model's limits, or refuse it with a 429."""
        if not self.settings.limits:
            return
        limits = self._limits_for(model)
        refusal = limits.refusal(input_tokens)
        if refusal is not None:
            raise errors.rate_limited(model, refusal)
        limits.admit(input_tokens)

    def settle(self, model: str, output_tokens: int) -> None:
        """Count a finished reply's output tokens against its model's token limit."""
        if self.settings.limits:
            self._limits_for(model).add_output(output_tokens)

    def draw_fault(self, model: str) -> str | None:
        """Draw this request's injected fault: raises an error fault, returns drop/stall/None."""
        rates = self.settings.faults_for(model)
        draw = self._faults.random()
        for rate, failure in (
            (rates.overloaded, errors.overloaded),
            (rates.server_error, errors.server_error),
            (rates.balance, errors.insufficient_balance),
            (rates.auth, _refused_key),
        ):
            if draw < rate:
                raise failure()
            draw -= rate
        second = self._faults.random()
        if second < rates.drop:
            return "drop"
        if second < rates.drop + rates.stall:
            return "stall"
        return None

    def fault_point(self, length: int) -> int:
        """Where in a response of ``length`` chunks a drop or stall happens."""
        return self._faults.randrange(max(1, length))

    def cached_tokens(self, model: str, body: dict[str, Any]) -> tuple[int, int]:
        """(tokens written to, tokens read from) ``model``'s prompt cache for this request."""
        return self._cache.usage(model, body)

    def count_tokens_allowed(self, model: str) -> bool:
        """Whether count_tokens answers for this model (MiniMax documents it for M3 only)."""
        allowed = self.settings.count_tokens_models
        return allowed is None or model in allowed

    def _limits_for(self, model: str) -> ModelLimits:
        limits = self._limits.get(model)
        if limits is None:
            limits = model_limits(self._rpm(model), self._tpm(model), self.settings.limit_window)
            self._limits[model] = limits
        return limits

    def _rpm(self, model: str) -> int | None:
        return self.settings.rpm.get(model, self.settings.rpm.get("*", self.catalog.get(model).rpm))

    def _tpm(self, model: str) -> int | None:
        return self.settings.tpm.get(model, self.settings.tpm.get("*", self.catalog.get(model).tpm))


def _check_window(model: str, rpm: int | None, window: float) -> None:
    if rpm and per_window(rpm, window) < 1:
        raise SimulatorError(
            f"{model}: {rpm} requests per minute is less than one request per "
            f"{window:g}-second window; use --limit-window {60 / rpm:g} or longer"
        )


def _refused_key() -> ApiFailure:
    return errors.unauthorized("invalid API key")

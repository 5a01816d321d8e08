"""The simulator's state and decisions apart from HTTP: auth, limits, faults, prompt cache."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from batchrun.catalog import Catalog
from batchrun.exceptions import SimulatorError
from batchrun.sim import errors
from batchrun.sim.cache import PromptCache
from batchrun.sim.errors import ApiFailure
from batchrun.sim.limits import ModelLimits, Quota, model_limits, per_window
from batchrun.sim.settings import FaultRates, SimSettings
from batchrun.sim.stats import SimStats
from batchrun.sim.tokens import PromptPrefix
from batchrun.sim.validate import SimRequest

_FAULT_SALT = 0x5EED_FA17
_WORKER_SALT = 0x9E37_79B9


class SimulatorCore:
    """Everything the simulator decides about a request before and after generating it."""

    def __init__(self, settings: SimSettings, catalog: Catalog, *, worker: int = 0) -> None:
        """``worker``: which process of a simulator of several this is (sim/workers.py); each
        draws its faults from its own seeded sequence, worker 0 from that of a lone process."""
        self.settings = settings
        self.catalog = catalog
        self.stats = SimStats()
        self._faults = random.Random(settings.seed ^ _FAULT_SALT ^ (worker * _WORKER_SALT))
        self._limits: dict[str, ModelLimits] = {}
        self._cache = PromptCache(settings)
        self._account = model_limits(
            settings.account_rpm, settings.account_tpm, settings.limit_window
        )
        self._quota = (
            Quota(settings.quota_requests, settings.quota_window)
            if settings.quota_requests is not None
            else None
        )
        if settings.limits:
            for model in catalog.names():
                _check_window(model, self._rpm(model), settings.limit_window)
            _check_window("the account", settings.account_rpm, settings.limit_window)

    def authorize(self, headers: Mapping[str, str]) -> None:
        """Refuse a request whose key is missing, sent the wrong way, or not the configured one.

        MiniMax takes the key from ``Authorization: Bearer`` only (field evidence row 1);
        ``accept_x_api_key`` takes ``x-api-key`` as well, as MiniMax's documents say.
        """
        bearer = headers.get("authorization", "")
        key = bearer[7:].strip() if bearer.lower().startswith("bearer ") else ""
        x_api_key = headers.get("x-api-key", "")
        if not key and x_api_key and self.settings.accept_x_api_key:
            key = x_api_key
        if not key:
            if x_api_key and self.settings.x_api_key_status == 500:
                raise errors.system_error()  # as the mainland host answered
            raise errors.missing_bearer()
        if self.settings.api_key is not None and key != self.settings.api_key:
            raise errors.invalid_key()

    def admit(self, model: str, input_tokens: int) -> None:
        """Count the request against the quota and the limits, or refuse it.

        A used-up Token Plan quota answers C4's 429 (2056); a model's or the account's limit
        a 429 (1002). Only a request that passes all of them counts against any.
        """
        quota = self._quota
        if quota is not None and quota.used() >= quota.limit:
            raise errors.usage_limit(quota.limit, quota.limit, _iso_utc(quota.window_end()))
        if self.settings.limits:
            limits = self._limits_for(model)
            refusal = limits.refusal(input_tokens)
            if refusal is not None:
                raise errors.rate_limited(model, refusal)
            refusal = self._account.refusal(input_tokens)
            if refusal is not None:
                raise errors.account_rate_limited(refusal)
            limits.admit(input_tokens)
            self._account.admit(input_tokens)
        if quota is not None:
            quota.use()

    def settle(self, model: str, output_tokens: int) -> None:
        """Count a finished reply's output tokens against its model's and the account's limit."""
        if self.settings.limits:
            self._limits_for(model).add_output(output_tokens)
            self._account.add_output(output_tokens)

    def draw_fault(self, model: str) -> str | None:
        """Draw this request's injected fault.

        A refusal is raised as an ApiFailure; a mid-response fault is returned by name (drop,
        stall, endless, stream_error); None means the answer goes through whole.
        """
        rates = self.settings.faults_for(model)
        draw = self._faults.random()
        for rate, failure in self._refusals(rates):
            if draw < rate:
                raise failure()
            draw -= rate
        second = self._faults.random()
        for rate, name in (
            (rates.drop, "drop"),
            (rates.stall, "stall"),
            (rates.endless, "endless"),
            (rates.stream_error, "stream_error"),
        ):
            if second < rate:
                return name
            second -= rate
        return None

    def _refusals(self, rates: FaultRates) -> list[tuple[float, Callable[[], ApiFailure]]]:
        settings = self.settings
        return [
            (rates.overloaded, errors.overloaded),
            (rates.server_error, errors.server_error),
            (rates.balance, lambda: errors.insufficient_balance(settings.balance_status)),
            (rates.auth, errors.invalid_key),
            (rates.quota, self._quota_fault),
            (rates.system_error, errors.system_error),
            (
                rates.timeout,
                lambda: errors.request_timeout(settings.timeout_seconds * settings.time_scale),
            ),
        ]

    def _quota_fault(self) -> ApiFailure:
        reset = time.time() + self.settings.quota_reset_seconds
        return errors.usage_limit(0, 0, _iso_utc(reset))

    def fault_point(self, length: int, *, after_start: bool = False) -> int:
        """Where in a response of ``length`` chunks a fault happens.

        With ``after_start`` the point falls after the first chunk (message_start) when the
        response has more than one, and never past the last chunk's start.
        """
        if after_start and length > 1:
            return 1 + self._faults.randrange(length - 1)
        return self._faults.randrange(max(1, length))

    def cached_tokens(self, request: SimRequest) -> tuple[int, int]:
        """(tokens written to, tokens read from) its model's prompt cache for this request."""
        return self._cache.usage(request.model.name, request.body, request.input_tokens)

    def cache_prefixes(self, request: SimRequest) -> list[PromptPrefix]:
        """The prefixes of this request's prompt the cache looks at (a worker walks them)."""
        return self._cache.prefixes(request.model.name, request.body, request.input_tokens)

    def cache_usage(self, model: str, prefixes: list[PromptPrefix]) -> tuple[int, int]:
        """(tokens written, tokens read) for a prompt with these prefixes (the parent decides)."""
        return self._cache.usage_of(model, prefixes)

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


def _check_window(who: str, rpm: int | None, window: float) -> None:
    if rpm and per_window(rpm, window) < 1:
        raise SimulatorError(
            f"{who}: {rpm} requests per minute is less than one request per "
            f"{window:g}-second window; use --limit-window {60 / rpm:g} or longer"
        )


def _iso_utc(instant: float) -> str:
    """``instant`` (Unix seconds) as C4 writes it: ISO 8601 UTC, seconds, a trailing Z.

    Rounded up, so that a client waiting until then never comes back before the reset.
    """
    return datetime.fromtimestamp(math.ceil(instant), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

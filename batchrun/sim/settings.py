"""Settings of the MiniMax-compatible simulator, and parsers for their command-line forms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from batchrun.config import parse_per_model
from batchrun.exceptions import ConfigError, SimulatorError

FAULT_KINDS = (
    "529",
    "500",
    "balance",
    "401",
    "2056",
    "1033",
    "408",
    "drop",
    "stall",
    "endless",
    "stream_error",
)
QUIRKS = ("start_without_signature", "usage_on_stop", "stream_cache_read_zero")
MB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class FaultRates:
    """Probability of each injected fault per request, each in [0, 1].

    Two groups, drawn one after the other: the refusals (an error instead of an answer) add up to
    at most 1, and so do the faults in the middle of an answer (drop, stall, endless, stream_error).
    """

    # refusals: an error response instead of an answer
    overloaded: float = 0.0  # 529 overloaded_error
    server_error: float = 0.0  # 500 api_error (1000), retryable
    balance: float = 0.0  # insufficient balance (1008): 500, or 402 by balance_status
    auth: float = 0.0  # 401 authentication_error (1004): a refused key
    quota: float = 0.0  # 429 rate_limit_error (2056): the Token Plan's quota is used up
    system_error: float = 0.0  # 500 api_error (1033), retryable
    timeout: float = 0.0  # 408 api_error (1001) after timeout_seconds, retryable
    # faults in the middle of an answer
    drop: float = 0.0  # connection closed mid-response
    stall: float = 0.0  # no bytes for stall_seconds, then the response goes on
    endless: float = 0.0  # a stream that only pings after part of the answer, never ends
    stream_error: float = 0.0  # an SSE error event after part of the answer

    def __post_init__(self) -> None:
        for name, rate in vars(self).items():
            if not 0.0 <= rate <= 1.0:
                raise SimulatorError(f"fault rate {name}={rate} must be in [0, 1]")
        if self.total_before_response() > 1.0:
            raise SimulatorError(
                f"the refusal rates ({', '.join(REFUSAL_KINDS)}) add up to more than 1"
            )
        if self.total_during_response() > 1.0:
            raise SimulatorError(
                f"the mid-response rates ({', '.join(MID_RESPONSE_KINDS)}) add up to more than 1"
            )

    def total_before_response(self) -> float:
        """Probability that a request is refused outright by an injected error."""
        return self._total(REFUSAL_KINDS)

    def total_during_response(self) -> float:
        """Probability that an answered request goes wrong in the middle of its answer."""
        return self._total(MID_RESPONSE_KINDS)

    def _total(self, kinds: tuple[str, ...]) -> float:
        return float(sum(getattr(self, _FAULT_FIELDS[kind]) for kind in kinds))


_FAULT_FIELDS = {
    "529": "overloaded",
    "500": "server_error",
    "balance": "balance",
    "401": "auth",
    "2056": "quota",
    "1033": "system_error",
    "408": "timeout",
    "drop": "drop",
    "stall": "stall",
    "endless": "endless",
    "stream_error": "stream_error",
}
REFUSAL_KINDS = ("529", "500", "balance", "401", "2056", "1033", "408")
MID_RESPONSE_KINDS = ("drop", "stall", "endless", "stream_error")


@dataclass(frozen=True, kw_only=True)
class SimSettings:
    """Everything that shapes the simulator's behaviour; the CLI and the in-process form share it.

    Times are in seconds. ``time_scale`` multiplies every generated latency (0 = instant, 0.01 =
    100x faster than real); rate-limit windows and stalls are wall-clock seconds, not scaled.
    """

    host: str = "127.0.0.1"
    port: int = 0
    time_scale: float = 1.0
    seed: int = 0
    api_key: str | None = None
    limits: bool = True
    rpm: Mapping[str, int] = field(default_factory=dict)  # per model; default from the catalog
    tpm: Mapping[str, int] = field(default_factory=dict)
    limit_window: float = 60.0
    retry_after: float | None = None  # send a retry-after header on 429s when set
    faults: FaultRates = field(default_factory=FaultRates)
    model_faults: Mapping[str, FaultRates] = field(default_factory=dict)  # replaces `faults`
    stall_seconds: float = 30.0
    quirks: frozenset[str] = frozenset()
    count_tokens_models: frozenset[str] | None = None  # None: every model is counted
    # Assumptions, not MiniMax facts (MiniMax publishes none of these): see README.
    ttft_median: float = 0.8
    ttft_sigma: float = 0.35
    output_median: int = 300
    output_sigma: float = 0.6
    thinking_median: int = 120
    speed_jitter: float = 0.2
    fallback_speed_tps: float = 60.0  # for models whose speed MiniMax does not state
    tick: float = 0.01  # events due within one tick are written together
    timing_log: Path | None = None  # a JSONL file of true stream timings (sim/timing.py)
    processes: int = 1  # serving processes on one port (sim/workers.py); limits hold across them
    # --- Field behaviour: refusals, faults, limits, profiles (issue 15, "simfaults"). ---
    # Defaults follow the strongest field evidence (README, "MiniMax in the field"; the row
    # numbers are those of minimax-field-evidence.md).
    profile: str | None = None  # the profile these settings came from (see PROFILES)
    accept_x_api_key: bool = False  # row 1: MiniMax wants Authorization: Bearer
    x_api_key_status: int = 401  # 401 (C1) or 500 "system error (1033)" as on the mainland host
    context_windows: Mapping[str, int] = field(default_factory=dict)  # default: the catalog's
    # Row 3: max_tokens above a model's cap is refused; default: the catalog's max_output_tokens
    # (MiniMax-M3 524,288).
    max_output_tokens: Mapping[str, int] = field(default_factory=dict)
    accept_enabled_thinking: bool = False  # row 4 (disputed): M3 refuses thinking "enabled"
    balance_status: int = 500  # row 10: 500 (most reports) or 402 (one 2026-09 report)
    quota_reset_seconds: float = 5 * 3600.0  # a 2056 fault's reset: now + this (wall clock)
    quota_requests: int | None = None  # row 8: a real quota, N message requests per window
    quota_window: float = 5 * 3600.0  # wall seconds of one quota window
    timeout_seconds: float = 120.0  # row 9: a 408 comes after this, times time_scale
    ping_interval: float = 5.0  # wall seconds between the pings of an endless stream
    account_rpm: int | None = None  # row 11 (disputed): one pool for every model
    account_tpm: int | None = None
    max_body_bytes: int = 64 * MB  # MiniMax's documented limits (Anthropic API page)
    max_image_bytes: int = 10 * MB  # decoded base64 size
    max_video_bytes: int = 50 * MB

    # --- What the simulator answers (issue 15; rows of the field evidence page) -------------
    # Rates are per request, in [0, 1], drawn from the request's own seed (repeatable).
    think_leak_rate: float = 0.0  # row 5: reasoning sent as <think>...</think> inside the text
    empty_reply_rate: float = 0.0  # row 6: MiniMax-M3 without thinking answers content null
    tool_call_rate: float = 0.0  # row 16: a tool is called under tool_choice auto (or absent)
    passive_cache: bool = True  # row 7: prompts of cache_min_tokens or more cached by prefix
    cache_min_tokens: int = 512
    cache_mark_min_tokens: int = 600  # cache_control marks take effect from about this size
    cache_ttl: float = 300.0  # seconds of simulated time; refreshed on every hit
    passive_cache_writes: bool = False  # assumption: passive writes are not reported as creation
    passive_only_models: frozenset[str] = frozenset({"MiniMax-M3"})  # ignore marks, no creation
    cache_max_entries: int = 100_000  # per model, least recently used evicted first

    def __post_init__(self) -> None:
        # Only the settings of issue 15 are checked here; the others are checked where used.
        if self.balance_status not in (500, 402):
            raise SimulatorError(f"balance_status must be 500 or 402, not {self.balance_status}")
        if self.x_api_key_status not in (401, 500):
            raise SimulatorError(
                f"x_api_key_status must be 401 or 500, not {self.x_api_key_status}"
            )
        self._check_ranges()
        if self.processes < 1:
            raise SimulatorError(f"processes must be at least 1, not {self.processes}")

    def _check_ranges(self) -> None:
        for name in ("quota_requests", "account_rpm", "account_tpm"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SimulatorError(f"{name} must be at least 1 (or unset), not {value}")
        for name in ("quota_window", "ping_interval"):
            if getattr(self, name) <= 0:
                raise SimulatorError(f"{name} must be more than 0 seconds")
        for name in ("think_leak_rate", "empty_reply_rate", "tool_call_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SimulatorError(f"{name} must be in [0, 1], not {getattr(self, name)}")
        for name in ("cache_min_tokens", "cache_mark_min_tokens", "cache_max_entries"):
            if getattr(self, name) < 1:
                raise SimulatorError(f"{name} must be at least 1, not {getattr(self, name)}")

    def faults_for(self, model: str) -> FaultRates:
        """The fault rates that apply to requests for ``model``."""
        return self.model_faults.get(model, self.faults)

    @classmethod
    def from_profile(cls, name: str | None, **explicit: Any) -> SimSettings:
        """Settings of profile ``name`` (None: the defaults), with ``explicit`` values winning."""
        return cls(**{**profile_settings(name), **explicit, "profile": name})


# --- Profiles (issue 15): named sets of SimSettings overrides; explicit settings win. ---

# What MiniMax's documents promise: x-api-key works, M3 takes thinking "enabled".
DOCS_PROFILE: dict[str, Any] = {
    "accept_x_api_key": True,
    "accept_enabled_thinking": True,
}

# The field defaults (already SimSettings' defaults) plus realistic random faults. Chosen, not
# measured: MiniMax publishes no failure rates. Stalls and 408s are short so that a test run at
# a small time scale stays quick. The content helper adds its field rates here too.
FIELD_PROFILE: dict[str, Any] = {
    "faults": FaultRates(
        overloaded=0.02,
        server_error=0.01,
        system_error=0.005,
        timeout=0.002,
        drop=0.005,
        stall=0.002,
        endless=0.002,
        stream_error=0.005,
    ),
    "stall_seconds": 2.0,
    "timeout_seconds": 120.0,  # simulated: 1.2 wall seconds at time scale 0.01
    "ping_interval": 1.0,
    # what the simulator answers ("simcontent"; passive caching is on by default already)
    "think_leak_rate": 0.05,
    "empty_reply_rate": 0.01,
    "tool_call_rate": 0.5,
}

PROFILES: dict[str, dict[str, Any]] = {"docs": DOCS_PROFILE, "field": FIELD_PROFILE}


def profile_settings(name: str | None) -> dict[str, Any]:
    """The SimSettings overrides of profile ``name``; None is the default (no overrides)."""
    if name is None:
        return {}
    try:
        overrides = PROFILES[name]
    except KeyError:
        raise SimulatorError(
            f"unknown profile {name!r}; known: {', '.join(PROFILES)} (or none for the defaults)"
        ) from None
    known = {f.name for f in fields(SimSettings)}
    unknown = set(overrides) - known
    if unknown:  # a programming error in PROFILES, said plainly
        raise SimulatorError(f"profile {name!r} sets unknown settings {sorted(unknown)}")
    return dict(overrides)


def parse_faults(spec: str) -> tuple[FaultRates, dict[str, FaultRates]]:
    """Parse ``529=0.2,500=0.05,MiniMax-M2:401=1`` into global and per-model fault rates.

    A model named in the spec gets only the rates given for it, not the global ones as well.
    """
    plain: dict[str, float] = {}
    scoped: dict[str, dict[str, float]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        model, colon, kind = key.rpartition(":")
        if not sep or kind not in _FAULT_FIELDS:
            raise SimulatorError(
                f"bad fault {item!r}: use KIND=RATE or MODEL:KIND=RATE, "
                f"KIND one of {', '.join(FAULT_KINDS)}, for example 529=0.2,drop=0.05"
            )
        rate = _rate(item, value)
        (scoped.setdefault(model, {}) if colon else plain)[_FAULT_FIELDS[kind]] = rate
    base = _fault_rates(plain, spec)
    per_model = {model: _fault_rates(rates, spec) for model, rates in scoped.items()}
    return base, per_model


def _rate(item: str, value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise SimulatorError(f"bad fault {item!r}: the rate must be a number in [0, 1]") from None
    if not 0.0 <= rate <= 1.0:
        raise SimulatorError(f"bad fault {item!r}: the rate must be in [0, 1]")
    return rate


def _fault_rates(values: dict[str, float], spec: str) -> FaultRates:
    try:
        return FaultRates(**values)
    except SimulatorError as exc:
        raise SimulatorError(f"faults {spec!r}: {exc}") from None


def parse_quirks(spec: str | None) -> frozenset[str]:
    """Parse ``--quirks``: empty or ``all`` turns every quirk on, else a comma-separated list."""
    if spec is None:
        return frozenset()
    names = {part.strip().replace("-", "_") for part in spec.split(",") if part.strip()}
    if not names or names == {"all"}:
        return frozenset(QUIRKS)
    unknown = names - set(QUIRKS)
    if unknown:
        raise SimulatorError(
            f"unknown quirk(s) {', '.join(sorted(unknown))}; known: {', '.join(QUIRKS)}"
        )
    return frozenset(names)


def parse_model_limits(spec: str | None, what: str) -> dict[str, int]:
    """Parse ``MODEL=N,MODEL=N`` or a bare ``N`` (every model) for --rpm / --tpm."""
    try:
        return parse_per_model(spec, what)
    except ConfigError as exc:
        raise SimulatorError(str(exc)) from None


def format_faults(base: FaultRates, per_model: Mapping[str, FaultRates]) -> str:
    """The ``--faults`` text that parse_faults turns back into exactly these rates."""
    items = _fault_items("", base)
    for model, rates in per_model.items():
        items += _fault_items(f"{model}:", rates) or [f"{model}:529=0"]
    return ",".join(items)


def _fault_items(prefix: str, rates: FaultRates) -> list[str]:
    return [
        f"{prefix}{kind}={getattr(rates, name)!r}"
        for kind, name in _FAULT_FIELDS.items()
        if getattr(rates, name)
    ]


def format_model_limits(limits: Mapping[str, int]) -> str:
    """The ``--rpm`` / ``--tpm`` text that parse_model_limits turns back into these limits."""
    return ",".join(str(n) if model == "*" else f"{model}={n}" for model, n in limits.items())

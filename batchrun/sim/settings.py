"""Settings of the MiniMax-compatible simulator, and parsers for their command-line forms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from batchrun.config import parse_per_model
from batchrun.exceptions import ConfigError, SimulatorError

FAULT_KINDS = ("529", "500", "balance", "401", "drop", "stall")
QUIRKS = ("start_without_signature", "usage_on_stop", "stream_cache_read_zero")


@dataclass(frozen=True, kw_only=True)
class FaultRates:
    """Probability of each injected fault per request, each in [0, 1]."""

    overloaded: float = 0.0  # 529 overloaded_error
    server_error: float = 0.0  # 500 api_error (1000), retryable
    balance: float = 0.0  # 500 api_error (1008) insufficient balance
    auth: float = 0.0  # 401 authentication_error (1004): a refused key
    drop: float = 0.0  # connection closed mid-response
    stall: float = 0.0  # no bytes for stall_seconds, then the response goes on

    def __post_init__(self) -> None:
        for name, rate in vars(self).items():
            if not 0.0 <= rate <= 1.0:
                raise SimulatorError(f"fault rate {name}={rate} must be in [0, 1]")
        if self.total_before_response() > 1.0:
            raise SimulatorError("the 529, 500, balance and 401 rates add up to more than 1")
        if self.drop + self.stall > 1.0:
            raise SimulatorError("the drop and stall rates add up to more than 1")

    def total_before_response(self) -> float:
        """Probability that a request is refused outright by an injected error."""
        return self.overloaded + self.server_error + self.balance + self.auth


_FAULT_FIELDS = {
    "529": "overloaded",
    "500": "server_error",
    "balance": "balance",
    "401": "auth",
    "drop": "drop",
    "stall": "stall",
}


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

    def faults_for(self, model: str) -> FaultRates:
        """The fault rates that apply to requests for ``model``."""
        return self.model_faults.get(model, self.faults)


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

"""Settings from the environment and option strings: the only module that reads ``os.environ``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from batchrun.exceptions import ConfigError

MINIMAX_BASE_URL = "https://api.minimax.io/anthropic"
MINIMAX_HOSTS = ("minimax.io", "minimaxi.com")  # MiniMax's global and mainland domains
ANTHROPIC_KEY_PREFIX = "sk-ant-"
KEY_VARIABLES = ("MINIMAX_API_KEY", "ANTHROPIC_API_KEY")
# The judge's default max_tokens: room for a thinking model to think, then reply. Here, not in
# batchrun.grading.judge, so that ``batchrun grade`` can show it without importing the judge.
JUDGE_MAX_TOKENS = 2048


@dataclass(frozen=True, kw_only=True)
class Environment:
    """What batchrun takes from the environment."""

    api_key: str | None = field(repr=False)
    key_variable: str | None
    base_url: str | None
    db: str | None
    catalog: str | None
    budgets: str | None = None  # BATCHRUN_BUDGETS: the period budgets file (batchrun.budgets)


def read_environment(env: Mapping[str, str] | None = None) -> Environment:
    """The API key (MINIMAX_API_KEY, else ANTHROPIC_API_KEY), base URL, database and catalog."""
    env = os.environ if env is None else env
    variable = next((name for name in KEY_VARIABLES if env.get(name, "").strip()), None)
    return Environment(
        api_key=env[variable].strip() if variable else None,
        key_variable=variable,
        base_url=env.get("ANTHROPIC_BASE_URL") or None,
        db=env.get("BATCHRUN_DB") or None,
        catalog=env.get("BATCHRUN_CATALOG") or None,
        budgets=env.get("BATCHRUN_BUDGETS") or None,
    )


def check_base_url(url: str, source: str) -> str:
    """``url`` (from ``source``: --base-url or ANTHROPIC_BASE_URL) if it is an http(s) URL
    without credentials; a clear error that never repeats them otherwise."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ConfigError(
            f"{source} is not a usable URL: give one such as {MINIMAX_BASE_URL}"
        ) from None
    if "@" in parts.netloc:
        host = parts.netloc.rpartition("@")[2]
        raise ConfigError(
            f"{source} holds a user name or password (…@{host}), which batchrun refuses so that "
            "it is never stored or shown: give the URL without them and put the API key in "
            "MINIMAX_API_KEY"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{source} must be an http:// or https:// URL with a host, such as {MINIMAX_BASE_URL}"
        )
    return url.strip().rstrip("/")


def check_key_for_host(env: Environment, base_url: str) -> None:
    """Refuse to send an Anthropic key (``sk-ant-...``) to MiniMax: it cannot work there, and
    the key would leave for a host it was never meant for."""
    key = env.api_key or ""
    host = (urlsplit(base_url).hostname or "").lower()
    to_minimax = any(host == name or host.endswith("." + name) for name in MINIMAX_HOSTS)
    if key.startswith(ANTHROPIC_KEY_PREFIX) and to_minimax:
        raise ConfigError(
            f"{env.key_variable} holds an Anthropic key (sk-ant-…), and MiniMax does not accept "
            f"Anthropic keys: nothing was sent to {host}. Set MINIMAX_API_KEY to your MiniMax "
            "key (batchrun reads it before ANTHROPIC_API_KEY)"
        )


def parse_per_model(spec: str | None, what: str) -> dict[str, int]:
    """Parse ``N`` (every model, key ``*``) or ``MODEL=N,MODEL=N`` for --rpm, --tpm and friends."""
    if not spec:
        return {}
    limits: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        model, sep, value = item.rpartition("=")
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number <= 0:
            raise ConfigError(f"bad {what} {item!r}: use N or MODEL=N with N a whole number > 0")
        limits[model if sep else "*"] = number
    return limits


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, what: str) -> float:
    """Seconds from ``900s``, ``15m``, ``1h`` or a bare number of seconds (0 allowed)."""
    spec = text.strip().lower()
    scale = _DURATION_UNITS.get(spec[-1:], 1.0) if spec else 1.0
    number = spec[:-1] if spec[-1:] in _DURATION_UNITS else spec
    try:
        seconds = float(number) * scale
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):  # also refuses nan
        raise ConfigError(
            f"bad {what} {text!r}: use seconds (900 or 900s), minutes (15m) or hours (1h); "
            "0 never waits"
        )
    return seconds


def child_environment(**overrides: str) -> dict[str, str]:
    """This process's environment with some variables set: for a program batchrun starts."""
    return {**os.environ, **overrides}

"""Options shared by several commands, declared once."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from batchrun.api.endpoint import Deadlines
from batchrun.catalog import MAX_CONCURRENCY, Catalog, load_catalog
from batchrun.config import parse_duration, parse_per_model, read_environment
from batchrun.exceptions import ConfigError
from batchrun.run.launch import EndpointOptions, LimitOptions
from batchrun.run.retry import RetryPolicy

if TYPE_CHECKING:
    from batchrun.store import Store

# The defaults of --max-attempts, --idle-timeout and --timeout: the retry policy's and deadlines'.
MAX_ATTEMPTS = RetryPolicy.max_attempts
IDLE_TIMEOUT = Deadlines.idle
TIMEOUT = Deadlines.total
# The most requests in flight --concurrency allows per model: the client's connection pool holds
# at most this many connections (batchrun.run.execute), so more slots would only wait for one.

Db = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database: a SQLite file path or a URL such as postgresql://user@host/db. "
        "Default: $BATCHRUN_DB, else batchrun.db in this directory.",
        show_default=False,
    ),
]
CatalogFile = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        help="Your own catalog TOML file (prices, limits) on top of the built-in one. "
        "Default: $BATCHRUN_CATALOG.",
        dir_okay=False,
        show_default=False,
    ),
]
BaseUrl = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        help="API base URL. Default: $ANTHROPIC_BASE_URL, else https://api.minimax.io/anthropic.",
        show_default=False,
    ),
]
Concurrency = Annotated[
    str | None,
    typer.Option(
        "--concurrency",
        help="Requests in flight per model: N for every model, or MODEL=N,MODEL=N, at most "
        f"{MAX_CONCURRENCY:,}; never more than the model has requests left. "
        "Default: enough to hold the model's RPM.",
        show_default=False,
    ),
]
Rpm = Annotated[
    str | None,
    typer.Option(
        "--rpm",
        help="Requests per minute per model: N or MODEL=N,... Default: the catalog's limits.",
        show_default=False,
    ),
]
Tpm = Annotated[
    str | None,
    typer.Option(
        "--tpm",
        help="Tokens per minute (input + max_tokens) per model: N or MODEL=N,... "
        "Default: the catalog's limits.",
        show_default=False,
    ),
]
# The account's pool (issue 15, evidence row 11): limits all the run's models share.
AccountRpm = Annotated[
    int | None,
    typer.Option(
        "--account-rpm",
        min=1,
        help="Requests per minute for all the run's models together: one pool, as when your "
        "account's limit is shared by every model (each model also keeps its own RPM). "
        "Replaces the catalog's \\[pools]. Default: the catalog's pools; the built-in catalog has "
        "none, as MiniMax's guide gives each model its own limits.",
        show_default=False,
    ),
]
AccountTpm = Annotated[
    int | None,
    typer.Option(
        "--account-tpm",
        min=1,
        help="Tokens per minute (input + max_tokens) for all the run's models together, as "
        "--account-rpm does for requests.",
        show_default=False,
    ),
]
Simulate = Annotated[
    bool,
    typer.Option(
        "--simulate", help="Use the built-in MiniMax simulator even when an API key is set."
    ),
]
SimTimeScale = Annotated[
    float,
    typer.Option(
        "--sim-time-scale",
        help="Speed of the simulator: 1 is MiniMax's real pace, 0.1 ten times faster, 0 instant.",
    ),
]
SimProfile = Annotated[
    str | None,
    typer.Option(
        "--sim-profile",
        help="How the built-in simulator behaves: 'field' adds what MiniMax was seen to do "
        "at realistic rates (faults, reasoning leaked as <think>, empty replies); 'docs' what "
        "its documents say. Default: the field behaviour without random faults. See "
        "`batchrun sim --help`.",
        show_default=False,
    ),
]
MaxAttempts = Annotated[
    int, typer.Option("--max-attempts", min=1, help="Attempts per request before giving up.")
]
IdleTimeout = Annotated[
    float,
    typer.Option(
        "--idle-timeout",
        help="Seconds without an event (pings do not count) before a stream counts as stalled.",
    ),
]
Timeout = Annotated[
    float, typer.Option("--timeout", help="Seconds one call may take in all before it is retried.")
]

# --quota-wait: how long a model may pause for its plan's quota (MiniMax 2056) to renew.
QUOTA_WAIT = "15m"
QuotaWait = Annotated[
    str,
    typer.Option(
        "--quota-wait",
        metavar="DURATION",
        help="When MiniMax says a model's plan quota is used up (2056) and renews within this "
        "long, that model waits for it and carries on (its requests keep their attempts); "
        "beyond it, or with no renewal time, the model stops and its requests stay pending "
        "for a resume. Seconds (900 or 900s), minutes (15m) or hours (1h); 0 never waits.",
    ),
]


# Closed by close_stores when the command ends (batchrun.cli.main): their engines sit in
# reference cycles, which the exit no longer collects.
_OPENED: list[Store] = []


def open_store(db: str | None) -> Store:
    """The store named by --db or $BATCHRUN_DB, migrated to the current schema."""
    from batchrun.store import Store, database_url  # noqa: PLC0415 - loaded only when used

    store = Store(database_url(db or read_environment().db))
    _OPENED.append(store)
    return store


def close_stores() -> None:
    """Close the stores the command opened (their connections, and SQLite's WAL with them)."""
    while _OPENED:
        _OPENED.pop().close()


def open_catalog(path: Path | None) -> Catalog:
    """The catalog with the user's file from --catalog or $BATCHRUN_CATALOG applied."""
    if path is None:
        env_path = read_environment().catalog
        path = Path(env_path) if env_path else None
    return load_catalog(path)


MaxCost = Annotated[
    str | None,
    typer.Option(
        "--max-cost",
        help="Hard budget in USD for this batch: a request is sent only if its worst case "
        "(input plus max_tokens) still fits. Resume keeps the batch's cap unless you give a "
        "new one.",
        show_default=False,
    ),
]


Yes = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation before sending.")
]
ConfirmAbove = Annotated[
    str,
    typer.Option(
        "--confirm-above",
        help="On a terminal, ask before sending when the estimate's upper bound passes this "
        "many USD.",
    ),
]


# The options that turn a job file into a batch (``run`` and ``submit``).
JobFile = Annotated[Path, typer.Argument(help="The JSONL job file.", show_default=False)]
FanOut = Annotated[
    str | None,
    typer.Option(
        "--models",
        help="Comma-separated models: every job goes to each. "
        "Without it, each line's own model is used.",
        show_default=False,
    ),
]
BatchName = Annotated[
    str | None,
    typer.Option(
        "--name",
        help="A name for the batch (default: the file name and the time). A name no batch "
        "has starts a new batch of the file, even if the file has one already; the name of this "
        "file's batch (same models) continues it; another batch's name is refused.",
        show_default=False,
    ),
]
MaxTokens = Annotated[
    int, typer.Option("--max-tokens", min=1, help="max_tokens for lines that give none.")
]
Strict = Annotated[
    bool, typer.Option("--strict", help="Send nothing if any line of the file is invalid.")
]
NoPrecheck = Annotated[
    bool, typer.Option("--no-precheck", help="Skip count_tokens; estimate input tokens.")
]


@dataclass(frozen=True, kw_only=True)
class Connection:
    """The options of the commands that send requests (run, resume, submit, worker, grade)."""

    db: str | None
    catalog: Path | None
    endpoint: EndpointOptions
    limits: LimitOptions
    deadlines: Deadlines
    retry: RetryPolicy
    precheck: bool
    max_cost_nanos: int | None = None
    confirm_above_nanos: int | None = None  # None: never ask (--yes, or not a terminal)
    yes: bool = False  # --yes: send without asking, even a batch whose estimate was declined


def connection(
    *,
    db: str | None = None,
    catalog: Path | None = None,
    base_url: str | None = None,
    concurrency: str | None = None,
    rpm: str | None = None,
    tpm: str | None = None,
    account_rpm: int | None = None,
    account_tpm: int | None = None,
    simulate: bool = False,
    sim_time_scale: float = 1.0,
    sim_profile: str | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    idle_timeout: float = IDLE_TIMEOUT,
    timeout: float = TIMEOUT,
    quota_wait: str = QUOTA_WAIT,
    precheck: bool = True,
    max_cost_nanos: int | None = None,
    confirm_above_nanos: int | None = None,
    yes: bool = False,
) -> Connection:
    """The sending options from their command-line values, checked."""
    check_seconds(sim_time_scale, "--sim-time-scale", allow_zero=True)
    check_seconds(timeout, "--timeout")
    check_seconds(idle_timeout, "--idle-timeout")
    check_sim_profile(sim_profile)
    limits = _limit_options(catalog, rpm, tpm, concurrency, account_rpm, account_tpm)
    return Connection(
        db=db,
        catalog=catalog,
        endpoint=EndpointOptions(
            base_url=base_url,
            simulate=simulate,
            sim_time_scale=sim_time_scale,
            sim_profile=sim_profile,
        ),
        limits=limits,
        deadlines=Deadlines(idle=idle_timeout, total=timeout),
        retry=RetryPolicy(
            max_attempts=max_attempts, quota_wait=parse_duration(quota_wait, "--quota-wait")
        ),
        precheck=precheck,
        max_cost_nanos=max_cost_nanos,
        confirm_above_nanos=confirm_above_nanos,
        yes=yes,
    )


def check_sim_profile(name: str | None) -> None:
    """Refuse an unknown --sim-profile before anything starts."""
    from batchrun.sim.settings import PROFILES  # noqa: PLC0415 - light, and only when given

    if name is not None and name not in PROFILES:
        raise ConfigError(
            f"unknown --sim-profile {name!r}; use one of {', '.join(PROFILES)}, or leave it out "
            "for the field behaviour without random faults"
        )


def check_seconds(value: float, option: str, *, allow_zero: bool = False) -> None:
    """Refuse a time that is negative, not a number (nan) or infinite (or 0 unless allowed)."""
    if math.isfinite(value) and (value > 0 or (allow_zero and value == 0)):
        return
    least = "0 or more" if allow_zero else "more than 0"
    raise ConfigError(f"{option} must be a number of seconds {least}, such as 30, not {value}")


def _limit_options(
    catalog: Path | None,
    rpm: str | None,
    tpm: str | None,
    concurrency: str | None,
    account_rpm: int | None,
    account_tpm: int | None,
) -> LimitOptions:
    """--rpm, --tpm and --concurrency parsed, each model they name known to the catalog."""
    limits = LimitOptions(
        rpm=parse_per_model(rpm, "--rpm"),
        tpm=parse_per_model(tpm, "--tpm"),
        concurrency=parse_per_model(concurrency, "--concurrency"),
        account_rpm=account_rpm,
        account_tpm=account_tpm,
    )
    for option, values in (
        ("--rpm", limits.rpm),
        ("--tpm", limits.tpm),
        ("--concurrency", limits.concurrency),
    ):
        _check_limit_models(values, option, catalog)
    _check_concurrency(limits.concurrency)
    return limits


def _check_limit_models(values: Mapping[str, int], option: str, catalog: Path | None) -> None:
    """A model named in MODEL=N must be one the catalog knows (it lists them otherwise)."""
    named = [model for model in values if model != "*"]
    known = open_catalog(catalog).names() if named else []
    for model in named:
        if model not in known:
            raise ConfigError(
                f"{option} names an unknown model {model!r}; known models: {', '.join(known)} "
                f"(or give N alone for every model)"
            )


def _check_concurrency(values: Mapping[str, int]) -> None:
    for model, value in values.items():
        if value > MAX_CONCURRENCY:
            what = "" if model == "*" else f" for {model}"
            raise ConfigError(
                f"--concurrency {value:,}{what} is more than the most batchrun keeps in flight "
                f"per model, {MAX_CONCURRENCY:,} (its connection pool's size); give "
                f"{MAX_CONCURRENCY:,} or less, or leave it out to fit each model's RPM"
            )

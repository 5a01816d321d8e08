"""``batchrun sim``: serve the MiniMax-compatible simulator on a loopback port.

It lives beside the simulator, not in batchrun.cli, so that a simulator process imports only what
it needs (not the SDK, the store or polars) and starts in a fraction of a second.
The server (uvicorn, asyncio) is imported when the command runs, not when ``batchrun`` registers
it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer

from batchrun.exceptions import SimulatorError

if TYPE_CHECKING:
    from batchrun.sim.host import WorkerRole
from batchrun.sim.settings import (
    MB,
    SimSettings,
    parse_faults,
    parse_model_limits,
    parse_quirks,
    profile_settings,
)


def sim_command(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="Address to bind. Keep 127.0.0.1 unless you must.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on; 0 picks a free one.")
    ] = 8765,
    time_scale: Annotated[
        float, typer.Option(help="Multiplies every latency: 0 = instant, 0.01 = 100x faster.")
    ] = 1.0,
    seed: Annotated[
        int, typer.Option(help="Makes content, lengths, timings and faults repeat.")
    ] = 0,
    api_key: Annotated[
        str | None,
        typer.Option(help="Accept only this key (default: any non-empty key).", show_default=False),
    ] = None,
    no_limits: Annotated[bool, typer.Option("--no-limits", help="Turn rate limits off.")] = False,
    rpm: Annotated[
        str | None,
        typer.Option(
            help="Requests per minute: N for every model, or MODEL=N,MODEL=N. "
            "Default: the catalog's limits."
        ),
    ] = None,
    tpm: Annotated[
        str | None, typer.Option(help="Tokens per minute, in the same form as --rpm.")
    ] = None,
    limit_window: Annotated[
        float, typer.Option(help="Seconds of the sliding window the limits are measured over.")
    ] = 60.0,
    retry_after: Annotated[
        float | None,
        typer.Option(help="Send this retry-after (seconds) with every 429 (MiniMax sends none)."),
    ] = None,
    faults: Annotated[
        str,
        typer.Option(
            help="Injected faults, KIND=RATE,...; MODEL:KIND=RATE for one model only. "
            "Refusals: 529 (overloaded), 500 (unknown error 1000), balance (insufficient "
            "balance 1008), 401 (refused key), 2056 (Token Plan quota used up), 1033 (system "
            "error), 408 (request timeout after --timeout-seconds). Mid-answer: drop "
            "(connection cut), stall (silent for --stall-seconds), endless (a stream that "
            "only pings, never ends), stream_error (an SSE error event after part of the "
            "answer). Each group adds up to at most 1. Example: 529=0.02,1033=0.005,drop=0.01."
        ),
    ] = "",
    stall_seconds: Annotated[
        float, typer.Option(help="How long a stalled response sends nothing.")
    ] = 30.0,
    quirks: Annotated[
        str | None,
        typer.Option(
            help="MiniMax's reported stream quirks: 'all', or some of "
            "start_without_signature, usage_on_stop, stream_cache_read_zero."
        ),
    ] = None,
    ttft: Annotated[
        float, typer.Option(help="Median time to first token in seconds, before --time-scale.")
    ] = 0.8,
    output_tokens: Annotated[
        int,
        typer.Option(help="Median length of an answer in tokens (capped by max_tokens)."),
    ] = 300,
    count_tokens_models: Annotated[
        str | None,
        typer.Option(
            help="Answer count_tokens only for these models (comma-separated); "
            "others get a 400. Default: every model."
        ),
    ] = None,
    tick: Annotated[
        float,
        typer.Option(
            help="Seconds of wall clock between two writes of one stream: tokens due within "
            "a tick are written together."
        ),
    ] = 0.01,
    timing_log: Annotated[
        Path | None,
        typer.Option(
            help="Write when each stream's first content token and last byte really went out "
            "(JSON lines: request_id, message_id, model, first_token, last_byte; epoch seconds) "
            "to this new file, complete when the simulator stops. Default: no log.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    # --- Field behaviour: refusals, faults, limits, profiles (issue 15, "simfaults") ---
    profile: Annotated[
        str | None,
        typer.Option(
            help="Start from a named set of settings; options given here still win. "
            "'field': what MiniMax was seen to do, with realistic random faults (529 2%, "
            "500 1%, 1033 0.5%, 408 0.2%, drop 0.5%, stall 0.2% for 2 s, endless 0.2%, "
            "stream_error 0.5%; reasoning leaked as <think> 5%, empty M3 replies 1%, a tool "
            "called under tool_choice auto 50%). 'docs': what MiniMax's documents say "
            "(x-api-key accepted, M3 takes thinking 'enabled'). Default: the field behaviour "
            "without random faults.",
            show_default=False,
        ),
    ] = None,
    accept_x_api_key: Annotated[
        bool,
        typer.Option(
            "--accept-x-api-key/--no-accept-x-api-key",
            help="Also accept the key as an x-api-key header, as MiniMax's documents say. "
            "Default: only 'Authorization: Bearer KEY' works, as in the field; an "
            "x-api-key-only request gets a 401 (1004).",
        ),
    ] = False,
    x_api_key_status: Annotated[
        int,
        typer.Option(
            help="How an x-api-key-only request is refused: 401 (login fail, 1004) or 500 "
            "(system error 1033, as MiniMax's mainland host answered).",
        ),
    ] = 401,
    context_window: Annotated[
        str | None,
        typer.Option(
            help="The context window served, MODEL=N,MODEL=N or N for every model; input "
            "plus max_tokens over it gets a 400 (2013). Default: the catalog's windows.",
            show_default=False,
        ),
    ] = None,
    max_output_tokens: Annotated[
        str,
        typer.Option(
            help="Largest max_tokens accepted, MODEL=N,...; more gets a 400 (2013). "
            "Default: the catalog's output caps (MiniMax-M3: 524288); other models are "
            "capped only by the context window.",
        ),
    ] = "",
    accept_enabled_thinking: Annotated[
        bool,
        typer.Option(
            "--accept-enabled-thinking/--no-accept-enabled-thinking",
            help='Let MiniMax-M3 take thinking {"type": "enabled"} (one live test did). '
            "Default: refused with a 400 (2013), as most reports say; M2.x take it always.",
        ),
    ] = False,
    balance_status: Annotated[
        int,
        typer.Option(
            help="HTTP status of an insufficient balance (1008): 500 api_error (most "
            "reports) or 402 insufficient_balance_error (one 2026 report).",
        ),
    ] = 500,
    quota_requests: Annotated[
        int | None,
        typer.Option(
            help="A Token Plan quota: this many message requests per --quota-window for the "
            "whole account, then 429 (2056) naming when it resets. Default: no quota.",
            min=1,
            show_default=False,
        ),
    ] = None,
    quota_window: Annotated[
        float,
        typer.Option(help="Wall-clock seconds of one quota window (MiniMax's: 5 hours)."),
    ] = 5 * 3600.0,
    quota_reset_seconds: Annotated[
        float,
        typer.Option(help="A random 2056 fault says the quota resets this many seconds on."),
    ] = 5 * 3600.0,
    timeout_seconds: Annotated[
        float,
        typer.Option(
            help="A 408 fault answers after this many seconds, times --time-scale "
            "(MiniMax: about 120)."
        ),
    ] = 120.0,
    ping_interval: Annotated[
        float,
        typer.Option(help="Wall-clock seconds between the pings of an endless stream."),
    ] = 5.0,
    account_rpm: Annotated[
        int | None,
        typer.Option(
            help="Requests per minute for the whole account, across every model, on top of "
            "the per-model limits. Default: no account pool (the evidence is disputed).",
            min=1,
            show_default=False,
        ),
    ] = None,
    account_tpm: Annotated[
        int | None,
        typer.Option(
            help="Tokens per minute for the whole account, like --account-rpm.",
            min=1,
            show_default=False,
        ),
    ] = None,
    max_body_mb: Annotated[
        float,
        typer.Option(help="Largest request body in MB (MiniMax's documented 64); more: 400."),
    ] = 64.0,
    max_image_mb: Annotated[
        float,
        typer.Option(help="Largest base64 image in MB, decoded (MiniMax's documented 10)."),
    ] = 10.0,
    max_video_mb: Annotated[
        float,
        typer.Option(help="Largest base64 video in MB, decoded (MiniMax's documented 50)."),
    ] = 50.0,
    # --- What the simulator answers (issue 15; rows of MiniMax's field evidence) ------------
    think_leak_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of replies with thinking whose reasoning comes as visible text, "
            "'<think>...</think>' then the answer, with no thinking block (seen on MiniMax).",
        ),
    ] = 0.0,
    empty_reply_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of MiniMax-M3 replies without thinking that come back empty: "
            '"content": null, 1 output token (seen once on MiniMax).',
        ),
    ] = 0.0,
    tool_call_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of requests with tools and tool_choice auto (or none given) that "
            "call a tool (stop_reason tool_use). The simulator cannot tell if a tool fits.",
        ),
    ] = 0.0,
    passive_cache: Annotated[
        bool,
        typer.Option(
            help="Cache long prompts by prefix on its own, as MiniMax does (tools, system, "
            "messages); a later prompt with the same start reads it (cache_read_input_tokens)."
        ),
    ] = True,
    cache_min_tokens: Annotated[
        int, typer.Option(min=1, help="Prompts this long or longer are cached passively.")
    ] = 512,
    cache_mark_min_tokens: Annotated[
        int,
        typer.Option(
            min=1,
            help="Explicit cache_control marks take effect only on a prefix this long; "
            "what they write is reported as cache_creation_input_tokens.",
        ),
    ] = 600,
    cache_ttl: Annotated[
        float,
        typer.Option(
            help="Seconds a cache entry lives, in simulated time (wall time / --time-scale; "
            "never expires at time scale 0); every hit renews it."
        ),
    ] = 300.0,
    passive_cache_writes: Annotated[
        bool,
        typer.Option(
            help="Report passive cache writes as cache_creation_input_tokens (an assumption: "
            "by default they are not reported)."
        ),
    ] = False,
    passive_only_models: Annotated[
        str,
        typer.Option(
            help="Models (comma-separated) that ignore cache_control marks and always report "
            "cache_creation_input_tokens 0, as MiniMax-M3 was seen to; '' for none."
        ),
    ] = "MiniMax-M3",
    cache_max_entries: Annotated[
        int,
        typer.Option(
            min=1, help="Prompt prefixes kept per model; the least recently used go first."
        ),
    ] = 100_000,
    processes: Annotated[
        int,
        typer.Option(
            min=1,
            help="Serve from this many processes on the one port (each a core's worth of "
            "streams); rate limits, quota and prompt cache still hold for them all.",
        ),
    ] = 1,
    worker_of: Annotated[Path | None, typer.Option(hidden=True)] = None,
    worker_index: Annotated[int, typer.Option(hidden=True)] = 0,
) -> None:
    """Serve a MiniMax-compatible API on this machine, for tests and for running without a key."""
    settings = settings_from_context(ctx)
    from batchrun.sim.host import WorkerRole  # noqa: PLC0415 - only when serving
    from batchrun.sim.loop import run_fast  # noqa: PLC0415

    worker = None if worker_of is None else WorkerRole(coordinator=worker_of, index=worker_index)
    run_fast(_serve_until_signal(settings, worker))


class _Parsed(Protocol):
    """What settings_from_context needs of a parsed command line (typer's click context)."""

    params: dict[str, Any]

    def get_parameter_source(self, name: str) -> Any: ...


def settings_from_context(ctx: _Parsed) -> SimSettings:
    """The settings the parsed options of ``batchrun sim`` describe; options given win a profile."""
    _check_numbers(ctx.params)
    values = _settings_values(ctx.params)
    given = {
        field
        for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"
        for field in _FIELDS_OF.get(name, (name,))
    }
    profile = ctx.params["profile"]
    overrides = {k: v for k, v in profile_settings(profile).items() if k not in given}
    return SimSettings(**{**values, **overrides})


def settings_from_args(args: list[str]) -> SimSettings:
    """The settings ``batchrun sim ARGS`` would serve with (for tests and settings_to_args)."""
    command = typer.main.get_command(_app())
    with command.make_context("sim", list(args)) as ctx:
        return settings_from_context(ctx)


def _check_numbers(params: dict[str, Any]) -> None:
    """Every time, size and rate of the simulator is a number of 0 or more (never nan or inf)."""
    for name, value in params.items():
        if isinstance(value, float) and not (math.isfinite(value) and value >= 0):
            option = "--" + name.replace("_", "-")
            raise SimulatorError(f"{option} must be a number of 0 or more, not {value}")


# The settings fields an option sets, where they are not just the option's own name.
_FIELDS_OF = {
    "no_limits": ("limits",),
    "faults": ("faults", "model_faults"),
    "ttft": ("ttft_median",),
    "output_tokens": ("output_median",),
    "context_window": ("context_windows",),
    "max_body_mb": ("max_body_bytes",),
    "max_image_mb": ("max_image_bytes",),
    "max_video_mb": ("max_video_bytes",),
}


def _settings_values(params: dict[str, Any]) -> dict[str, Any]:
    p = params
    base, per_model = parse_faults(p["faults"])
    count_tokens_models = p["count_tokens_models"]
    return {
        "host": p["host"],
        "port": p["port"],
        "time_scale": p["time_scale"],
        "seed": p["seed"],
        "api_key": p["api_key"],
        "limits": not p["no_limits"],
        "rpm": parse_model_limits(p["rpm"], "--rpm"),
        "tpm": parse_model_limits(p["tpm"], "--tpm"),
        "limit_window": p["limit_window"],
        "retry_after": p["retry_after"],
        "faults": base,
        "model_faults": per_model,
        "stall_seconds": p["stall_seconds"],
        "quirks": parse_quirks(p["quirks"]),
        "ttft_median": p["ttft"],
        "output_median": p["output_tokens"],
        "tick": p["tick"],
        "timing_log": p["timing_log"],
        "processes": p["processes"],
        "count_tokens_models": (
            frozenset(m.strip() for m in count_tokens_models.split(",") if m.strip())
            if count_tokens_models
            else None
        ),
        # --- field behaviour (issue 15, "simfaults") ---
        "profile": p["profile"],
        "accept_x_api_key": p["accept_x_api_key"],
        "x_api_key_status": p["x_api_key_status"],
        "context_windows": parse_model_limits(p["context_window"], "--context-window"),
        "max_output_tokens": parse_model_limits(p["max_output_tokens"], "--max-output-tokens"),
        "accept_enabled_thinking": p["accept_enabled_thinking"],
        "balance_status": p["balance_status"],
        "quota_requests": p["quota_requests"],
        "quota_window": p["quota_window"],
        "quota_reset_seconds": p["quota_reset_seconds"],
        "timeout_seconds": p["timeout_seconds"],
        "ping_interval": p["ping_interval"],
        "account_rpm": p["account_rpm"],
        "account_tpm": p["account_tpm"],
        "max_body_bytes": round(p["max_body_mb"] * MB),
        "max_image_bytes": round(p["max_image_mb"] * MB),
        "max_video_bytes": round(p["max_video_mb"] * MB),
        # --- what the simulator answers (issue 15, "simcontent") ---
        "think_leak_rate": p["think_leak_rate"],
        "empty_reply_rate": p["empty_reply_rate"],
        "tool_call_rate": p["tool_call_rate"],
        "passive_cache": p["passive_cache"],
        "cache_min_tokens": p["cache_min_tokens"],
        "cache_mark_min_tokens": p["cache_mark_min_tokens"],
        "cache_ttl": p["cache_ttl"],
        "passive_cache_writes": p["passive_cache_writes"],
        "passive_only_models": frozenset(
            filter(None, map(str.strip, p["passive_only_models"].split(",")))
        ),
        "cache_max_entries": p["cache_max_entries"],
    }


async def _serve_until_signal(settings: SimSettings, worker: WorkerRole | None) -> None:
    import asyncio  # noqa: PLC0415 - only when serving
    import signal  # noqa: PLC0415

    from batchrun.sim.host import READY_PREFIX, serve  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(settings, worker=worker) as running:
        typer.echo(f"{READY_PREFIX}{running.base_url}")
        typer.echo(
            f"  base URL for the SDK: {running.base_url}/anthropic "
            "(send the key as Authorization: Bearer; stop with Ctrl-C)",
            err=True,
        )
        await stop.wait()


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(sim_command)
    return app


def main() -> None:
    """Entry point of ``python -m batchrun.sim``."""
    try:
        _app()()
    except SimulatorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None

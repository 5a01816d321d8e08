"""``batchrun sim``: serve the MiniMax-compatible simulator on a loopback port.

It lives beside the simulator, not in batchrun.cli, so that a simulator process imports only what
it needs (not the SDK, the store or polars) and starts in a fraction of a second.
The server (uvicorn, asyncio) is imported when the command runs, not when ``batchrun`` registers
it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from batchrun.exceptions import SimulatorError
from batchrun.sim.settings import (
    SimSettings,
    parse_faults,
    parse_model_limits,
    parse_quirks,
)


def sim_command(
    host: Annotated[
        str, typer.Option(help="Address to bind. Keep 127.0.0.1 unless you must.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 8765,
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
            help="Injected faults, e.g. 529=0.2,500=0.05,balance=0.01,drop=0.05,"
            "stall=0.02,401=0; MODEL:KIND=RATE for one model only."
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
) -> None:
    """Serve a MiniMax-compatible API on this machine, for tests and for running without a key."""
    base, per_model = parse_faults(faults)
    settings = SimSettings(
        host=host,
        port=port,
        time_scale=time_scale,
        seed=seed,
        api_key=api_key,
        limits=not no_limits,
        rpm=parse_model_limits(rpm, "--rpm"),
        tpm=parse_model_limits(tpm, "--tpm"),
        limit_window=limit_window,
        retry_after=retry_after,
        faults=base,
        model_faults=per_model,
        stall_seconds=stall_seconds,
        quirks=parse_quirks(quirks),
        ttft_median=ttft,
        output_median=output_tokens,
        tick=tick,
        count_tokens_models=(
            frozenset(m.strip() for m in count_tokens_models.split(",") if m.strip())
            if count_tokens_models
            else None
        ),
        # what the simulator answers (issue 15)
        think_leak_rate=think_leak_rate,
        empty_reply_rate=empty_reply_rate,
        tool_call_rate=tool_call_rate,
        passive_cache=passive_cache,
        cache_min_tokens=cache_min_tokens,
        cache_mark_min_tokens=cache_mark_min_tokens,
        cache_ttl=cache_ttl,
        passive_cache_writes=passive_cache_writes,
        passive_only_models=frozenset(filter(None, map(str.strip, passive_only_models.split(",")))),
        cache_max_entries=cache_max_entries,
    )
    from batchrun.sim.loop import run_fast  # noqa: PLC0415 - only when serving

    run_fast(_serve_until_signal(settings))


async def _serve_until_signal(settings: SimSettings) -> None:
    import asyncio  # noqa: PLC0415 - only when serving
    import signal  # noqa: PLC0415

    from batchrun.sim.host import READY_PREFIX, serve  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(settings) as running:
        typer.echo(f"{READY_PREFIX}{running.base_url}")
        typer.echo(
            f"  base URL for the SDK: {running.base_url}/anthropic (any API key; stop with Ctrl-C)",
            err=True,
        )
        await stop.wait()


def main() -> None:
    """Entry point of ``python -m batchrun.sim``."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(sim_command)
    try:
        app()
    except SimulatorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None

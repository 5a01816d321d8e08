"""Client CPU per streamed answer, and throughput against concurrency, side by side in one run.

Three clients read the same simulator streams: the naive SDK (default transport, raw events),
the SDK on its aiohttp transport (raw events), and batchrun's client (SDK request, raw SSE bytes
assembled by stream.py). The simulator runs in its own process on core 1, the client on core 0.

1. CPU per answer at time scale 0, concurrency 64, answers of 20, 500 and 2,000 deltas.
2. Throughput at concurrency 64, 256 and 1,024 with 1,000-token answers taking about 2 s
   (MiniMax-M3 at 80 tokens/s, time scale 0.15): achieved / (concurrency / unloaded latency),
   with each side's CPU per answer (client: this process; server: the simulator's process).
   The simulator writes every --tick seconds (default 0.01: about 5 tokens per write at this
   pace, some 200 reads per answer).

The machine is shared: the load average is recorded with each table, and CPU per answer (which
load changes little) says what one core could sustain: 1 / CPU per answer.

With --parser, only the parser: StreamAssembler.feed on a 500-delta answer held in memory, one
event per read (a paced stream) and 16 KB reads (time scale 0), CPU per delta as the best of 40
rounds (the least disturbed by other processes), for this checkout and for each --code DIR
(another checkout's batchrun/api/stream.py, e.g. the commit before a change), interleaved.

    python bench/stream_cpu.py [--quick] [--tick 0.01] [--out bench/results/stream_cpu.md]
    python bench/stream_cpu.py --parser [--code DIR ...]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import orjson
from outfile import add_out, check_new, write_table
from procstat import cpu_seconds, load, machine, pin, two_cores

from batchrun.api.client import ApiClient
from batchrun.api.endpoint import Deadlines, Endpoint
from batchrun.sim import SimSettings, simulator_process
from batchrun.sim.loop import run_fast

Call = Callable[[dict[str, Any]], Awaitable[None]]


def cpu() -> float:
    """CPU seconds of this process (the client under test)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def clients(
    base_url: str, connections: int
) -> dict[str, tuple[Call, Callable[[], Awaitable[None]]]]:
    # The SDK's default retries (a pooled connection the server closed is retried, as in a
    # user's script) and a generous connect timeout: 1,024 connections opened at once on a
    # loaded machine can take more than the SDK's default 5 s.
    timeout = httpx2.Timeout(600, connect=120)
    naive = anthropic.AsyncAnthropic(base_url=base_url, api_key="bench", timeout=timeout)
    on_aiohttp = anthropic.AsyncAnthropic(
        base_url=base_url,
        api_key="bench",
        timeout=timeout,
        http_client=anthropic.DefaultAioHttpClient(),
    )
    ours = ApiClient(
        Endpoint(base_url=base_url, api_key="bench", simulated=True),
        Deadlines(connect=120, idle=120, total=600),
        max_connections=connections,
    )

    def raw(sdk: anthropic.AsyncAnthropic) -> Call:
        async def call(request: dict[str, Any]) -> None:
            stream = await sdk.messages.create(stream=True, **request)
            async for _ in stream:
                pass

        return call

    async def batchrun_call(request: dict[str, Any]) -> None:
        params = {k: v for k, v in request.items() if k != "model"}
        await ours.stream_message(request["model"], params)

    return {
        "naive SDK": (raw(naive), naive.close),
        "SDK on aiohttp": (raw(on_aiohttp), on_aiohttp.close),
        "batchrun client": (batchrun_call, ours.aclose),
    }


async def drive(
    call: Call, request: dict[str, Any], count: int, concurrency: int
) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, mean latency) for ``count`` calls at ``concurrency``."""
    latencies: list[float] = []
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            started = time.perf_counter()
            await call(request)
            latencies.append(time.perf_counter() - started)

    cpu_before, started = cpu(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, cpu() - cpu_before, sum(latencies) / len(latencies)


def _process_cpu(pid: int | None) -> float:
    return cpu_seconds(pid) if pid is not None else 0.0


def request(tokens: int) -> dict[str, Any]:
    return {
        "model": "MiniMax-M3",  # no thinking: exactly ``tokens`` text deltas
        "max_tokens": tokens,
        "messages": [{"role": "user", "content": "Benchmark me."}],
    }


async def cpu_table(base_url: str, quick: bool) -> list[str]:
    rows = ["| client | 20 deltas | 500 deltas | 2,000 deltas |", "|---|---|---|---|"]
    made = clients(base_url, 64)
    for name, (call, _) in made.items():
        cells = []
        for tokens, full in ((20, 2000), (500, 400), (2000, 100)):
            count = full // 4 if quick else full
            await drive(call, request(tokens), 20, 16)  # warm-up
            _, used, _ = await drive(call, request(tokens), count, 64)
            cells.append(f"{1000 * used / count:.2f} ms")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    for _, close in made.values():
        await close()
    return rows


async def scaling_table(base_url: str, quick: bool, server_pid: int | None) -> list[str]:
    rows = [
        "| client | c=64 | c=256 | c=1,024 |",
        "|---|---|---|---|",
    ]
    notes = []
    made = clients(base_url, 1100)
    # The unloaded latency of one answer: the ideal is concurrency / this.
    _, _, nominal = await drive(made["batchrun client"][0], request(1000), 16, 8)
    rows.insert(0, f"Unloaded latency of one answer: {nominal:.2f} s.\n")
    for name, (call, _) in made.items():
        cells = []
        for concurrency in (64, 256, 1024):
            count = concurrency * (1 if quick else 3)
            server_before = _process_cpu(server_pid)
            wall, used, _ = await drive(call, request(1000), count, concurrency)
            server = _process_cpu(server_pid) - server_before
            rate = count / wall
            cells.append(
                f"{rate:,.0f}/s = {rate * nominal / concurrency:.2f} of ideal "
                f"(client {used / wall:.0%}, server {server / wall:.0%} of a core; "
                f"{1000 * used / count:.1f} / {1000 * server / count:.1f} ms per answer)"
            )
            notes.append(load())
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    for _, close in made.values():
        await close()
    return [*rows, "", f"Load during these runs: {', '.join(notes)}."]


def _sse(data: dict[str, Any]) -> bytes:
    name = str(data["type"]).encode()
    return b"event: " + name + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def answer_events(deltas: int, escapes: bool = True) -> list[bytes]:
    """A text answer's events as the API writes them; with ``escapes`` every 13th delta has a
    quote or newline (without, plain words, as the simulator writes)."""
    usage = {"input_tokens": 3, "output_tokens": 0}
    message = {"id": "m", "type": "message", "role": "assistant", "model": "M", "content": []}
    words = [" the", " answer", ",", " is", " \u00fcber", " 42", "\n", ' "so"', " a", " b", " c"]
    words += [" d", " e"]
    if not escapes:
        words = [word for word in words if word.strip() not in ("", '"so"')]
    text = ({"type": "text_delta", "text": words[i % len(words)]} for i in range(deltas))
    return [
        _sse({"type": "message_start", "message": {**message, "usage": usage}}),
        _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}),
        *(_sse({"type": "content_block_delta", "index": 0, "delta": d}) for d in text),
        _sse({"type": "content_block_stop", "index": 0}),
        _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage}),
        _sse({"type": "message_stop"}),
    ]


def _assembler(path: Path) -> Any:
    """StreamAssembler of the stream.py at ``path``, loaded under a name of its own."""
    name = f"stream_under_test_{abs(hash(path))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.StreamAssembler


def parser_table(codes: list[Path]) -> list[str]:
    events = answer_events(500)
    whole = b"".join(events)
    reads = {
        "one event per read": events,
        "16 KB reads": [whole[i : i + 16384] for i in range(0, len(whole), 16384)],
        "whole answer in one read": [whole],  # time scale 0: ~1.0 read per answer (bench/peers)
        "the same, plain words": [b"".join(answer_events(500, escapes=False))],
    }
    here = Path(__file__).resolve().parent.parent
    sources = {"this checkout": here, **{str(code): code for code in codes}}
    made = {label: _assembler(root / "batchrun/api/stream.py") for label, root in sources.items()}
    best: dict[tuple[str, str], float] = {}
    for _ in range(40):
        for label, assembler in made.items():
            for kind, chunks in reads.items():
                started = time.process_time()
                for _ in range(4):
                    parser = assembler(0.0)
                    for chunk in chunks:
                        parser.feed(chunk, 1.0)
                    parser.message()
                used = (time.process_time() - started) / 4 / 500
                best[label, kind] = min(best.get((label, kind), used), used)
    rows = ["| parser | " + " | ".join(reads) + " |", "|---" * (len(reads) + 1) + "|"]
    for label in made:
        cells = [f"{1e6 * best[label, kind]:.2f} us" for kind in reads]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return [
        f"StreamAssembler CPU per delta, 500-delta answer ({machine()}, {load()}):",
        "",
        *rows,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    parser.add_argument("--tick", type=float, default=0.01, help="simulator write interval (s)")
    add_out(parser, Path("bench/results/stream_cpu.md"))
    parser.add_argument("--parser", action="store_true", help="only the parser, in memory")
    parser.add_argument("--code", type=Path, action="append", default=[], help="with --parser")
    args = parser.parse_args()
    check_new(args.out, force=args.force)
    if args.parser:
        print("\n".join(parser_table(args.code)))
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    pin(0, 0)
    lines = [
        f"Client CPU and concurrency ({machine()}, anthropic {anthropic.__version__}, "
        f"simulator on core 1{'' if two_cores() else ' (one core: shared)'}).",
        "",
        f"CPU per streamed answer, time scale 0, concurrency 64 ({load()}):",
        "",
    ]
    instant = SimSettings(time_scale=0, limits=False, output_median=10**6, seed=1)
    with simulator_process(instant) as sim:
        pin(sim.pid, 1)
        lines += run_fast(cpu_table(f"{sim.base_url}/anthropic", args.quick))
    lines += [
        "",
        "Throughput, 1,000-token answers of about 2 s, simulator writing every "
        f"{args.tick:g} s (achieved / (concurrency / unloaded latency); CPU per answer: "
        "client / server):",
        "",
    ]
    paced = SimSettings(time_scale=0.15, limits=False, output_median=10**6, seed=1, tick=args.tick)
    with simulator_process(paced) as sim:
        pin(sim.pid, 1)
        lines += run_fast(scaling_table(f"{sim.base_url}/anthropic", args.quick, sim.pid))
    write_table(args.out, lines, force=args.force)


if __name__ == "__main__":
    main()

"""``python -m batchrun.demo FILE``: send a job file's requests to the simulator and show replies.

A stop-gap main job until ``batchrun run`` exists: it starts the simulator, sends each line's
``params`` to three models through the anthropic SDK, and prints what came back.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import anthropic
import anyio
import orjson
from rich.table import Table

from batchrun.cli.output import console
from batchrun.sim import SimSettings, simulator_process
from batchrun.sim.loop import run_fast

DEMO_MODELS = ("MiniMax-M2.7", "MiniMax-M2.7-highspeed", "MiniMax-M3")


async def _ask(sdk: anthropic.AsyncAnthropic, job: dict[str, Any], model: str) -> list[str]:
    sent = time.perf_counter()
    message = await sdk.messages.create(**{**job["params"], "model": model})
    seconds = time.perf_counter() - sent
    text = next((b.text for b in message.content if b.type == "text"), "")
    return [
        job["custom_id"],
        model,
        message.stop_reason or "",
        f"{message.usage.input_tokens}/{message.usage.output_tokens}",
        f"{seconds:.2f}s",
        text[:60] + ("..." if len(text) > 60 else ""),
    ]


async def _main(path: Path) -> None:
    lines = (await anyio.Path(path).read_bytes()).splitlines()
    jobs = [orjson.loads(line) for line in lines if line.strip()]
    out = console()
    with simulator_process(SimSettings(time_scale=0.02, seed=1)) as sim:
        out.print(f"[bold]No API key: using the built-in MiniMax simulator at {sim.base_url}[/]")
        async with anthropic.AsyncAnthropic(
            base_url=f"{sim.base_url}/anthropic",
            api_key="simulator",
            max_retries=0,
            http_client=anthropic.DefaultAioHttpClient(),
        ) as sdk:
            rows = await asyncio.gather(
                *(_ask(sdk, job, model) for job in jobs for model in DEMO_MODELS)
            )
    table = Table(title=f"{path}: {len(jobs)} requests x {len(DEMO_MODELS)} models (simulated)")
    for column in ("custom_id", "model", "stop", "tokens in/out", "latency", "answer"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    out.print(table)


if __name__ == "__main__":
    run_fast(_main(Path(sys.argv[1] if len(sys.argv) > 1 else "jobs/demo.jsonl")))

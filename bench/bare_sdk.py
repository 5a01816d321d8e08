"""The script a user would write by hand: AsyncAnthropic, a semaphore, gather, streaming.

Reads the same job file as ``batchrun run`` and sends every line to one model, streaming each
answer and keeping nothing. It prints how long sending took (from the first request to the last
answer), which leaves out the start of Python and the SDK's import. It is the baseline of
bench/overhead.py.

    python bench/bare_sdk.py JOBS.jsonl BASE_URL MODEL CONCURRENCY [--aiohttp]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import anthropic


async def main(
    jobs: list[dict[str, object]], base_url: str, model: str, concurrency: int, aiohttp: bool
) -> None:
    http = anthropic.DefaultAioHttpClient() if aiohttp else None
    client = anthropic.AsyncAnthropic(base_url=base_url, api_key="bench", http_client=http)
    gate = asyncio.Semaphore(concurrency)

    async def one(job: dict[str, object]) -> None:
        async with gate:
            stream = await client.messages.create(
                model=model,
                max_tokens=int(str(job["max_tokens"])),
                messages=[{"role": "user", "content": str(job["prompt"])}],
                stream=True,
            )
            async for _ in stream:
                pass

    started = time.perf_counter()
    await asyncio.gather(*(one(job) for job in jobs))
    print(f"sending took {time.perf_counter() - started:.3f} s")
    await client.close()


if __name__ == "__main__":
    with Path(sys.argv[1]).open(encoding="utf-8") as lines:
        jobs = [json.loads(line) for line in lines]
    asyncio.run(main(jobs, sys.argv[2], sys.argv[3], int(sys.argv[4]), "--aiohttp" in sys.argv))

"""The bare-aiohttp load that the simulator benchmarks drive it with (the cheapest Python client,
so that the server is what is measured): ``count`` requests, ``concurrency`` at a time."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson

PROMPT = "Benchmark the simulator, please."


async def drive(
    url: str, *, model: str, tokens: int, count: int, concurrency: int, stream: bool = True
) -> float:
    """Send the requests and read every answer whole (a stream chunk by chunk, as it comes);
    returns the wall time in seconds, set-up of the session left out."""
    body = orjson.dumps(
        {
            "model": model,
            "max_tokens": tokens,
            "stream": stream,
            "messages": [{"role": "user", "content": PROMPT}],
        }
    )
    # MiniMax wants Authorization: Bearer (the simulator, as it, refuses x-api-key with a 401)
    headers = {"authorization": "Bearer bench", "content-type": "application/json"}
    remaining = iter(range(count))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for _ in remaining:
                async with session.post(url, data=body, headers=headers) as response:
                    assert response.status == 200, response.status
                    async for _chunk in response.content.iter_any():
                        pass

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started

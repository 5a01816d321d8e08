"""The peers' side of bench/peers.py: one client library sends every job of a file, streamed where
the library streams, and says how many distinct answers ended.

Runs in the peer's own virtual environment (made by bench/peers.py), so it imports nothing of
batchrun and only the standard library at the top; each peer's library is imported in its own
function. Prints one line, ``answers N of M``, on success.

    python bench/peer_clients.py PEER JOBS.jsonl BASE_URL MODEL CONCURRENCY

PEER: ``curator-anthropic``, ``curator-litellm`` or ``litellm``. BASE_URL is the simulator's
Anthropic-compatible root (``http://127.0.0.1:PORT/anthropic``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

KEY = "bench"


def litellm_peer(jobs: list[dict[str, Any]], base_url: str, model: str, concurrency: int) -> int:
    """LiteLLM's ``acompletion`` streaming, under a semaphore: the distinct answers that ended."""
    import litellm

    gate = asyncio.Semaphore(concurrency)

    async def one(job: dict[str, Any]) -> str | None:
        async with gate:
            stream = await litellm.acompletion(
                model=f"anthropic/{model}",
                api_base=base_url,
                api_key=KEY,
                max_tokens=int(job["max_tokens"]),
                messages=[{"role": "user", "content": str(job["prompt"])}],
                stream=True,
                num_retries=0,
                extra_headers={"Authorization": f"Bearer {KEY}"},  # as MiniMax wants the key
            )
            finished = None
            async for chunk in stream:
                finished = chunk.choices[0].finish_reason or finished
            return str(job["custom_id"]) if finished else None

    async def every() -> list[str | None]:
        return await asyncio.gather(*(one(job) for job in jobs))

    return len({done for done in asyncio.run(every()) if done})


def curator_peer(
    jobs: list[dict[str, Any]], base_url: str, model: str, concurrency: int, backend: str
) -> int:
    """Bespoke Curator's online processor on ``backend``: the distinct answers it returned."""
    os.environ["CURATOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="curator-")  # nothing reused
    # Curator counts tokens with tiktoken, which downloads its encodings unless they are cached:
    # point it at the copies LiteLLM (a dependency of Curator's) ships.
    litellm_home = importlib.util.find_spec("litellm")
    assert litellm_home is not None
    assert litellm_home.origin is not None
    bundled = Path(litellm_home.origin).parent / "litellm_core_utils" / "tokenizers"
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(bundled))
    from bespokelabs import curator
    from bespokelabs.curator.request_processor.online import anthropic_online_request_processor

    # Its anthropic backend probes the rate limits with a call to claude-3-5-sonnet-latest, a
    # model MiniMax does not serve (a 400 that ends the run): the limits are given below instead.
    processor = anthropic_online_request_processor.AnthropicOnlineRequestProcessor
    processor.test_call = lambda self: {}  # type: ignore[method-assign]

    limits = {"max_requests_per_minute": 10**7, "max_tokens_per_minute": 10**12}
    params: dict[str, Any] = {
        **limits,
        "max_concurrent_requests": concurrency,
        "max_retries": 0,
        "require_all_responses": False,  # a missing answer shows in the count, not as a crash
        "api_key": KEY,
        # The anthropic backend posts to BASE_URL/messages, LiteLLM to BASE_URL/v1/messages.
        "base_url": f"{base_url}/v1" if backend == "anthropic" else base_url,
    }
    llm = curator.LLM(
        model_name=model if backend == "anthropic" else f"anthropic/{model}",
        backend=backend,
        generation_params={"max_tokens": int(jobs[0]["max_tokens"])},
        backend_params=params,
    )
    prompts = [str(job["prompt"]) for job in jobs]
    answers = llm(prompts)
    return sum(1 for row in answers.dataset if row.get("response"))


def main() -> None:
    peer, jobs_file, base_url, model, concurrency = sys.argv[1:6]
    with Path(jobs_file).open(encoding="utf-8") as lines:
        jobs = [json.loads(line) for line in lines]
    if peer == "litellm":
        done = litellm_peer(jobs, base_url, model, int(concurrency))
    elif peer.startswith("curator-"):
        done = curator_peer(jobs, base_url, model, int(concurrency), peer.removeprefix("curator-"))
    else:
        raise SystemExit(f"unknown peer {peer!r}: curator-anthropic, curator-litellm or litellm")
    print(f"answers {done} of {len(jobs)}")


if __name__ == "__main__":
    main()

"""CPU per request of CacheView.expect (plan/cache.py), the runner's hot-path cache expectation.

Three cases, each on one CacheView with the built-in MiniMax-M2.7 (cache_min_tokens 512):
a short prompt (below the minimum: one comparison, nothing serialized or hashed); the 40 lines
of jobs/cache-demo.jsonl (~2,000 tokens, every one after the first a hit); and ~2,000-token
prompts that are all new (misses, each adding its prefixes to the view). Best of three rounds,
as the machine is shared.

    python bench/cacheview_cost.py
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from batchrun.catalog import load_catalog
from batchrun.plan.cache import CacheView
from batchrun.sim.tokens import count_request

INFO = load_catalog().get("MiniMax-M2.7")
DEMO = Path(__file__).parent.parent / "jobs" / "cache-demo.jsonl"


def per_request(prompts: list[dict[str, Any]], tokens: list[int], calls: int) -> float:
    """Microseconds per expect() call over ``calls`` calls cycling through ``prompts``."""
    best = float("inf")
    for _ in range(3):
        view = CacheView()
        start = time.perf_counter()
        for i in range(calls):
            k = i % len(prompts)
            view.expect(INFO, prompts[k], tokens[k])
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def main() -> None:
    """Print the three figures."""
    short = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
    demo = [json.loads(line)["params"] for line in DEMO.read_text("utf-8").splitlines()]
    fresh = [{**demo[0], "system": f"{demo[0]['system']} Ticket {i}."} for i in range(5000)]
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(
        f"short prompt ({count_request(short)} tokens, below the minimum): "
        f"{per_request([short], [count_request(short)], 1_000_000):.2f} us"
    )
    tokens = [count_request(p) for p in demo]
    print(f"~2,000-token prompt, a hit: {per_request(demo, tokens, 20_000):.1f} us")
    fresh_tokens = [count_request(fresh[0])] * len(fresh)
    print(f"~2,000-token prompt, a miss: {per_request(fresh, fresh_tokens, len(fresh)):.1f} us")


if __name__ == "__main__":
    main()

"""What MiniMax should have in its prompt cache, as far as batchrun can tell from its side.

MiniMax caches passively (field evidence row 7, strong): a prompt of at least the model's
``cache_min_tokens`` input tokens is kept by prefix, in the order tools, system, messages, and a
later prompt of the same model that starts with a kept prefix reads the longest one from the
cache. ``CacheView`` replays that on the client: each request's prefixes at item boundaries (a
tool, a system block, a message's role or one of its blocks: the boundaries the simulator's
``sim/tokens.py prompt_prefixes`` uses) are remembered per model, and a request's expected cache
read is the longest of its prefixes seen earlier and still alive.

MiniMax's tokenizer is not known locally, so a prefix's tokens are the request's counted input
tokens times the prefix's share of the prompt's serialized bytes. Entries live the model's
``cache_ttl_seconds`` on the injected clock from their last use (the run: wall clock), or never
expire (the estimate, which assumes the batch runs within the lifetime). Each model keeps at
most ``max_entries`` prefixes, the least recently used going first, as the simulator does.

A prompt whose counted tokens are below the minimum is neither serialized nor hashed: that is
the common case, and it costs one comparison. Above it, each item is serialized once and hashed
with Python's own (SipHash, 64-bit, keyed per process) hash, chained from item to item: a
2,000-token prompt costs about 5 us, where blake2b took about 16 us. The view lives in one
process, so a per-process hash is enough; two prefixes colliding among 100,000 entries has odds
of about 1 in 10^9, and would only misstate an expectation, never a cost.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from batchrun.catalog import ModelInfo

MAX_ENTRIES = 100_000  # per model, like the simulator's cache_max_entries
Clock = Callable[[], float]


class CacheView:
    """The prompt prefixes each model should have cached, and what a request should read."""

    def __init__(
        self, clock: Clock | None = time.monotonic, max_entries: int = MAX_ENTRIES
    ) -> None:
        """``clock`` None: entries never expire (the estimate's assumption)."""
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self._clock = clock
        self._max_entries = max_entries
        self._models: dict[str, OrderedDict[int, float]] = {}

    @classmethod
    def without_expiry(cls, max_entries: int = MAX_ENTRIES) -> CacheView:
        """A view whose entries never expire: the batch is assumed to run within the lifetime."""
        return cls(clock=None, max_entries=max_entries)

    def expect(self, info: ModelInfo, params: Mapping[str, Any], input_tokens: int) -> int:
        """Tokens of this request expected to be read from ``info``'s cache (0: none); the
        request's prefixes are remembered for later ones.

        ``input_tokens``: the request's counted (or estimated) input tokens."""
        least = info.cache_min_tokens
        if least is None or input_tokens < least:
            return 0
        prefixes = prompt_prefixes(params, input_tokens, least)
        if not prefixes:
            return 0
        now = self._clock() if self._clock is not None else 0.0
        entries = self._models.setdefault(info.name, OrderedDict())
        read = _longest_alive(entries, prefixes, now)
        expires = now + info.cache_ttl_seconds if self._clock is not None else math.inf
        for _, digest in prefixes:
            entries[digest] = expires
            entries.move_to_end(digest)
        while len(entries) > self._max_entries:
            entries.popitem(last=False)
        return read

    def entries(self, model: str) -> int:
        """How many prefixes of ``model`` are held (expired ones included until looked up)."""
        return len(self._models.get(model, ()))


def _longest_alive(
    entries: OrderedDict[int, float], prefixes: list[tuple[int, int]], now: float
) -> int:
    """The tokens of the longest prefix held and alive, 0 when none; expired ones are dropped."""
    for tokens, digest in reversed(prefixes):
        expires = entries.get(digest)
        if expires is None:
            continue
        if expires > now:
            return tokens
        del entries[digest]
    return 0


def prompt_prefixes(
    params: Mapping[str, Any], input_tokens: int, min_tokens: int
) -> list[tuple[int, int]]:
    """(tokens, digest) of each prefix of the prompt ending at an item boundary with at least
    ``min_tokens`` tokens, shortest first; tokens are ``input_tokens`` x the prefix's share of
    the prompt's serialized bytes."""
    data = [orjson.dumps(item, option=orjson.OPT_SORT_KEYS) for item in _prompt_items(params)]
    total = sum(len(chunk) for chunk in data)
    digest = 0
    running = 0
    prefixes: list[tuple[int, int]] = []
    for chunk in data:
        digest = hash((digest, hash(chunk)))  # item by item: items cannot run into each other
        running += len(chunk)
        tokens = input_tokens * running // total
        if tokens >= min_tokens:
            prefixes.append((tokens, digest))
    return prefixes


def _prompt_items(params: Mapping[str, Any]) -> list[Any]:
    """The prompt's items in the order the model reads them, each as the model reads it."""
    items: list[Any] = [_as_read(tool) for tool in params.get("tools") or []]
    system = params.get("system")
    if isinstance(system, list):
        items += [_as_read(block) for block in system]
    elif system:
        items.append(_as_read(system))
    for message in params.get("messages") or []:
        content = message.get("content", "")
        items.append({"role": message.get("role")})
        items += [
            _as_read(block) for block in (content if isinstance(content, list) else [content])
        ]
    return items


def _as_read(block: Any) -> Any:
    """A block as the model reads it: a plain string is a text block, and a ``cache_control``
    mark is not content (the same block with and without one is the same prefix)."""
    if isinstance(block, str):
        return {"type": "text", "text": block}
    if isinstance(block, dict) and "cache_control" in block:
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block

"""The simulator's one deterministic token counter.

A token is a run of word characters or a single other non-space character, so ``"Hi, how are
you?"`` is six tokens. Each message adds a fixed overhead, as real chat formats do. Images and
videos count a fixed amount by their ``detail`` (MiniMax gives only rough ranges for images).
count_tokens and a request's usage both come from here, so the two always agree, and so do the
prompt prefixes the prompt cache matches.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

_TOKEN = re.compile(r"\w+|[^\w\s]")
MESSAGE_OVERHEAD = 3
REQUEST_OVERHEAD = 1
IMAGE_TOKENS = {"low": 300, "default": 1_500, "high": 6_000}
VIDEO_TOKENS = 10_000


def count_text(text: str) -> int:
    """Tokens in a piece of text."""
    return sum(1 for _ in _TOKEN.finditer(text))


def count_block(block: Any) -> int:
    """Tokens in one content block of a message (or a bare string)."""
    if isinstance(block, str):
        return count_text(block)
    counter = _BLOCK_COUNTERS.get(block.get("type"))
    return counter(block) if counter is not None else count_json(block)


def count_content(content: Any) -> int:
    """Tokens in a message's content: a string or a list of blocks."""
    if isinstance(content, str):
        return count_text(content)
    if isinstance(content, list):
        return sum(count_block(block) for block in content)
    return 0


def count_json(value: Any) -> int:
    """Tokens in a JSON value as the model would read it."""
    return count_text(orjson.dumps(value).decode())


def count_tool(tool: Any) -> int:
    """Tokens in one tool definition."""
    if not isinstance(tool, dict):
        return 0
    return (
        count_text(str(tool.get("name", "")))
        + count_text(str(tool.get("description", "")))
        + count_json(tool.get("input_schema", {}))
    )


def count_request(body: dict[str, Any]) -> int:
    """Input tokens of a Messages request (tools, system and messages)."""
    return REQUEST_OVERHEAD + sum(tokens for _, tokens in _prompt_items(body))


@dataclass(frozen=True, slots=True)
class PromptPrefix:
    """A prefix of a prompt that ends at an item boundary (a tool, a system block, a message's
    role or one of its blocks): its tokens, a digest of its items, and whether a ``cache_control``
    mark ends it.
    """

    tokens: int
    digest: bytes
    marked: bool


def prompt_prefixes(body: dict[str, Any], min_tokens: int) -> list[PromptPrefix]:
    """Each prefix of the prompt of at least ``min_tokens`` that ends at an item boundary.

    The prefixes run in the order the model reads the prompt: tools, then system, then messages.
    The items are hashed once, incrementally. A caller that knows the prompt is shorter than
    ``min_tokens`` (its ``count_request``) need not call this at all.
    """
    items = _prompt_items(body)
    hasher = hashlib.blake2b(digest_size=16)
    running = REQUEST_OVERHEAD
    prefixes: list[PromptPrefix] = []
    for item, tokens in items:
        marked = isinstance(item, dict) and bool(item.get("cache_control"))
        data = orjson.dumps(_as_read(item, marked=marked), option=orjson.OPT_SORT_KEYS)
        hasher.update(len(data).to_bytes(8, "big") + data)
        running += tokens
        if running >= min_tokens:
            prefixes.append(PromptPrefix(tokens=running, digest=hasher.digest(), marked=marked))
    return prefixes


def _as_read(item: Any, *, marked: bool) -> Any:
    """An item as the model reads it: a plain string is a text block, and a mark is not content
    (the same block with and without ``cache_control`` is the same prefix)."""
    if isinstance(item, str):
        return {"type": "text", "text": item}
    return {k: v for k, v in item.items() if k != "cache_control"} if marked else item


def _prompt_items(body: dict[str, Any]) -> list[tuple[Any, int]]:
    items: list[tuple[Any, int]] = [(t, count_tool(t)) for t in body.get("tools") or []]
    system = body.get("system", "")
    if isinstance(system, list):
        items += [(block, count_block(block)) for block in system]
    elif system:
        items.append((system, count_text(system)))
    for message in body.get("messages", []):
        content = message.get("content", "")
        blocks = content if isinstance(content, list) else [content]
        items.append(({"role": message.get("role")}, MESSAGE_OVERHEAD))
        items += [(block, count_block(block)) for block in blocks]
    return items


_BLOCK_COUNTERS: dict[Any, Callable[[dict[str, Any]], int]] = {
    "text": lambda block: count_text(block.get("text", "")),
    "thinking": lambda block: count_text(block.get("thinking", "")),
    "tool_use": lambda block: (
        count_text(block.get("name", "")) + count_json(block.get("input", {}))
    ),
    "tool_result": lambda block: count_content(block.get("content", "")),
    "image": lambda block: IMAGE_TOKENS.get(str(block.get("detail")), IMAGE_TOKENS["default"]),
    "video": lambda block: VIDEO_TOKENS,
}

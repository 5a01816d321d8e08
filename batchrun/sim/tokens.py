"""The simulator's one deterministic token counter.

A token is a run of word characters or a single other non-space character, so ``"Hi, how are
you?"`` is six tokens. Each message adds a fixed overhead, as real chat formats do. Images and
videos count a fixed amount by their ``detail`` (MiniMax gives only rough ranges for images).
count_tokens and a request's usage both come from here, so the two always agree.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
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


def cache_prefix(body: dict[str, Any]) -> tuple[int, str] | None:
    """Tokens and digest of the prompt prefix up to the last ``cache_control`` mark, if any.

    The prefix runs in the order the model reads the prompt: tools, then system, then messages.
    """
    parts: list[Any] = []
    total = REQUEST_OVERHEAD
    marked: tuple[int, int] | None = None  # (tokens so far, parts so far) at the last mark
    for item, tokens in _prompt_items(body):
        parts.append(item)
        total += tokens
        if isinstance(item, dict) and item.get("cache_control"):
            marked = (total, len(parts))
    if marked is None:
        return None
    digest = hashlib.sha256(orjson.dumps(parts[: marked[1]], option=orjson.OPT_SORT_KEYS))
    return marked[0], digest.hexdigest()


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

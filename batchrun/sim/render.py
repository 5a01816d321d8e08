"""Turn a drawn Reply into a non-streamed JSON body or the bytes of an SSE stream.

The stream follows Anthropic's event contract: ``message_start``, ``ping``, per block
``content_block_start`` / ``content_block_delta`` / ``content_block_stop``, ``message_delta``
with stop_reason and usage, ``message_stop``. MiniMax's reported quirks are opt-in. An empty
reply (MiniMax-M3's ``content: null``) streams no content block at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from batchrun.sim.generate import Block, Reply
from batchrun.sim.tokens import count_text

_DELTA_KIND = {"thinking": "thinking_delta", "text": "text_delta", "tool_use": "input_json_delta"}
_DELTA_FIELD = {"thinking": "thinking", "text": "text", "tool_use": "partial_json"}


@dataclass(frozen=True, kw_only=True)
class StreamPlan:
    """SSE chunks and the offset (seconds after the request) at which each one is due."""

    chunks: list[bytes]
    offsets: list[float]


def message_body(reply: Reply) -> dict[str, Any]:
    """The JSON body of a non-streamed reply, with MiniMax's ``base_resp`` field."""
    return {
        "id": reply.message_id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": None if reply.null_content else [_final_block(b) for b in reply.blocks],
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": _usage(reply),
        "base_resp": {"status_code": 0, "status_msg": "success"},
    }


def stream_plan(reply: Reply, quirks: frozenset[str]) -> StreamPlan:
    """Every SSE event of a streamed reply, grouped into chunks that fall due together."""
    usage = _usage(reply)
    if "stream_cache_read_zero" in quirks:
        usage["cache_read_input_tokens"] = 0
    on_stop = "usage_on_stop" in quirks
    start_usage = {**usage, "output_tokens": 0} if not on_stop else _zero_usage()
    head = _event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": reply.message_id,
                "type": "message",
                "role": "assistant",
                "model": reply.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        },
    ) + _event("ping", {"type": "ping"})
    chunks, offsets = [head], [reply.start_offset]
    token_times = iter(reply.token_offsets)
    for index, block in enumerate(reply.blocks):
        times = [next(token_times) for _ in range(_tokens_in(block))]
        _attach(chunks, offsets, _block_parts(index, block, quirks), times)
    delta_usage = {"output_tokens": 0 if on_stop else reply.output_tokens}
    stop: dict[str, Any] = {"type": "message_stop"}
    if on_stop:
        stop["usage"] = usage
    tail = _event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
            "usage": delta_usage,
        },
    ) + _event("message_stop", stop)
    end = reply.token_offsets[-1] if reply.token_offsets else offsets[-1]
    if end > offsets[-1]:  # tokens no block sent (an empty reply's one): the end waits for them
        chunks.append(tail)
        offsets.append(end)
    else:
        chunks[-1] += tail
    return StreamPlan(chunks=chunks, offsets=offsets)


def _attach(
    chunks: list[bytes],
    offsets: list[float],
    parts: tuple[bytes, list[bytes], bytes],
    times: list[float],
) -> None:
    """Append a block's events grouped by due time: deltas that fall due together share a chunk.

    Delta ``i`` of ``n`` falls due with token ``(i + 1) * len(times) // n``, so a tool input's
    few deltas spread over its many tokens.
    """
    start, deltas, end = parts
    if not times or not deltas:
        chunks[-1] += start + b"".join(deltas) + end
        return
    if times[0] == times[-1]:  # all due at once (time scale 0): one chunk
        chunks.append(start + b"".join(deltas) + end)
        offsets.append(times[0])
        return
    count, spread = len(deltas), len(times)
    if spread == count:  # one delta per token: one chunk each (the writer joins what is due)
        chunks.append(start + deltas[0])
        chunks.extend(deltas[1:])
        chunks[-1] += end
        offsets.extend(times)
        return
    dues = [times[max(0, (i + 1) * spread // count - 1)] for i in range(count)]
    groups: list[list[bytes]] = [[start]]
    due_times = [times[0]]
    for due, delta in zip(dues, deltas, strict=True):
        if due != due_times[-1]:
            groups.append([])
            due_times.append(due)
        groups[-1].append(delta)
    groups[-1].append(end)
    chunks.extend(b"".join(group) for group in groups)
    offsets.extend(due_times)


def _tokens_in(block: Block) -> int:
    return count_text(block.text()) if block.kind == "tool_use" else len(block.pieces)


def _block_parts(
    index: int, block: Block, quirks: frozenset[str]
) -> tuple[bytes, list[bytes], bytes]:
    """A block's content_block_start, its deltas, and what closes it (signature, stop)."""
    start: dict[str, Any]
    if block.kind == "thinking":
        start = {"type": "thinking", "thinking": ""}
        if "start_without_signature" not in quirks:
            start["signature"] = ""
    elif block.kind == "text":
        start = {"type": "text", "text": ""}
    else:
        start = {"type": "tool_use", "id": block.tool_id, "name": block.tool_name, "input": {}}
    head = _event(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": start},
    )
    prefix = (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
        b'"delta":{"type":"%s","%s":'
        % (index, _DELTA_KIND[block.kind].encode(), _DELTA_FIELD[block.kind].encode())
    )
    deltas = [prefix + orjson.dumps(piece) + b"}}\n\n" for piece in block.pieces]
    end = b""
    if block.kind == "thinking":
        signature = {"type": "signature_delta", "signature": block.signature}
        end = _event(
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": signature},
        )
    end += _event("content_block_stop", {"type": "content_block_stop", "index": index})
    return head, deltas, end


def _final_block(block: Block) -> dict[str, Any]:
    if block.kind == "thinking":
        return {"type": "thinking", "thinking": block.text(), "signature": block.signature}
    if block.kind == "text":
        return {"type": "text", "text": block.text()}
    return {
        "type": "tool_use",
        "id": block.tool_id,
        "name": block.tool_name,
        "input": block.tool_input,
    }


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "input_tokens": reply.input_tokens,
        "output_tokens": reply.output_tokens,
        "cache_creation_input_tokens": reply.cache_creation_input_tokens,
        "cache_read_input_tokens": reply.cache_read_input_tokens,
    }


def _zero_usage() -> dict[str, int]:
    return {"input_tokens": 0, "output_tokens": 0}


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

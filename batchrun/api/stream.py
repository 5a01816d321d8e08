"""Server-sent events of a streamed Messages reply, assembled into the final message with timings.

This is the hot path of every call, so it parses bytes itself (orjson, one pass, no per-event
objects) instead of using the SDK's event classes. It follows Anthropic's event contract and
tolerates MiniMax's reported quirks: a thinking block that starts without ``signature``, and usage
spread over ``message_start``, ``message_delta`` and ``message_stop`` (each field is a running
total, so the largest value seen wins).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

_DELTA_FIELDS = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "input_json_delta": "partial_json",
}
_BLOCK_FIELDS = {"text": "text", "thinking": "thinking", "tool_use": "input"}
# An event in its usual form: an optional ``event:`` line and exactly one ``data:`` line.
_PLAIN_EVENT = re.compile(rb"(?:^|\n\n)(?:event:[^\n]*\n)?data:([^\n]*)(?=\n\n|\Z)")


class StreamError(Exception):
    """An ``error`` event inside the stream, or a stream that breaks the event contract."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


@dataclass(kw_only=True, slots=True)
class Timings:
    """Seconds after the request was sent (perf_counter based) at which things happened."""

    first_event: float | None = None
    first_token: float | None = None  # first content delta of any kind
    first_thinking: float | None = None
    first_text: float | None = None
    last_token: float | None = None
    done: float | None = None


@dataclass(kw_only=True, slots=True)
class _Block:
    data: dict[str, Any]
    pieces: list[str] = field(default_factory=list)


class StreamAssembler:
    """Feed it the response bytes as they arrive; it builds the message and records timings."""

    def __init__(self, started: float) -> None:
        self._started = started
        self._buffer = b""
        self._message: dict[str, Any] | None = None
        self._blocks: list[_Block] = []
        self._usage: dict[str, Any] = {}
        self.timings = Timings()
        self.finished = False

    def feed(self, chunk: bytes, now: float) -> None:
        """Parse every complete event in what has arrived; ``now`` is when ``chunk`` came.

        Raises StreamError for anything that breaks the event contract (an event that is not a
        JSON object, a delta for a block never started, a missing field), so that a malformed
        reply is one failed attempt, never a crash of the run.
        """
        try:
            self._feed(chunk, now)
        except StreamError:
            raise
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise StreamError("malformed_stream", f"a malformed event: {exc!r}"[:300]) from exc

    def _feed(self, chunk: bytes, now: float) -> None:
        data = self._buffer + chunk if self._buffer else chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        cut = data.rfind(b"\n\n")
        if cut < 0 or self.finished:  # nothing after message_stop counts
            self._buffer = data
            return
        complete, self._buffer = data[:cut], data[cut + 2 :]
        payloads = _PLAIN_EVENT.findall(complete)
        # One regex pass gives every payload when every event has the usual form (as many matches
        # as events); otherwise (comments, data split over lines) go event by event.
        if len(payloads) != complete.count(b"\n\n") + 1:
            payloads = [_payload(raw) for raw in complete.split(b"\n\n")]
        self._events(payloads, now - self._started)

    def _events(self, payloads: list[bytes], elapsed: float) -> None:
        blocks = self._blocks
        kinds: set[str] = set()
        for payload in payloads:
            if self.finished:
                break
            if not payload:
                continue  # a comment or an event without data
            event = orjson.loads(payload)
            if not isinstance(event, dict):
                raise StreamError(
                    "malformed_stream", f"an event that is not an object: {payload[:80]!r}"
                )
            kind = event.get("type")
            if kind == "content_block_delta":  # the hot path: one per token
                delta = event["delta"]
                name = _DELTA_FIELDS.get(delta.get("type"))
                if name is not None:
                    blocks[event["index"]].pieces.append(delta[name])
                    kinds.add(delta["type"])
                    continue
            if self.timings.first_event is None:
                self.timings.first_event = elapsed
            handler = _HANDLERS.get(str(kind))
            if handler is not None:
                handler(self, event, elapsed)
        if kinds:
            self._note_tokens(kinds, elapsed)

    def _note_tokens(self, kinds: set[str], elapsed: float) -> None:
        timings = self.timings
        if timings.first_event is None:
            timings.first_event = elapsed
        if timings.first_token is None:
            timings.first_token = elapsed
        if "text_delta" in kinds and timings.first_text is None:
            timings.first_text = elapsed
        if "thinking_delta" in kinds and timings.first_thinking is None:
            timings.first_thinking = elapsed
        timings.last_token = elapsed

    def _on_message_start(self, event: dict[str, Any], elapsed: float) -> None:
        self._message = dict(event["message"])
        self._merge_usage(self._message.get("usage"))

    def _on_block_start(self, event: dict[str, Any], elapsed: float) -> None:
        index = event["index"]
        while len(self._blocks) <= index:
            self._blocks.append(_Block(data={}))
        self._blocks[index] = _Block(data=dict(event["content_block"]))

    def _on_block_delta(self, event: dict[str, Any], elapsed: float) -> None:
        delta = event["delta"]
        kind = delta.get("type")
        block = self._blocks[event["index"]]
        if kind == "signature_delta":
            block.data["signature"] = delta["signature"]
        elif kind == "citations_delta":
            block.data.setdefault("citations", None)
            block.data["citations"] = [*(block.data["citations"] or []), delta["citation"]]

    def _on_message_delta(self, event: dict[str, Any], elapsed: float) -> None:
        message = self._require_message()
        for key, value in event.get("delta", {}).items():
            message[key] = value
        self._merge_usage(event.get("usage"))

    def _on_message_stop(self, event: dict[str, Any], elapsed: float) -> None:
        self._merge_usage(event.get("usage"))
        self.timings.done = elapsed
        self.finished = True

    def _on_error(self, event: dict[str, Any], elapsed: float) -> None:
        error = event.get("error") or {}
        raise StreamError(str(error.get("type", "api_error")), str(error.get("message", "")))

    def _merge_usage(self, usage: dict[str, Any] | None) -> None:
        for key, value in (usage or {}).items():
            current = self._usage.get(key)
            if isinstance(value, int) and isinstance(current, int):
                self._usage[key] = max(current, value)
            elif value is not None or key not in self._usage:
                self._usage[key] = value

    def _require_message(self) -> dict[str, Any]:
        if self._message is None:
            raise StreamError("api_error", "the stream sent events before message_start")
        return self._message

    def message(self) -> dict[str, Any]:
        """The final message in Anthropic's shape (call once the stream has finished)."""
        message = dict(self._require_message())
        try:
            message["content"] = [_finish(block) for block in self._blocks]
        except ValueError as exc:  # tool input that is not JSON
            raise StreamError("malformed_stream", f"a tool input that is not JSON: {exc}") from exc
        message["usage"] = dict(self._usage)
        return message


def _payload(raw: bytes) -> bytes:
    """The data of one event: its data lines joined by newlines (empty when it has none)."""
    return b"\n".join(line[5:] for line in raw.split(b"\n") if line.startswith(b"data:"))


def _finish(block: _Block) -> dict[str, Any]:
    data = dict(block.data)
    kind = data.get("type")
    name = _BLOCK_FIELDS.get(str(kind))
    if name == "input":
        text = "".join(block.pieces)
        data["input"] = orjson.loads(text) if text else data.get("input", {})
    elif name is not None:
        data[name] = data.get(name, "") + "".join(block.pieces)
    return data


_HANDLERS = {
    "message_start": StreamAssembler._on_message_start,
    "content_block_start": StreamAssembler._on_block_start,
    "content_block_delta": StreamAssembler._on_block_delta,
    "message_delta": StreamAssembler._on_message_delta,
    "message_stop": StreamAssembler._on_message_stop,
    "error": StreamAssembler._on_error,
}


def block_texts(message: dict[str, Any]) -> tuple[str, str]:
    """(text, thinking) of a final message: every block of each kind, joined."""
    text = "".join(b.get("text", "") for b in message.get("content", []) if b.get("type") == "text")
    thinking = "".join(
        b.get("thinking", "") for b in message.get("content", []) if b.get("type") == "thinking"
    )
    return text, thinking

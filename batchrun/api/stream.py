"""Server-sent events of a streamed Messages reply, assembled into the final message with timings.

This is the hot path of every call, so it parses bytes itself (orjson, one pass, no per-event
objects) instead of using the SDK's event classes. It follows Anthropic's event contract and
tolerates MiniMax's reported quirks: a thinking block that starts without ``signature``; usage
spread over ``message_start``, ``message_delta`` and ``message_stop`` (each field is a running
total, so the largest value seen wins); reasoning leaked into the text as ``<think>...</think>``
(its timings are thinking, not text: see ``_TextWatch``; ``split_answer`` takes it out of the
answer); and an empty reply (no content blocks, or ``content: null``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

_DELTA_FIELDS = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "input_json_delta": "partial_json",
}
_BLOCK_FIELDS = {"text": "text", "thinking": "thinking", "tool_use": "input"}
# A text or thinking delta exactly as Anthropic and MiniMax write it, read without a JSON parse:
# the block index, "text" or "thinking", then the inside of the text's JSON string, either plain
# characters (its UTF-8 is the text) or with escapes (decoded by JSON). No quote is left
# unescaped, so the event has exactly these keys; any other form is parsed whole.
_DELTA = (
    rb'\{"type":"content_block_delta","index":(0|[1-9][0-9]*),"delta":\{"type":"(text|thinking)'
    rb'_delta","\2":"(?:([^"\\\x00-\x1f]*)|((?:[^"\\\x00-\x1f]|\\[^\x00-\x1f])*))"\}\}'
)
# Every event of a read in its usual form (an optional ``event:`` line, exactly one ``data:``
# line): a delta as above (groups 1-4), or any other event's payload (group 5).
_EVENTS = re.compile(
    rb"(?:^|\n\n)(?:event:[^\n]*\n)?data:(?: ?" + _DELTA + rb"(?=\n\n|\Z)|([^\n]*)(?=\n\n|\Z))"
)
# A read that is exactly one delta event (the common read of a paced stream).
_ONE_DELTA = re.compile(rb"event: content_block_delta\ndata: " + _DELTA + rb"\n\n").fullmatch
_Event = tuple[bytes, bytes, bytes, bytes, bytes]  # _EVENTS' groups; b"" where one did not match
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
THINK_LEAKED, EMPTY_REPLY = "think_leaked", "empty_reply"  # the flags of a result
_BLANK_LINES = re.compile(r"\A\s*\n")  # leading blank lines (not the next line's indent)


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


class _TextWatch:
    """Finds when the visible text of a reply began, reading its text pieces in arrival order.

    A reply whose text starts (after whitespace) with ``<think>`` leaked its reasoning into the
    text: that part is thinking, and the visible text begins with the first non-blank character
    after ``</think>``. The tags may be split over deltas. The watch decides at the first text of a
    normal reply and is then done, so only leaked reasoning costs more than a glance; inside it,
    only a tag's length of text is carried from one read to the next.
    """

    __slots__ = ("_block", "_carry", "_piece", "_state", "done", "started")

    def __init__(self) -> None:
        # sniff -> plain (a normal reply), or sniff -> inside -> blank -> shown (leaked reasoning)
        self._state = "sniff"
        self._carry = ""  # sniff: the text so far; inside: the tail that may begin </think>
        self._block = 0  # the cursor: the next piece to read
        self._piece = 0
        self.started: float | None = None  # when the first text piece came
        self.done = False  # the visible text has begun: nothing more to watch

    def scan(self, blocks: list[_Block], elapsed: float, timings: Timings) -> None:
        """Read the text pieces that came since the last scan, all at ``elapsed``."""
        for piece in self._new_pieces(blocks):
            if self.started is None:
                self.started = elapsed
            self._read(piece, elapsed, timings)
            if self.done:
                return

    def finish(self, timings: Timings) -> None:
        """At the end of the stream: text that never settled (only blanks, or a lone ``<th``) was
        plain visible text from its first piece."""
        if self._state == "sniff" and self.started is not None and timings.first_text is None:
            timings.first_text = self.started

    def _new_pieces(self, blocks: list[_Block]) -> Iterable[str]:
        while self._block < len(blocks):
            block = blocks[self._block]
            if block.data.get("type") == "text":
                while self._piece < len(block.pieces):
                    self._piece += 1
                    yield block.pieces[self._piece - 1]
            if self._block + 1 == len(blocks):
                return  # the last block may still grow
            self._block, self._piece = self._block + 1, 0

    def _read(self, piece: str, elapsed: float, timings: Timings) -> None:
        if self._state == "sniff":
            piece = self._sniff(piece, timings)
        if self._state == "inside":
            piece = self._inside(piece)
        if self._state == "blank" and piece.strip():
            self._state, self.done = "shown", True
            if timings.first_text is None:
                timings.first_text = elapsed

    def _sniff(self, piece: str, timings: Timings) -> str:
        """Decide from the first non-blank characters; return what follows ``<think>``."""
        text = (self._carry + piece).lstrip()
        self._carry = text
        if not text or (len(text) < len(THINK_OPEN) and THINK_OPEN.startswith(text)):
            return ""  # not decided yet
        self._carry = ""
        if not text.startswith(THINK_OPEN):
            self._state, self.done = "plain", True
            if timings.first_text is None:
                timings.first_text = self.started
            return ""
        self._state = "inside"
        if timings.first_thinking is None:
            timings.first_thinking = self.started
        return text[len(THINK_OPEN) :]

    def _inside(self, piece: str) -> str:
        """Look for ``</think>``; return what follows it."""
        text = self._carry + piece
        end = text.find(THINK_CLOSE)
        if end < 0:
            self._carry = text[-(len(THINK_CLOSE) - 1) :]
            return ""
        self._state, self._carry = "blank", ""
        return text[end + len(THINK_CLOSE) :]


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
        # Events other than ping (and comments) so far: the client's idle deadline counts only
        # these, so a stream that only pings is stalled (MiniMax's streams that never end).
        self.events = 0
        self._watch = _TextWatch()
        self._steady = False  # a token came and was noted: _one_delta may take the next ones

    def feed(self, chunk: bytes, now: float) -> None:
        """Parse every complete event in what has arrived; ``now`` is when ``chunk`` came.

        Raises StreamError for anything that breaks the event contract (an event that is not a
        JSON object, a delta for a block never started, a missing field), so that a malformed
        reply is one failed attempt, never a crash of the run.
        """
        try:
            if self._steady and not self._buffer and self._one_delta(chunk, now):
                return
            self._feed(chunk, now)
        except StreamError:
            raise
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise StreamError("malformed_stream", f"a malformed event: {exc!r}"[:300]) from exc

    def _one_delta(self, chunk: bytes, now: float) -> bool:
        """The hot path at one event per read: a read that is exactly one text or thinking delta,
        after the first of its kind (whose times the full path notes). False when it is not."""
        match = _ONE_DELTA(chunk)
        if match is None:
            return False
        index, kind, plain, escaped = match.groups()
        if not (self._watch.done if kind == b"text" else self.timings.first_thinking is not None):
            return False
        piece = plain.decode() if escaped is None else orjson.loads(b'"' + escaped + b'"')
        self._blocks[int(index)].pieces.append(piece)
        self.events += 1
        self.timings.last_token = now - self._started
        return True

    def _feed(self, chunk: bytes, now: float) -> None:
        data = self._buffer + chunk if self._buffer else chunk
        if data.find(b"\r") >= 0:  # not ``in``: bytes' ``in`` raises and clears a TypeError
            data = data.replace(b"\r\n", b"\n")
        cut = data.rfind(b"\n\n")
        if cut < 0 or self.finished:  # nothing after message_stop counts
            self._buffer = data
            return
        self._buffer = data[cut + 2 :]
        events: list[_Event] = _EVENTS.findall(data, 0, cut)
        # One regex pass gives every event when every event has the usual form (as many matches
        # as events); otherwise (comments, data split over lines) go event by event.
        if len(events) != data.count(b"\n\n", 0, cut) + 1:
            events = [(b"", b"", b"", b"", _payload(raw)) for raw in data[:cut].split(b"\n\n")]
        self._events(events, now - self._started)

    def _events(self, events: list[_Event], elapsed: float) -> None:
        blocks = self._blocks
        text = thinking = other = False  # whether this read carried text, thinking, other deltas
        quiet = 0
        for position, (index, kind, plain, escaped, payload) in enumerate(events):
            if self.finished:
                quiet += len(events) - position  # nothing after message_stop counts
                break
            if kind:  # the hot path, one per token
                piece = orjson.loads(b'"' + escaped + b'"') if escaped else plain.decode()
                blocks[int(index)].pieces.append(piece)
                if kind == b"text":
                    text = True
                else:
                    thinking = True
            elif not payload:
                quiet += 1  # a comment or an event without data
            else:
                delta = self._event(payload, elapsed)
                if delta is None:
                    quiet += 1
                elif delta:
                    other = True
                    text |= delta == "text_delta"
                    thinking |= delta == "thinking_delta"
        self.events += len(events) - quiet
        if text or thinking or other:
            self._note_tokens(text, thinking, elapsed)
        if self.finished:
            self._watch.finish(self.timings)

    def _event(self, payload: bytes, elapsed: float) -> str | None:
        """Handle one event parsed whole. Returns the type of the content delta it was, "" for
        any other event, None for a ping."""
        event = orjson.loads(payload)
        if not isinstance(event, dict):
            raise StreamError(
                "malformed_stream", f"an event that is not an object: {payload[:80]!r}"
            )
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event["delta"]
            name = _DELTA_FIELDS.get(delta.get("type"))
            if name is not None:
                self._blocks[event["index"]].pieces.append(delta[name])
                return str(delta["type"])
        if self.timings.first_event is None:
            self.timings.first_event = elapsed
        if kind == "ping":
            return None
        handler = _HANDLERS.get(str(kind))
        if handler is not None:
            handler(self, event, elapsed)
        return ""

    def _note_tokens(self, text: bool, thinking: bool, elapsed: float) -> None:
        timings = self.timings
        if timings.first_event is None:
            timings.first_event = elapsed
        if timings.first_token is None:
            timings.first_token = elapsed
        if thinking and timings.first_thinking is None:
            timings.first_thinking = elapsed
        if text and not self._watch.done:
            self._watch.scan(self._blocks, elapsed, timings)
        timings.last_token = elapsed
        self._steady = not self.finished

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
        self._steady = False

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
    """(text, thinking) of a final message as received: every block of each kind, joined.

    ``content: null`` (MiniMax's empty reply) has neither."""
    content = message.get("content") or []
    text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
    thinking = "".join(b.get("thinking", "") for b in content if b.get("type") == "thinking")
    return text, thinking


@dataclass(frozen=True, kw_only=True, slots=True)
class Answer:
    """What a reply says: the visible answer, its thinking, and what was odd about it."""

    text: str  # the visible answer: what grading, exports and the dashboard show
    thinking: str  # thinking blocks, then any reasoning leaked into the text
    flags: tuple[str, ...] = ()  # THINK_LEAKED, EMPTY_REPLY

    @property
    def flag_text(self) -> str | None:
        """The flags as stored: comma-separated, None when there are none."""
        return ",".join(self.flags) or None


def split_answer(message: dict[str, Any]) -> Answer:
    """The visible answer of a final message, with leaked ``<think>`` reasoning taken out.

    Text that starts (after blanks) with ``<think>`` and holds ``</think>``: the part inside is
    thinking, the answer is what follows (leading blank lines dropped). Without ``</think>`` (cut
    by max_tokens) all of it is thinking. The message itself is left as received.
    """
    text, thinking = block_texts(message)
    flags = [EMPTY_REPLY] if _is_empty(message.get("content")) else []
    if text.lstrip().startswith(THINK_OPEN):
        inner, closed, after = text.lstrip()[len(THINK_OPEN) :].partition(THINK_CLOSE)
        thinking = "\n\n".join(part for part in (thinking, inner.strip()) if part)
        text = _BLANK_LINES.sub("", after) if closed else ""
        flags.append(THINK_LEAKED)
    return Answer(text=text, thinking=thinking, flags=tuple(flags))


def _is_empty(content: list[dict[str, Any]] | None) -> bool:
    """No content at all: no blocks, ``content: null``, or only blank text blocks."""
    return all(b.get("type") == "text" and not b.get("text", "").strip() for b in content or [])

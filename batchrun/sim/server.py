"""The simulator's HTTP layer: a plain ASGI application, served by uvicorn (uvloop, httptools).

Routes: POST /v1/messages and POST /v1/messages/count_tokens, also under /anthropic; GET
/_sim/stats and POST /_sim/reset. Anything else is a plain-text ``404 page not found``, as
MiniMax's host answers (field evidence row 15). Every response carries a ``request-id`` header.

Plain ASGI on uvicorn served 1.2-1.9x the requests of aiohttp.web on this machine (README,
"Simulator throughput"); writes are coalesced because each write is a system call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import orjson
import uvicorn

from batchrun.sim import errors
from batchrun.sim.core import SimulatorCore
from batchrun.sim.errors import ApiFailure
from batchrun.sim.generate import Reply, draw_reply
from batchrun.sim.render import message_body, stream_plan
from batchrun.sim.shared import Ledger, LocalLedger
from batchrun.sim.ticker import RESOLUTION_S, Ticker
from batchrun.sim.timing import TimingLog
from batchrun.sim.validate import SimRequest, validate_count_request, validate_message_request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_NOT_FOUND = b"404 page not found\n"  # Go's net/http answer, which MiniMax's host sends
_PING = b'event: ping\ndata: {"type":"ping"}\n\n'
_STREAM_ERROR = b"event: error\ndata: " + orjson.dumps(errors.STREAM_ERROR) + b"\n\n"
_DROP_NOTICE = "ASGI callable returned without completing response."


class _DropFilter(logging.Filter):
    """Silence uvicorn's complaint about the connections the simulator drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _DROP_NOTICE


logging.getLogger("uvicorn.error").addFilter(_DropFilter())


class QuietServer(uvicorn.Server):
    """uvicorn's server without its signal handling: whoever runs the simulator decides that."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class SimulatorApp:
    """The ASGI application of a simulator with these settings."""

    def __init__(
        self, core: SimulatorCore, ledger: Ledger | None = None, timing: TimingLog | None = None
    ) -> None:
        """``ledger``: where the shared decisions are kept (sim/shared.py); default ``core``."""
        self.core = core
        self.ledger = ledger or LocalLedger(core)
        self.timing = timing
        tick = core.settings.tick
        self.ticker = Ticker(min(tick, RESOLUTION_S) if tick > 0 else RESOLUTION_S)
        self._routes: dict[tuple[str, str], Callable[[Scope, Receive, Send], Awaitable[None]]] = {
            ("GET", "/_sim/stats"): self._stats,
            ("POST", "/_sim/reset"): self._reset,
        }
        for prefix in ("", "/anthropic"):
            self._routes["POST", f"{prefix}/v1/messages"] = self._messages
            self._routes["POST", f"{prefix}/v1/messages/count_tokens"] = self._count_tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        handler = self._routes.get((scope["method"], scope["path"]))
        if handler is None:
            await _send_bytes(send, _NOT_FOUND, 404, _TEXT)
            return
        await handler(scope, receive, send)

    async def _messages(self, scope: Scope, receive: Receive, send: Send) -> None:
        core = self.core
        core.stats.messages_total += 1
        body = await _read_json(receive, core.settings.max_body_bytes)
        model = _model_of(body)
        try:
            core.authorize(_headers(scope))
            checked = validate_message_request(_sized(body), core.catalog, core.settings)
            await self.ledger.admit(model, checked.input_tokens)
            fault = core.draw_fault(model)
        except ApiFailure as failure:
            core.stats.record(model, _outcome(failure.status))
            await self._send_error(send, failure)
            return
        reply = draw_reply(checked, core.settings, await self.ledger.cached_tokens(checked))
        core.stats.in_flight += 1
        try:
            outcome = await self._answer(receive, send, checked, reply, fault)
        finally:
            core.stats.in_flight -= 1
        served = outcome == "ok"
        if served:
            self.ledger.settle(model, reply.output_tokens)
        core.stats.record(
            model,
            outcome,
            stalled=fault == "stall",
            input_tokens=reply.input_tokens if served else 0,
            output_tokens=reply.output_tokens if served else 0,
        )

    async def _answer(
        self, receive: Receive, send: Send, checked: SimRequest, reply: Reply, fault: str | None
    ) -> str:
        if checked.stream:
            stream = _Stream(self.core, receive, send, reply, fault, timing=self.timing)
            return await stream.run(self.ticker)
        total = reply.token_offsets[-1] if reply.token_offsets else reply.start_offset
        if fault == "stall":
            total += self.core.settings.stall_seconds
        await asyncio.sleep(total)
        body = orjson.dumps(message_body(reply))
        if fault == "drop":
            # Promise the whole body, send part of it, and end the connection.
            headers = [*_JSON, (b"content-length", str(len(body)).encode()), _request_id()]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            cut = len(body) * self.core.fault_point(100) // 100
            await send({"type": "http.response.body", "body": body[:cut], "more_body": True})
            return "dropped"
        if fault == "endless":  # no stream to ping on: the answer just never comes
            await _client_gone(receive)
            return "client_gone"
        if fault == "stream_error":  # no stream to carry an error event: a 500 instead
            await self._send_error(send, errors.server_error())
            return "dropped"
        await _send_bytes(send, body, 200, _JSON)
        return "ok"

    async def _count_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        core = self.core
        core.stats.count_tokens_total += 1
        body = await _read_json(receive, core.settings.max_body_bytes)
        try:
            core.authorize(_headers(scope))
            model, tokens = validate_count_request(_sized(body), core.catalog, core.settings)
            if not core.count_tokens_allowed(model.name):
                raise errors.invalid(f"count_tokens is not supported for model {model.name}")
        except ApiFailure as failure:
            await self._send_error(send, failure)
            return
        await _send_json(send, {"input_tokens": tokens})

    async def _stats(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send_json(send, await self.ledger.stats())

    async def _reset(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.ledger.reset()
        await _send_json(send, {"reset": True})

    async def _send_error(self, send: Send, failure: ApiFailure) -> None:
        headers = [_request_id(failure.request_id)]
        retry_after = self.core.settings.retry_after
        if failure.status == 429 and retry_after is not None:
            headers.append((b"retry-after", f"{retry_after:g}".encode()))
        if failure.delay > 0:  # a 408 comes only after the request has waited
            await asyncio.sleep(failure.delay)
        await _send_json(send, failure.body(), failure.status, headers)


class _Stream:
    """Sends one SSE reply: each write carries every chunk that has fallen due."""

    def __init__(
        self,
        core: SimulatorCore,
        receive: Receive,
        send: Send,
        reply: Reply,
        fault: str | None,
        *,
        timing: TimingLog | None = None,
    ) -> None:
        self.core = core
        self.reply = reply
        self.timing = timing
        self.request_id = errors.new_request_id()
        self.receive = receive
        self.send = send
        self.plan = stream_plan(reply, core.settings.quirks)
        self.fault = fault
        # an endless stream or an error event comes after message_start and part of the answer
        after_start = fault in ("endless", "stream_error")
        chunks = len(self.plan.chunks)
        self.cut = core.fault_point(chunks, after_start=after_start) if fault else -1
        # the chunk that carries the first content token, and when it went out (timing log only)
        self.first_chunk = _first_delta(self.plan.chunks) if timing is not None else -1
        self.first_token: float | None = None
        self.last_byte = 0.0  # when the last write began

    async def run(self, ticker: Ticker) -> str:
        """Send the stream, waking on ``ticker``; return its outcome: ok, dropped or
        client_gone."""
        gone = asyncio.ensure_future(_client_gone(self.receive))
        try:
            headers = [*_SSE, _request_id(self.request_id)]
            await self.send({"type": "http.response.start", "status": 200, "headers": headers})
            outcome = await self._send_chunks(gone, ticker)
        finally:
            gone.cancel()
        if self.timing is not None and outcome == "ok":
            reply = self.reply
            self.timing.record(
                self.request_id, reply.message_id, reply.model, self.first_token, self.last_byte
            )
        return outcome

    def _note_times(self, sent: int, due: int) -> None:
        """Note when the write of chunks [sent, due) begins: the first token's, or the last."""
        now = time.time()
        if sent <= self.first_chunk < due:
            self.first_token = now
        self.last_byte = now

    async def _send_chunks(self, gone: asyncio.Future[None], ticker: Ticker) -> str:
        """The per-event path: one wake-up and one write per chunk that falls due (at MiniMax's
        speeds, one event each), so what it does per chunk is kept to the least."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        chunks, offsets, tick = self.plan.chunks, self.plan.offsets, self.core.settings.tick
        send, count, sent = self.send, len(chunks), 0
        while sent < count:
            due_at = started + offsets[sent]
            now = loop.time()
            if due_at > now:  # not before it is due, nor within a tick of the last write
                await ticker.wait(loop, max(due_at, now + tick))
            if gone.done():
                return "client_gone"
            due = bisect_right(offsets, loop.time() - started, lo=sent + 1)
            if sent <= self.cut < due:  # the injected fault falls in this write
                if self.fault != "stall":
                    await self._write(b"".join(chunks[sent : self.cut]), more=True)
                    return await self._break_off(gone)
                await asyncio.sleep(self.core.settings.stall_seconds)
                self.cut = -1
                continue
            if self.timing is not None:  # the clock read just before the write: see timing.py
                self._note_times(sent, due)
            data = chunks[sent] if due == sent + 1 else b"".join(chunks[sent:due])
            await send({"type": "http.response.body", "body": data, "more_body": due < count})
            sent = due
        return "ok"

    async def _break_off(self, gone: asyncio.Future[None]) -> str:
        """End the stream the way the drawn fault says, once part of the answer is out."""
        if self.fault == "stream_error":
            await self._write(_STREAM_ERROR, more=False)
            return "dropped"
        if self.fault == "endless":
            interval = self.core.settings.ping_interval
            while not gone.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(gone), interval)
                if not gone.done():
                    await self._write(_PING, more=True)
            return "client_gone"
        return "dropped"  # drop: the connection just ends

    async def _write(self, data: bytes, *, more: bool) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": more})


def _first_delta(chunks: list[bytes]) -> int:
    """Index of the first chunk with a content delta (-1: none, an empty reply)."""
    marker = b"event: content_block_delta"
    return next((i for i, chunk in enumerate(chunks) if marker in chunk), -1)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class _TooLarge:
    """A request body over the size limit (read to its end, but not kept)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit


async def _read_json(receive: Receive, limit: int) -> Any:
    """The parsed body, None if it is not JSON, or _TooLarge once it passes ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            parts.append(chunk)
        elif parts:
            parts = []  # drop what was held: the rest is only read to keep the connection sane
        if not message.get("more_body"):
            break
    if size > limit:
        return _TooLarge(limit)
    try:
        return orjson.loads(b"".join(parts))
    except orjson.JSONDecodeError:
        return None


def _sized(body: Any) -> Any:
    """``body``, or the refusal of a body over MiniMax's size limit (assumed 400, 2013)."""
    if isinstance(body, _TooLarge):
        raise errors.invalid(
            f"the request body is over the {body.limit / (1024 * 1024):g} MB limit"
        )
    return body


async def _client_gone(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _request_id(value: str | None = None) -> tuple[bytes, bytes]:
    """The ``request-id`` header every response carries (C12)."""
    return (b"request-id", (value or errors.new_request_id()).encode())


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def _model_of(body: Any) -> str:
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else "(none)"


def _outcome(status: int) -> str:
    if status == 429:
        return "429"
    return "4xx" if status < 500 else "5xx"


async def _send_json(
    send: Send, data: Any, status: int = 200, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _send_bytes(send, orjson.dumps(data), status, [*_JSON, *(extra or [])])


async def _send_bytes(
    send: Send, body: bytes, status: int, headers: list[tuple[bytes, bytes]]
) -> None:
    if not any(name == b"request-id" for name, _ in headers):
        headers = [*headers, _request_id()]
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

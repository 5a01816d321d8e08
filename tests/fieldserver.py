"""A tiny MiniMax-shaped HTTP server on 127.0.0.1 for the client's field tests.

It answers each Messages call with what the test's ``script`` says for that call (a success
stream, an error body, or a stream broken by ``event: error``), answers count_tokens as the test
says, and records every request's headers. The error bodies are the shared contracts' (C1-C8);
the simulator will serve the same ones, and until then this server lets a test use real HTTP.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from tests.test_stream_parser import sse
from tests.thinkserver import message_end, message_start, text_delta, text_start, text_stop

KEY_MISSING = (
    "login fail: Please carry the API secret key in the 'Authorization' field of the request "
    "header (1004)"
)
OVERFLOW = "invalid params, context window exceeds limit (2013)"
M3_CAP = "invalid params, does not support max tokens > 524288 (2013)"
THINKING = 'invalid params, invalid thinking.type: "enabled" (allowed: adaptive, disabled) (2013)'
BALANCE = "insufficient balance (1008)"
SYSTEM_ERROR = "system error (1033)"
TIMEOUT = "request timeout (1001)"
STREAM_ERROR = {"type": "error", "error": {"type": "api_error", "message": "unknown error (1000)"}}


@dataclass(frozen=True)
class Reply:
    """What the server answers to one Messages call."""

    status: int = 200
    error_type: str = "api_error"
    message: str = ""
    text: str = "the complete answer"
    break_after: str | None = None  # stream this much text, then `event: error`
    raw: bytes | None = None  # a body that is not MiniMax's JSON (e.g. a proxy's 408)
    error_event: dict[str, Any] | None = None  # the `event: error` sent after break_after


def error_body(error_type: str, message: str, request_id: str) -> bytes:
    """MiniMax's error body."""
    return orjson.dumps(
        {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": request_id,
        }
    )


def quota_message(reset_at: float) -> str:
    """The 2056 message (C4) with its reset instant, to the second, with a trailing Z."""
    stamp = datetime.fromtimestamp(math.ceil(reset_at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        "usage limit exceeded, 5-hour usage limit reached for Token Plan Starter (1500/1500 used), "
        f"resets at {stamp} (2056)"
    )


def quota(reset_in: float | None) -> Reply:
    """A 2056 refusal whose reset is ``reset_in`` seconds from now (None: no reset given)."""
    message = (
        "usage limit exceeded, 5-hour usage limit reached for Token Plan Starter (2056)"
        if reset_in is None
        else quota_message(time.time() + reset_in)
    )
    return Reply(status=429, error_type="rate_limit_error", message=message)


Script = Callable[[int, dict[str, Any]], Reply]  # (call number of this model from 1, body)
Counting = Callable[[dict[str, Any]], Reply | int]  # an error, or the input tokens


@dataclass
class FieldServer:
    """The server's script and what it saw; ``base_url`` once started."""

    script: Script = lambda number, body: Reply()
    counting: Counting = lambda body: 12
    api_key: str = "sk-field-test-key"
    base_url: str = ""
    headers: list[dict[str, str]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)  # Messages calls per model
    counts: int = 0  # count_tokens calls
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _refusal(self, request: web.Request) -> web.Response | None:
        """C1: only `Authorization: Bearer KEY` is accepted."""
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        if request.headers.get("Authorization") == f"Bearer {self.api_key}":
            return None
        message = (
            KEY_MISSING if "Authorization" not in request.headers else "invalid api key (1004)"
        )
        body = error_body("authentication_error", message, "req-auth")
        return web.Response(status=401, body=body, content_type="application/json")

    async def count_tokens(self, request: web.Request) -> web.Response:
        """count_tokens: the script's number, or its refusal."""
        refused = self._refusal(request)
        if refused is not None:
            return refused
        with self._lock:
            self.counts += 1
        answer = self.counting(orjson.loads(await request.read()))
        if isinstance(answer, int):
            return web.json_response({"input_tokens": answer})
        body = error_body(answer.error_type, answer.message, "req-count")
        return web.Response(status=answer.status, body=body, content_type="application/json")

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """A Messages call, answered as the script says for this model's Nth call."""
        refused = self._refusal(request)
        if refused is not None:
            return refused
        body = orjson.loads(await request.read())
        with self._lock:
            number = self.calls[body["model"]] = self.calls.get(body["model"], 0) + 1
        reply = self.script(number, body)
        request_id = f"req-{body['model']}-{number}"
        if reply.status != 200:
            raw = reply.raw or error_body(reply.error_type, reply.message, request_id)
            return web.Response(status=reply.status, body=raw, headers={"request-id": request_id})
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "request-id": request_id}
        )
        await response.prepare(request)
        await response.write(message_start(body["model"], number, input_tokens=12) + text_start())
        if reply.break_after is not None:
            await response.write(text_delta(reply.break_after))
            await response.write(sse("error", reply.error_event or STREAM_ERROR))
            return response
        await response.write(text_delta(reply.text))
        await response.write(text_stop() + message_end(len(reply.text.split())))
        return response


@contextmanager
def field_server(server: FieldServer) -> Iterator[FieldServer]:
    """Serve ``server`` on a free port of 127.0.0.1 in a thread of its own, until the end."""
    app = web.Application()
    app.router.add_post("/anthropic/v1/messages", server.messages)
    app.router.add_post("/anthropic/v1/messages/count_tokens", server.count_tokens)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        server.base_url = f"http://127.0.0.1:{port}"

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

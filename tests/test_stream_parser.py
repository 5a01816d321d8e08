"""The SSE assembler on hostile streams: every broken reply is one failed attempt, never a crash."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import orjson
import pytest
import uvicorn

from batchrun.api.client import ApiClient
from batchrun.api.endpoint import Deadlines, Endpoint
from batchrun.api.failures import CallFailure, FailureKind
from batchrun.api.stream import StreamAssembler, StreamError


def sse(name: str, data: dict[str, Any]) -> bytes:
    """One server-sent event."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


MESSAGE = {"id": "m", "type": "message", "role": "assistant", "model": "M", "content": []}
START = sse(
    "message_start",
    {
        "type": "message_start",
        "message": {**MESSAGE, "usage": {"input_tokens": 3, "output_tokens": 0}},
    },
)
BLOCK = sse(
    "content_block_start",
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
)
DELTA = sse(
    "content_block_delta",
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
)
STOP = (
    sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    + sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 1},
        },
    )
    + sse("message_stop", {"type": "message_stop"})
)
GOOD = START + BLOCK + DELTA + STOP


def assemble(*chunks: bytes) -> StreamAssembler:
    assembler = StreamAssembler(0.0)
    for chunk in chunks:
        assembler.feed(chunk, 1.0)
    return assembler


def test_a_good_stream_split_anywhere_gives_the_same_message() -> None:
    whole = assemble(GOOD).message()
    for cut in range(1, len(GOOD), 7):
        assert assemble(GOOD[:cut], GOOD[cut:]).message() == whole
    crlf = GOOD.replace(b"\n", b"\r\n")
    assert assemble(crlf[:50], crlf[50:51], crlf[51:]).message() == whole
    assert whole["content"] == [{"type": "text", "text": "Hi"}]
    assert whole["usage"] == {"input_tokens": 3, "output_tokens": 1}


def test_data_split_over_lines_is_joined() -> None:
    split = DELTA.replace(b'"delta":', b'\ndata: "delta":')
    assert assemble(START, BLOCK, split, STOP).message()["content"][0]["text"] == "Hi"


@pytest.mark.parametrize(
    "extra",
    [
        b": a comment\n\n",
        b"event: ping\n\n",
        b'id: 7\nevent: ping\ndata: {"type":"ping"}\n\n',
        b"\n\n",
        b"data:\n\n",
    ],
    ids=["comment", "event-without-data", "id-line", "extra-blank-line", "empty-data"],
)
def test_unusual_events_in_one_read_give_the_same_message(extra: bytes) -> None:
    """Reads with events of an unusual form take the event-by-event path, with the same result."""
    split = DELTA.replace(b'"delta":', b'\ndata: "delta":')  # data over two lines
    expected = assemble(START, BLOCK, DELTA, DELTA, STOP).message()
    for stream in (
        START + BLOCK + extra + DELTA + split + STOP,
        START + BLOCK + split + extra + DELTA + STOP,
    ):
        assert assemble(stream).message() == expected
        assert assemble(*(bytes([b]) for b in stream)).message() == expected


def test_the_last_token_time_is_that_of_the_read_that_carried_it() -> None:
    assembler = StreamAssembler(0.0)
    assembler.feed(START + BLOCK, 1.0)
    assembler.feed(DELTA, 2.0)
    assembler.feed(DELTA + STOP, 3.0)
    timings = assembler.timings
    assert (timings.first_event, timings.first_token, timings.first_text) == (1.0, 2.0, 2.0)
    assert (timings.last_token, timings.done, timings.first_thinking) == (3.0, 3.0, None)


def test_events_after_message_stop_are_ignored() -> None:
    error = (
        b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"late"}}\n\n'
    )
    assert assemble(GOOD + error).finished


@pytest.mark.parametrize(
    "bad",
    [
        b"data: [DONE]\n\n",
        b"data: 42\n\n",
        b"data: {not json\n\n",
        DELTA.replace(b'"index":0', b'"index":5'),
        b'data: {"type":"content_block_delta","index":0}\n\n',
        b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"}}\n\n',
    ],
    ids=["done-marker", "not-an-object", "not-json", "unknown-block", "no-delta", "before-start"],
)
def test_malformed_events_raise_stream_error(bad: bytes) -> None:
    prefix = b"" if b"message_delta" in bad else START + BLOCK
    with pytest.raises(StreamError):
        assemble(prefix + bad)


def test_tool_input_that_is_not_json_is_a_stream_error() -> None:
    block = {"type": "tool_use", "id": "t", "name": "f", "input": {}}
    delta = {"type": "input_json_delta", "partial_json": "{oops"}
    tool = sse(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    ) + sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
    assembler = assemble(START + tool + STOP)
    with pytest.raises(StreamError):
        assembler.message()


App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@contextlib.contextmanager
def serving(app: App) -> Iterator[str]:
    """Serve an ASGI app on a free port in a thread; yield its base URL."""
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="off", log_level="critical", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def answering(
    status: int, headers: list[tuple[bytes, bytes]], *bodies: bytes, gap: float = 0
) -> App:
    """An API that answers every call with this status and these body parts, ``gap`` s apart."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for part in bodies:
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await anyio.sleep(gap)
        await send({"type": "http.response.body", "body": b""})

    return app


SSE_HEADERS = [(b"content-type", b"text/event-stream")]
JSON_HEADERS = [(b"content-type", b"application/json")]


@pytest.fixture
def broken_server() -> Iterator[str]:
    """An API that answers every call with one malformed stream."""
    with serving(answering(200, SSE_HEADERS, START + BLOCK + b"data: [DONE]\n\n")) as url:
        yield url


async def failure_from(url: str, deadlines: Deadlines, key: str = "k") -> CallFailure:
    client = ApiClient(Endpoint(base_url=url, api_key=key, simulated=True), deadlines, 4)
    try:
        with pytest.raises(CallFailure) as caught:
            await client.stream_message("MiniMax-M2", {"max_tokens": 5, "messages": []})
    finally:
        await client.aclose()
    return caught.value


def error_body(kind: str, message: str) -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req-7"}
    )


@pytest.mark.anyio
async def test_error_answers_are_classified_with_code_retry_after_and_request_id() -> None:
    limited = answering(
        429,
        [*JSON_HEADERS, (b"retry-after", b"3")],
        error_body("rate_limit_error", "rate limit exceeded(RPM) (1002)"),
    )
    with serving(limited) as url:
        failure = await failure_from(url, Deadlines(idle=5, total=10))
    assert (failure.kind, failure.status, failure.code) == (FailureKind.RATE_LIMITED, 429, 1002)
    assert (failure.retry_after, failure.request_id) == (3.0, "req-7")
    assert failure.error_type == "rate_limit_error"
    broke = answering(500, JSON_HEADERS, error_body("api_error", "insufficient balance (1008)"))
    with serving(broke) as url:
        assert (await failure_from(url, Deadlines())).kind is FailureKind.BALANCE


@pytest.mark.anyio
async def test_an_error_that_repeats_the_key_never_shows_it() -> None:
    key = "sk-secret-123"
    denied = answering(401, JSON_HEADERS, error_body("authentication_error", f"bad key {key}"))
    with serving(denied) as url:
        failure = await failure_from(url, Deadlines(), key=key)
    assert failure.kind is FailureKind.AUTH
    assert key not in failure.message
    assert "***" in failure.message
    with serving(
        answering(502, [(b"content-type", b"text/plain")], b"gateway " + key.encode())
    ) as url:
        failure = await failure_from(url, Deadlines(), key=key)
    assert failure.kind is FailureKind.SERVER
    assert key not in failure.message


@pytest.mark.anyio
async def test_a_stream_that_goes_quiet_is_stalled_by_the_idle_watchdog() -> None:
    with serving(answering(200, SSE_HEADERS, START + BLOCK, DELTA, gap=3.0)) as url:
        started = time.perf_counter()
        failure = await failure_from(url, Deadlines(idle=0.3, total=20))
        waited = time.perf_counter() - started
    assert failure.kind is FailureKind.STALLED
    assert waited < 2.5  # the server's next part was 3 s away


@pytest.mark.anyio
async def test_a_stream_that_keeps_dripping_meets_the_total_deadline() -> None:
    with serving(answering(200, SSE_HEADERS, START + BLOCK, *[DELTA] * 30, gap=0.05)) as url:
        failure = await failure_from(url, Deadlines(idle=1.0, total=0.6))
    assert failure.kind is FailureKind.TIMEOUT


@pytest.mark.anyio
async def test_the_client_turns_a_malformed_reply_into_a_retryable_failure(
    broken_server: str,
) -> None:
    endpoint = Endpoint(base_url=broken_server, api_key="k", simulated=True)
    client = ApiClient(endpoint, Deadlines(idle=5, total=10), max_connections=4)
    try:
        with pytest.raises(CallFailure) as caught:
            await client.stream_message("MiniMax-M2", {"max_tokens": 5, "messages": []})
    finally:
        await client.aclose()
    assert caught.value.kind is FailureKind.SERVER
    assert "malformed" in caught.value.message
    assert orjson.dumps(caught.value.message)  # a plain message, fit for the store

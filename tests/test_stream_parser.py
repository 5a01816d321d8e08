"""The SSE assembler on hostile streams: every broken reply is one failed attempt, never a crash."""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import orjson
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st

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


# Hypothesis: any stream, rendered as the API writes it or otherwise, cut anywhere, gives the
# message and the timings the events call for (worked out here from the events, not by the parser).

Block = tuple[str, list[str]]  # kind ("text", "thinking", "tool_use"), its pieces


def pieces_of(whole: Any, cuts: list[int]) -> list[Any]:
    """``whole`` (str or bytes) cut at these sorted offsets."""
    return [whole[a:b] for a, b in itertools.pairwise([0, *cuts, len(whole)])]


@st.composite
def blocks(draw: st.DrawFn) -> list[Block]:
    made: list[Block] = []
    for kind in draw(st.lists(st.sampled_from(["text", "thinking", "tool_use"]), max_size=3)):
        if kind == "tool_use":
            value = draw(st.dictionaries(st.text(max_size=4), st.text(max_size=6), max_size=3))
            raw = orjson.dumps(value).decode()
            cuts = sorted(draw(st.sets(st.integers(1, len(raw) - 1), max_size=4)))
            made.append((kind, pieces_of(raw, cuts)))
        else:
            # no "<": a text starting with <think> is leaked reasoning (tests/test_leaked_think.py)
            piece = st.text(
                st.characters(exclude_categories=["Cs"], exclude_characters="<"), max_size=6
            )
            made.append((kind, draw(st.lists(piece, min_size=1, max_size=6))))
    return made


DELTA_FIELD = {
    "text": ("text_delta", "text"),
    "thinking": ("thinking_delta", "thinking"),
    "tool_use": ("input_json_delta", "partial_json"),
}
STARTED: dict[str, dict[str, Any]] = {
    "text": {"type": "text", "text": ""},
    "thinking": {"type": "thinking", "thinking": "", "signature": ""},
    "tool_use": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
}


def events_of(made: list[Block]) -> list[tuple[str, dict[str, Any]]]:
    """The stream's events in order, as (role in the oracle, data)."""
    start = {**MESSAGE, "usage": {"input_tokens": 3, "output_tokens": 0}}
    out: list[tuple[str, dict[str, Any]]] = [
        ("event", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
    ]
    for index, (kind, pieces) in enumerate(made):
        block = {"type": "content_block_start", "index": index, "content_block": STARTED[kind]}
        out.append(("event", block))
        delta_type, name = DELTA_FIELD[kind]
        for piece in pieces:
            delta = {"type": delta_type, name: piece}
            out.append((kind, {"type": "content_block_delta", "index": index, "delta": delta}))
        if kind == "thinking":
            delta = {"type": "signature_delta", "signature": "sig"}
            out.append(("event", {"type": "content_block_delta", "index": index, "delta": delta}))
        out.append(("event", {"type": "content_block_stop", "index": index}))
    ended = {"stop_reason": "end_turn", "stop_sequence": None}
    out.append(("event", {"type": "message_delta", "delta": ended, "usage": {"output_tokens": 9}}))
    out.append(("stop", {"type": "message_stop"}))
    return out


def expected_message(made: list[Block]) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for kind, pieces in made:
        joined = "".join(pieces)
        if kind == "tool_use":
            content.append({**STARTED[kind], "input": orjson.loads(joined)})
        else:
            content.append({**STARTED[kind], kind: joined})
            if kind == "thinking":
                content[-1]["signature"] = "sig"
    usage = {"input_tokens": 3, "output_tokens": 9}
    extra = {"stop_reason": "end_turn", "stop_sequence": None}
    return {**MESSAGE, **extra, "content": content, "usage": usage}


# Continuation bytes of UTF-8 characters, line feeds (after \r too), and the middle of "data:".
AWKWARD = re.compile(rb"[\x80-\xbf]|\n|(?<=da)ta:")
RENDERINGS: dict[str, Callable[[Any], bytes]] = {
    "api": orjson.dumps,  # as Anthropic and MiniMax write it
    "spaced-ascii": lambda data: json.dumps(data).encode(),  # spaces, \\u escapes
    "compact-python": lambda data: json.dumps(
        data, ensure_ascii=False, separators=(",", ":")
    ).encode(),
}


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Block], list[bytes], list[str], list[int]]:
    """Blocks, the stream's raw events (with their separators), their roles, and cut points."""
    made = draw(blocks())
    as_written = draw(st.booleans())  # exactly as the API writes it: the form of the fast paths
    render = RENDERINGS["api" if as_written else draw(st.sampled_from(sorted(RENDERINGS)))]
    event_line = as_written or draw(st.booleans())
    space = b" " if as_written else draw(st.sampled_from([b"", b" "]))
    newline = b"\n" if as_written else draw(st.sampled_from([b"\n", b"\r\n"]))
    raws, roles = [], []
    for role, data in events_of(made):
        if draw(st.integers(0, 9)) == 0:  # now and then a comment between events
            raws.append(b": keep-alive" + newline + newline)
            roles.append("comment")
        head = b"event: " + data["type"].encode() + newline if event_line else b""
        raws.append(head + b"data:" + space + render(data) + newline + newline)
        roles.append(role)
    if draw(st.booleans()):  # what comes after message_stop does not count
        raws.append(DELTA.replace(b"\n", newline))
        roles.append("after")
    stream = b"".join(raws)
    # Each event its own read (the usual read of a paced stream), with a few cuts anywhere; or
    # cuts anywhere, many where they hurt most: inside a UTF-8 character, inside "data:",
    # between \r and \n.
    cuts = draw(st.sets(st.integers(1, len(stream) - 1), max_size=3))
    if draw(st.booleans()):
        cuts |= set(itertools.accumulate(len(raw) for raw in raws[:-1]))
    else:
        awkward = [m.start() for m in AWKWARD.finditer(stream, 1)] or [1]
        cuts |= draw(st.sets(st.integers(1, len(stream) - 1), max_size=12))
        cuts |= draw(st.sets(st.sampled_from(awkward), max_size=12))
    return made, raws, roles, sorted(cuts)


def oracle_timings(raws: list[bytes], roles: list[str], cuts: list[int]) -> dict[str, Any]:
    """The timings (and event count) the reads call for: an event counts at the read with its
    last byte (reads numbered from 1, as fed below)."""
    ends = itertools.accumulate(len(raw) for raw in raws)
    timed = [
        (float(bisect.bisect_right(cuts, end - 1) + 1), role)
        for end, role in zip(ends, roles, strict=True)
    ]
    tokens = [t for t, role in timed if role in DELTA_FIELD]
    first = {kind: next((t for t, r in timed if r == kind), None) for kind in DELTA_FIELD}
    return {
        "first_event": next(t for t, role in timed if role != "comment"),
        "first_token": tokens[0] if tokens else None,
        "first_thinking": first["thinking"],
        "first_text": first["text"],
        "last_token": tokens[-1] if tokens else None,
        "done": next(t for t, role in timed if role == "stop"),
        "events": sum(role not in ("comment", "ping", "after") for role in roles),
    }


@settings(max_examples=100, deadline=None)
@given(streams())
def test_any_stream_cut_anywhere_gives_its_message_and_timings(
    case: tuple[list[Block], list[bytes], list[str], list[int]],
) -> None:
    made, raws, roles, cuts = case
    assembler = StreamAssembler(0.0)
    for number, read in enumerate(pieces_of(b"".join(raws), cuts), start=1):
        assembler.feed(read, float(number))
    assert assembler.finished
    assert assembler.message() == expected_message(made)
    expected = oracle_timings(raws, roles, cuts)
    got = {name: getattr(assembler.timings, name, None) for name in expected}
    assert {**got, "events": assembler.events} == expected


@pytest.mark.parametrize(
    "bad",
    [
        b'"\\q"',  # an escape JSON does not have
        b'"a\tb"',  # a raw control character
        b'"\xff"',  # not UTF-8
        b'"a","text":"b"',  # a second key: the event is not in the usual form
    ],
    ids=["bad-escape", "control-character", "not-utf8", "duplicate-key"],
)
def test_a_bad_text_in_a_delta_is_what_json_says_it_is(bad: bytes) -> None:
    """The text of a delta read without a JSON parse is checked as JSON checks it."""
    delta = DELTA.replace(b'"Hi"', bad)
    try:
        expected: object = orjson.loads(delta.split(b"data: ", 1)[1])["delta"]["text"]
    except orjson.JSONDecodeError:
        expected = StreamError
    for reads in ((START + BLOCK + DELTA + delta + STOP,), (START + BLOCK, DELTA, delta, STOP)):
        if expected is StreamError:
            with pytest.raises(StreamError):
                assemble(*reads)
        else:
            assert assemble(*reads).message()["content"][0]["text"] == "Hi" + str(expected)


def _delta(index: int, kind: str, text: str) -> bytes:
    delta = {"type": f"{kind}_delta", kind: text}
    return sse(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


THOUGHT = sse(
    "content_block_start",
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": ""},
    },
)
TEXT_1 = sse(
    "content_block_start",
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
)
PING = b'event: ping\ndata: {"type":"ping"}\n\n'
STOP_1 = sse("content_block_stop", {"type": "content_block_stop", "index": 0})
STOP_END = [
    sse("content_block_stop", {"type": "content_block_stop", "index": 1}),
    sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
    sse("message_stop", {"type": "message_stop"}),
]


@pytest.mark.parametrize(
    "odd",
    [
        b"",
        PING,
        _delta(1, "text", 'a "quote"\n'),
        _delta(1, "text", "\u00fcber \u2603"),
        b": hm\n\n",
    ],
    ids=["plain", "ping-inside", "escapes-inside", "unicode", "comment-inside"],
)
def test_a_whole_answer_in_one_read_is_what_its_events_one_by_one_give(odd: bytes) -> None:
    """At time scale 0 a read holds a whole answer (about 1.0 read per answer, bench/peers.py):
    it must give what feeding its events one at a time gives."""
    thinking = [_delta(0, "thinking", f" step {n}") for n in range(5)]
    text = [_delta(1, "text", word) for word in (" the", "", " answer", ",", " 42")]
    events = [START, THOUGHT, *thinking, STOP_1, TEXT_1, *text[:2], odd, *text[2:], *STOP_END]
    events = [event for event in events if event]
    one_by_one = StreamAssembler(0.0)
    for event in events:
        one_by_one.feed(event, 1.0)
    whole = assemble(b"".join(events))
    assert whole.message() == one_by_one.message()
    assert (whole.events, whole.timings) == (one_by_one.events, one_by_one.timings)
    assert whole.message()["content"][0]["thinking"] == "".join(f" step {n}" for n in range(5))
    for cut in range(1, len(b"".join(events)), 97):  # and cut anywhere, in two reads
        joined = b"".join(events)
        assert assemble(joined[:cut], joined[cut:]).message() == one_by_one.message()


def test_a_run_with_a_delta_of_an_unknown_block_is_a_stream_error() -> None:
    text = [_delta(0, "text", word) for word in (" a", " b")]
    with pytest.raises(StreamError):
        assemble(START + BLOCK + text[0] + _delta(3, "text", " c") + text[1] + STOP)
    with pytest.raises(StreamError):
        assemble(START + BLOCK + _delta(3, "text", " c") + _delta(3, "text", " d") + STOP)

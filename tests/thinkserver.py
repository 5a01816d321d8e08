"""A tiny Messages API on 127.0.0.1 that answers with the exact streams of the shared contracts
C9 (a stream that only pings), C10 (reasoning leaked into the text as ``<think>``) and C11 (an
empty reply), chosen by the prompt, so the runner can be tested against them over real HTTP
before (and beside) the simulator's own field behaviour.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import orjson

from batchrun.api.endpoint import Deadlines
from tests.runharness import Run, run_jobs
from tests.test_stream_parser import serving, sse

PING = sse("ping", {"type": "ping"})
LEAKED = ("<think>", "six times seven is 42", "</think>", "\n\n", "42")  # C10, a piece each
CUT = ("<think>", "first I will think about ", "what six times seven")  # cut by max_tokens
PLAIN = ("The answer", " is 42.")
GAP = 0.05  # seconds between the pieces, so that arrival times differ
MODEL = "MiniMax-M3"


def message_start(model: str = MODEL, number: int = 1, input_tokens: int = 9) -> bytes:
    """A stream's first event (C11's and C10's): message ``msg_NUMBER`` of ``model``."""
    message: dict[str, Any] = {
        "id": f"msg_{number}",
        "type": "message",
        "role": "assistant",
        "model": model,
    }
    usage: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": 0}
    return sse(
        "message_start",
        {"type": "message_start", "message": {**message, "content": [], "usage": usage}},
    )


def text_start() -> bytes:
    block = {"type": "text", "text": ""}
    return sse(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    )


def text_delta(text: str) -> bytes:
    delta = {"type": "text_delta", "text": text}
    return sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})


def text_stop() -> bytes:
    return sse("content_block_stop", {"type": "content_block_stop", "index": 0})


def message_end(output_tokens: int, stop_reason: str = "end_turn") -> bytes:
    """message_delta (with the stop reason and output tokens) and message_stop."""
    delta = {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}}
    return sse("message_delta", {**delta, "usage": {"output_tokens": output_tokens}}) + sse(
        "message_stop", {"type": "message_stop"}
    )


def text_reply(pieces: tuple[str, ...], stop_reason: str = "end_turn") -> list[bytes]:
    """A reply of one text block, a piece per part (each sent ``GAP`` after the last)."""
    return [
        message_start() + text_start(),
        *(text_delta(piece) for piece in pieces),
        text_stop() + message_end(len(pieces), stop_reason),
    ]


EMPTY = [message_start() + message_end(1)]  # C11: no content blocks at all


@dataclass
class ThinkApi:
    """The API's state: how many calls each prompt got (the ``ping-once`` prompt pings forever
    on its first call and answers plainly on the next)."""

    calls: dict[str, int] = field(default_factory=dict)

    def parts(self, prompt: str) -> list[bytes] | None:
        """The stream for a prompt: None means ping forever."""
        number = self.calls[prompt] = self.calls.get(prompt, 0) + 1
        if prompt.startswith("leak"):
            return text_reply(LEAKED)
        if prompt.startswith("cut"):
            return text_reply(CUT, "max_tokens")
        if prompt.startswith("empty"):
            return EMPTY
        if prompt.startswith("pings") or (prompt.startswith("ping-once") and number == 1):
            return None
        return text_reply(PLAIN)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        parts = self.parts(_prompt(orjson.loads(body)))
        headers = [(b"content-type", b"text/event-stream"), (b"request-id", b"req_think")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if parts is None:
            await _ping_until_gone(receive, send)
            return
        for part in parts:
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await anyio.sleep(GAP)
        await send({"type": "http.response.body", "body": b""})


def _prompt(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else str(content[0].get("text", ""))


async def _ping_until_gone(receive: Any, send: Any) -> None:
    """C9: part of an answer, then only pings every GAP seconds until the client goes away."""
    start = message_start() + text_start() + text_delta("The ans")
    await send({"type": "http.response.body", "body": start, "more_body": True})
    async with anyio.create_task_group() as group:

        async def pings() -> None:
            while True:
                await send({"type": "http.response.body", "body": PING, "more_body": True})
                await anyio.sleep(GAP)

        group.start_soon(pings)
        while (await receive())["type"] != "http.disconnect":
            pass
        group.cancel_scope.cancel()


@dataclass(frozen=True)
class Served:
    """The API's base URL, as runharness takes a simulator's."""

    base_url: str
    api: ThinkApi


@contextlib.contextmanager
def think_api() -> Iterator[Served]:
    """The API served on a free loopback port for the duration of the block."""
    api = ThinkApi()
    with serving(api) as url:
        yield Served(base_url=url, api=api)


JOBS = [
    {"custom_id": "leak", "prompt": "leak: what is six times seven?", "expect": {"equals": 42}},
    {"custom_id": "cut", "prompt": "cut: what is six times seven?", "expect": {"equals": 42}},
    {"custom_id": "empty", "prompt": "empty: what is six times seven?", "expect": {"equals": 42}},
    {"custom_id": "plain", "prompt": "plain: what is six times seven?"},
]


def run_think_jobs(tmp_path: Path, served: Served, jobs: list[dict[str, Any]] = JOBS) -> Run:
    """Run jobs on MiniMax-M3 against the API (no pre-check: the API has no count_tokens)."""
    return run_jobs(
        tmp_path,
        served,  # type: ignore[arg-type]  # runharness reads only its base_url
        jobs,
        [MODEL],
        precheck=False,
        deadlines=Deadlines(idle=0.5, total=10),
    )

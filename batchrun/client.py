"""The only module that talks to the API (and imports ``anthropic``).

The SDK builds each request, authenticates it and turns error answers into its typed errors, on
its aiohttp transport (the default transport collapses past a few hundred connections). The
reply's bytes are read raw and assembled by ``stream.py``: the SDK's per-event objects cost
several times more CPU. Every call streams, under an idle deadline (no bytes for N seconds) and a
total deadline. The API key never appears in an error, a log or a result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import anthropic
import anyio
import httpx2

from batchrun.endpoint import Deadlines, Endpoint
from batchrun.retry import CallFailure, FailureKind
from batchrun.stream import StreamAssembler, StreamError, Timings

COUNTED_FIELDS = ("system", "tools", "tool_choice", "thinking")
_REFUSED_COUNT_STATUSES = frozenset({404, 405, 501})  # 400/422: this request, not the model
_BALANCE_CODE = 1008


@dataclass(frozen=True, kw_only=True)
class CallResult:
    """A complete reply: the final message, when it was sent, and when each part arrived."""

    message: dict[str, Any]
    sent_at: float  # UTC epoch seconds
    timings: Timings


class ApiClient:
    """Streams Messages calls and counts tokens through the anthropic SDK."""

    def __init__(self, endpoint: Endpoint, deadlines: Deadlines, max_connections: int) -> None:
        self.endpoint = endpoint
        self.deadlines = deadlines
        self._sdk = anthropic.AsyncAnthropic(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key,
            max_retries=0,  # retry.py decides, and every attempt is recorded
            timeout=httpx2.Timeout(deadlines.total, connect=deadlines.connect),
            http_client=anthropic.DefaultAioHttpClient(
                limits=httpx2.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                ),
            ),
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._sdk.close()

    async def count_tokens(self, model: str, params: dict[str, Any]) -> int | None:
        """Input tokens of a request by count_tokens; None when the endpoint refuses the model."""
        extra = {key: params[key] for key in COUNTED_FIELDS if key in params}
        try:
            with anyio.fail_after(self.deadlines.total):
                counted = await self._sdk.messages.count_tokens(
                    model=model, messages=params["messages"], extra_body=extra
                )
        except anthropic.APIStatusError as exc:
            if exc.status_code in _REFUSED_COUNT_STATUSES:
                return None
            raise self._failure_from_status(exc) from None
        except (anthropic.APIConnectionError, httpx2.TransportError, TimeoutError) as exc:
            raise CallFailure(FailureKind.CONNECTION, self._redact(str(exc))) from None
        tokens = getattr(counted, "input_tokens", None)
        return tokens if isinstance(tokens, int) and tokens >= 0 else None

    async def stream_message(self, model: str, params: dict[str, Any]) -> CallResult:
        """Send one streamed Messages call; raise CallFailure when it does not complete."""
        sent_at = time.time()
        started = time.perf_counter()
        assembler = StreamAssembler(started)
        try:
            with anyio.fail_after(self.deadlines.total):
                await self._stream_into(assembler, model, params)
        except TimeoutError:
            message = f"the call took longer than {self.deadlines.total:g} s"
            raise CallFailure(FailureKind.TIMEOUT, message) from None
        except anthropic.APIStatusError as exc:
            raise self._failure_from_status(exc) from None
        except anthropic.APITimeoutError:
            raise CallFailure(FailureKind.TIMEOUT, "the request timed out") from None
        except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
            raise CallFailure(FailureKind.CONNECTION, self._redact(_describe(exc))) from None
        except StreamError as exc:
            raise _failure_from_stream_error(exc) from None
        if not assembler.finished:
            raise CallFailure(FailureKind.CONNECTION, "the stream ended before message_stop")
        try:
            final = assembler.message()
        except StreamError as exc:
            raise _failure_from_stream_error(exc) from None
        return CallResult(message=final, sent_at=sent_at, timings=assembler.timings)

    async def _stream_into(
        self, assembler: StreamAssembler, model: str, params: dict[str, Any]
    ) -> None:
        body = {
            key: value for key, value in params.items() if key not in ("messages", "max_tokens")
        }
        request = self._sdk.messages.with_streaming_response.create(
            model=model,
            max_tokens=params["max_tokens"],
            messages=params["messages"],
            stream=True,
            extra_body=body,
        )
        async with request as response:
            chunks = response.iter_bytes().__aiter__()
            idle = self.deadlines.idle
            while not assembler.finished:
                try:
                    with anyio.fail_after(idle):
                        chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    message = f"no data for {idle:g} s (a stalled stream)"
                    raise CallFailure(FailureKind.STALLED, message) from None
                assembler.feed(chunk, time.perf_counter())

    def _failure_from_status(self, exc: anthropic.APIStatusError) -> CallFailure:
        error_type, message = _error_fields(exc.body, exc.message)
        code = _minimax_code(message)
        return CallFailure(
            _classify(exc.status_code, code),
            self._redact(message),
            status=exc.status_code,
            error_type=error_type,
            code=code,
            request_id=_request_id(exc),
            retry_after=_retry_after(exc.response.headers.get("retry-after")),
        )

    def _redact(self, text: str) -> str:
        key = self.endpoint.api_key
        return text.replace(key, "***") if key else text


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"connection failed: {text}"


def _error_fields(body: object, fallback: str) -> tuple[str | None, str]:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return error.get("type"), str(error.get("message", fallback))
    return None, fallback


def _minimax_code(message: str) -> int | None:
    """MiniMax puts its numeric code in parentheses at the end of the message."""
    text = message.rstrip()
    if text.endswith(")") and "(" in text:
        candidate = text[text.rfind("(") + 1 : -1]
        if candidate.isdigit():
            return int(candidate)
    return None


_BY_CODE = {  # MiniMax's documented codes (minimax-facts.md), whatever the HTTP status
    _BALANCE_CODE: FailureKind.BALANCE,
    1004: FailureKind.AUTH,
    2049: FailureKind.AUTH,
    1026: FailureKind.MODERATION,
    1027: FailureKind.MODERATION,
    1002: FailureKind.RATE_LIMITED,  # rate limit
    1041: FailureKind.RATE_LIMITED,  # connection limit
    2045: FailureKind.RATE_LIMITED,  # rate growth limit
    2056: FailureKind.QUOTA,  # the plan's 5-hour quota: no use retrying for hours
    1000: FailureKind.SERVER,
    1024: FailureKind.SERVER,
    1033: FailureKind.SERVER,
    1001: FailureKind.TIMEOUT,
}
_TOKEN_LIMIT_CODE = 1039  # a rate limit as a 429, a context overflow as a 400
_BY_STATUS = {
    429: FailureKind.RATE_LIMITED,
    529: FailureKind.OVERLOADED,
    401: FailureKind.AUTH,
    403: FailureKind.AUTH,
}


def _classify(status: int, code: int | None) -> FailureKind:
    """MiniMax's code decides first (1008 balance comes as a 500), then the HTTP status."""
    if code in _BY_CODE:
        return _BY_CODE[code]
    if code == _TOKEN_LIMIT_CODE and status < 500:
        return FailureKind.RATE_LIMITED if status == 429 else FailureKind.BAD_REQUEST
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return FailureKind.SERVER if status >= 500 else FailureKind.BAD_REQUEST


def _failure_from_stream_error(exc: StreamError) -> CallFailure:
    kinds = {
        "overloaded_error": FailureKind.OVERLOADED,
        "rate_limit_error": FailureKind.RATE_LIMITED,
    }
    code = _minimax_code(exc.message)
    kind = kinds.get(exc.error_type, _classify(500, code))
    return CallFailure(kind, exc.message, error_type=exc.error_type, code=code)


def _request_id(exc: anthropic.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("request_id"), str):
        return str(body["request_id"])
    return exc.request_id


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare for APIs, and MiniMax sends none
    return seconds if seconds >= 0 else None

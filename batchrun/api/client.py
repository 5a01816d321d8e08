"""The only module that talks to the API.

Calls go with the headers the anthropic SDK would send (its API version and client identity,
``sdk_headers``; a test compares them with the SDK's own), but the SDK itself is not imported:
importing it cost 0.6 s of CPU on a quiet machine and over 3 s on a busy one, more than a small
run's calls (bench/startup.py). The streamed Messages call, the hot path, is posted with aiohttp
directly and its bytes are assembled by ``stream.py``: the SDK's response layers and per-event
objects cost several times more CPU per read (bench/stream_cpu.py). count_tokens, one call per
distinct request when the pre-check is on, is posted the same way and read with orjson
(bench/peers.py). Error answers are classified from their status, MiniMax code and body as the
SDK's errors are. The key always goes as ``Authorization: Bearer`` and never as ``x-api-key``:
MiniMax refuses a key sent only as ``x-api-key`` (401, code 1004). The streamed call runs under
an idle deadline (no bytes for N seconds, one watchdog timer per call, not a timeout per read)
and a total deadline. The API key never appears in an error, a log or a result.
"""

from __future__ import annotations

import asyncio
import platform
import time
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any

import aiohttp
import anyio
import orjson

from batchrun.api.endpoint import Deadlines, Endpoint
from batchrun.api.failures import CallFailure, FailureKind, quota_reset
from batchrun.api.stream import StreamAssembler, StreamError, Timings

COUNTED_FIELDS = ("system", "tools", "tool_choice", "thinking")
_REFUSED_COUNT_STATUSES = frozenset({404, 405, 501})  # 400/422: this request, not the model
_REFUSED_COUNT_TEXT = "not supported for model"  # a 400 that is about the model after all
_BALANCE_CODE = 1008
_JSON = {"Accept": "application/json"}  # count_tokens answers one JSON body, not a stream
API_VERSION = "2026-10-21"  # the SDK's ANTHROPIC_API_VERSION (tests/test_startup.py compares)
_OS = {"darwin": "MacOS", "windows": "Windows", "linux": "Linux", "freebsd": "FreeBSD"}
_ARCH = {"arm64": "arm64", "aarch64": "arm64", "arm": "arm", "x86_64": "x64"}


@dataclass(frozen=True, kw_only=True)
class CallResult:
    """A complete reply: the final message, when it was sent, and when each part arrived."""

    message: dict[str, Any]
    sent_at: float  # UTC epoch seconds
    timings: Timings


class ApiClient:
    """Streams Messages calls and counts tokens (aiohttp, one connection pool)."""

    def __init__(self, endpoint: Endpoint, deadlines: Deadlines, max_connections: int) -> None:
        self.endpoint = endpoint
        self.deadlines = deadlines
        self._max_connections = max_connections
        self._url = endpoint.base_url.rstrip("/") + "/v1/messages"
        self._count_url = self._url + "/count_tokens"
        self._headers = {
            **sdk_headers(),
            "Authorization": f"Bearer {endpoint.api_key}",
            "Accept": "text/event-stream",
        }
        self._session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        """Close the connection pools."""
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:  # created on first use, inside the running event loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(total=None, connect=self.deadlines.connect),
                headers=self._headers,
            )
        return self._session

    async def count_tokens(self, model: str, params: dict[str, Any]) -> int | None:
        """Input tokens of a request by count_tokens; None when the endpoint refuses the model."""
        try:
            return await self._count_tokens(model, params)
        except CallFailure as failure:
            raise failure.redacted() from None

    async def _count_tokens(self, model: str, params: dict[str, Any]) -> int | None:
        # Posted with aiohttp, as the streamed call is: the SDK's request and response layers
        # cost more CPU than the call itself when every request is counted (bench/peers.py).
        extra = {key: params[key] for key in COUNTED_FIELDS if key in params}
        body = orjson.dumps({"model": model, "messages": params["messages"], **extra})
        try:
            with anyio.fail_after(self.deadlines.total):
                async with self._http().post(self._count_url, data=body, headers=_JSON) as response:
                    status, headers, raw = response.status, response.headers, await response.read()
        except aiohttp.ClientError as exc:  # first: aiohttp's connect timeouts are TimeoutErrors
            raise CallFailure(FailureKind.CONNECTION, _describe(exc)) from None
        except OSError as exc:  # the total deadline too (TimeoutError is an OSError)
            raise CallFailure(FailureKind.CONNECTION, _describe(exc)) from None
        if status != 200:
            failure = self._failure_from_response(status, headers, raw)
            if _refuses_counting(status, failure.message):
                return None
            raise failure
        return _counted(raw)

    async def stream_message(self, model: str, params: dict[str, Any]) -> CallResult:
        """Send one streamed Messages call; raise CallFailure when it does not complete.

        Every failure's message, whichever path it came by (an HTTP error body, an ``event:
        error`` in the stream, an exception), is redacted here, before anyone stores or shows it.
        """
        try:
            return await self._stream_message(model, params)
        except CallFailure as failure:
            raise failure.redacted() from None

    async def _stream_message(self, model: str, params: dict[str, Any]) -> CallResult:
        sent_at = time.time()
        started = time.perf_counter()
        assembler = StreamAssembler(started)
        try:
            with anyio.fail_after(self.deadlines.total):
                await self._stream_into(assembler, model, params)
        except CallFailure:
            raise
        except StreamError as exc:
            raise _failure_from_stream_error(exc) from None
        except aiohttp.ClientError as exc:  # first: aiohttp's connect timeouts are TimeoutErrors
            raise CallFailure(FailureKind.CONNECTION, _describe(exc)) from None
        except TimeoutError:  # the total deadline (before OSError: TimeoutError is one)
            message = f"the call took longer than {self.deadlines.total:g} s"
            raise CallFailure(FailureKind.TIMEOUT, message) from None
        except OSError as exc:
            raise CallFailure(FailureKind.CONNECTION, _describe(exc)) from None
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
        body = orjson.dumps({"model": model, **params, "stream": True})
        async with self._http().post(self._url, data=body) as response:
            if response.status != 200:
                raise self._failure_from_response(
                    response.status, response.headers, await response.read()
                )
            watchdog = _Watchdog(self.deadlines.idle, response)
            content = response.content
            try:
                while not assembler.finished:
                    chunk = await content.readany()
                    if not chunk:
                        break  # the server ended the stream
                    now, events = time.perf_counter(), assembler.events
                    assembler.feed(chunk, now)
                    if assembler.events != events:  # pings alone do not keep a stream alive
                        watchdog.last = now
            except aiohttp.ClientError:
                if watchdog.fired:
                    message = f"no event but pings for {self.deadlines.idle:g} s (a stalled stream)"
                    raise CallFailure(FailureKind.STALLED, message) from None
                raise
            finally:
                watchdog.cancel()

    def _failure_from_response(self, status: int, headers: Any, raw: bytes) -> CallFailure:
        try:
            body: object = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        fallback = f"Error code: {status} - {body}"
        return self._failure(status, body, fallback, headers, headers.get("request-id"))

    def _failure(
        self, status: int, body: object, fallback: str, headers: Any, header_id: str | None
    ) -> CallFailure:
        error_type, message = _error_fields(body, fallback)
        code = _minimax_code(message)
        kind = _classify(status, code, message)
        if status == 404 and not isinstance(body, dict):  # MiniMax's host for an unknown path
            kind = FailureKind.NO_ROUTE
        request_id = body.get("request_id") if isinstance(body, dict) else None
        return CallFailure(
            kind,
            _with_hint(message),
            status=status,
            error_type=error_type,
            code=code,
            request_id=request_id if isinstance(request_id, str) else header_id,
            retry_after=_retry_after(headers.get("retry-after")),
            reset_at=quota_reset(message) if kind is FailureKind.QUOTA else None,
        )


class _Watchdog:
    """One timer per call that closes the response once no bytes came for ``idle`` seconds.

    The read loop only stores the time of each read; the timer re-arms itself at the latest
    read plus ``idle``, so a stream of N reads costs a few timers, not N.
    """

    def __init__(self, idle: float, response: aiohttp.ClientResponse) -> None:
        self.idle = idle
        self.response = response
        self.last = time.perf_counter()
        self.fired = False
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(idle, self._check)

    def _check(self) -> None:
        wait = self.last + self.idle - time.perf_counter()
        if wait > 0:
            self._timer = self._loop.call_later(wait, self._check)
            return
        self.fired = True
        self.response.close()  # the pending read raises ClientConnectionError

    def cancel(self) -> None:
        self._timer.cancel()


@cache
def sdk_headers() -> dict[str, str]:
    """The headers the installed anthropic SDK sends with every call, the key aside."""
    version = metadata.version("anthropic")
    system, machine = platform.system().lower(), platform.machine().lower()
    return {
        "Content-Type": "application/json",
        "User-Agent": f"AsyncAnthropic/Python {version}",
        "X-Stainless-Lang": "python",
        "X-Stainless-Package-Version": version,
        "X-Stainless-OS": _OS.get(system, f"Other:{system}" if system else "Unknown"),
        "X-Stainless-Arch": _ARCH.get(machine, f"other:{machine}" if machine else "unknown"),
        "X-Stainless-Runtime": platform.python_implementation(),
        "X-Stainless-Runtime-Version": platform.python_version(),
        "X-Stainless-Async": "async:false",
        "anthropic-version": API_VERSION,
    }


def _refuses_counting(status: int, message: str) -> bool:
    """Whether a count_tokens error means the endpoint does not count this model at all."""
    if status in _REFUSED_COUNT_STATUSES:
        return True
    return status == 400 and _REFUSED_COUNT_TEXT in message.lower()


def _counted(raw: bytes) -> int | None:
    """The input_tokens of a count_tokens answer; None when it has no usable count."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    tokens = body.get("input_tokens") if isinstance(body, dict) else None
    return tokens if isinstance(tokens, int) and tokens >= 0 else None


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
_INVALID_PARAMS_CODE = 2013
_OVERFLOW_TEXTS = ("context window exceeds limit", "does not support max tokens")
_THINKING_TEXT = "invalid thinking.type"
_THINKING_HINT = (
    'MiniMax-M3 takes thinking {"type": "adaptive"} (or "disabled"), not "enabled": '
    'change the line\'s thinking to {"type": "adaptive"}'
)
_BY_STATUS = {
    408: FailureKind.TIMEOUT,  # MiniMax's "request timeout (1001)" after ~120 s: try again
    429: FailureKind.RATE_LIMITED,
    529: FailureKind.OVERLOADED,
    401: FailureKind.AUTH,
    402: FailureKind.BALANCE,  # pay-as-you-go accounts were seen to get 402 for 1008
    403: FailureKind.AUTH,
}


def _classify(status: int, code: int | None, message: str = "") -> FailureKind:
    """MiniMax's code decides first (1008 balance comes as a 500), then the HTTP status.

    A 408 is a timeout whatever its body says; a 2013 that says the request is too long for
    the model (or a 1039 token limit sent as a 400) is a context overflow (invalid for that
    model), any other 2013 a bad request.
    """
    if status == 408:
        return FailureKind.TIMEOUT
    if code == _INVALID_PARAMS_CODE and any(t in message.lower() for t in _OVERFLOW_TEXTS):
        return FailureKind.CONTEXT_OVERFLOW
    if code in _BY_CODE:
        return _BY_CODE[code]
    if code == _TOKEN_LIMIT_CODE and status < 500:
        return FailureKind.RATE_LIMITED if status == 429 else FailureKind.CONTEXT_OVERFLOW
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return FailureKind.SERVER if status >= 500 else FailureKind.BAD_REQUEST


def _with_hint(message: str) -> str:
    """MiniMax's message, with what to do next where MiniMax's own text does not say."""
    if _THINKING_TEXT in message.lower():
        return f"{message}; {_THINKING_HINT}"
    return message


_STREAM_KINDS = {
    "overloaded_error": FailureKind.OVERLOADED,
    "rate_limit_error": FailureKind.RATE_LIMITED,
}


def _failure_from_stream_error(exc: StreamError) -> CallFailure:
    """An ``event: error`` in the stream: its MiniMax code decides, else its type (as a 500)."""
    code = _minimax_code(exc.message)
    kind = _STREAM_KINDS.get(exc.error_type) if code not in _BY_CODE else None
    kind = kind or _classify(500, code, exc.message)
    reset_at = quota_reset(exc.message) if kind is FailureKind.QUOTA else None
    return CallFailure(kind, exc.message, error_type=exc.error_type, code=code, reset_at=reset_at)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare for APIs, and MiniMax sends none
    return seconds if seconds >= 0 else None

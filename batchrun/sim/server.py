"""The simulator's HTTP layer on aiohttp.web: routes, JSON bodies, SSE writing, drops and stalls.

Routes: POST /v1/messages and POST /v1/messages/count_tokens, also under /anthropic; GET
/_sim/stats and POST /_sim/reset. Anything else is a 404 in Anthropic's error shape.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from typing import Any

import orjson
from aiohttp import web

from batchrun.catalog import Catalog
from batchrun.sim import errors
from batchrun.sim.core import SimulatorCore
from batchrun.sim.errors import ApiFailure
from batchrun.sim.generate import Reply, draw_reply
from batchrun.sim.render import message_body, stream_plan
from batchrun.sim.settings import SimSettings
from batchrun.sim.validate import SimRequest, validate_count_request, validate_message_request

CORE_KEY = web.AppKey("core", SimulatorCore)
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def build_app(settings: SimSettings, catalog: Catalog) -> web.Application:
    """The aiohttp application of a simulator with these settings."""
    app = web.Application(client_max_size=64 * 1024 * 1024)  # MiniMax's 64 MB body limit
    app[CORE_KEY] = SimulatorCore(settings, catalog)
    for prefix in ("", "/anthropic"):
        app.router.add_post(f"{prefix}/v1/messages", _messages)
        app.router.add_post(f"{prefix}/v1/messages/count_tokens", _count_tokens)
    app.router.add_get("/_sim/stats", _stats)
    app.router.add_post("/_sim/reset", _reset)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def _error(failure: ApiFailure, core: SimulatorCore) -> web.Response:
    headers = None
    if failure.status == 429 and core.settings.retry_after is not None:
        headers = {"retry-after": f"{core.settings.retry_after:g}"}
    return _json(failure.body(), failure.status, headers)


def _outcome(status: int) -> str:
    if status == 429:
        return "429"
    return "4xx" if status < 500 else "5xx"


async def _read_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _model_of(body: Any) -> str:
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else "(none)"


async def _messages(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE_KEY]
    core.stats.messages_total += 1
    body = await _read_body(request)
    model = _model_of(body)
    try:
        core.authorize(request.headers)
        checked = validate_message_request(body, core.catalog)
        core.admit(model, checked.input_tokens)
        fault = core.draw_fault(model)
    except ApiFailure as failure:
        core.stats.record(model, _outcome(failure.status))
        return _error(failure, core)
    reply = draw_reply(checked, core.settings, core.cached_tokens(checked.body))
    core.stats.in_flight += 1
    try:
        outcome, response = await _answer(request, core, checked, reply, fault)
    finally:
        core.stats.in_flight -= 1
    if outcome == "ok":
        core.settle(model, reply.output_tokens)
    core.stats.record(
        model,
        outcome,
        stalled=fault == "stall",
        input_tokens=reply.input_tokens if outcome == "ok" else 0,
        output_tokens=reply.output_tokens if outcome == "ok" else 0,
    )
    return response


async def _answer(
    request: web.Request, core: SimulatorCore, checked: SimRequest, reply: Reply, fault: str | None
) -> tuple[str, web.StreamResponse]:
    if checked.stream:
        return await _stream(request, core, reply, fault)
    total = reply.token_offsets[-1] if reply.token_offsets else reply.start_offset
    if fault == "stall":
        total += core.settings.stall_seconds
    if fault == "drop":
        await asyncio.sleep(total * core.fault_point(100) / 100)
        return "dropped", _abort(request)
    await asyncio.sleep(total)
    return "ok", _json(message_body(reply))


async def _stream(
    request: web.Request, core: SimulatorCore, reply: Reply, fault: str | None
) -> tuple[str, web.StreamResponse]:
    plan = stream_plan(reply, core.settings.quirks)
    cut = core.fault_point(len(plan.chunks)) if fault else -1
    response = web.StreamResponse(headers=_SSE_HEADERS)
    loop = asyncio.get_running_loop()
    started = loop.time()
    tick = core.settings.tick
    sent = 0
    try:
        await response.prepare(request)
        while sent < len(plan.chunks):
            wait = started + plan.offsets[sent] - loop.time()
            if wait > 0:
                await asyncio.sleep(max(wait, tick))
            due = bisect_right(plan.offsets, loop.time() - started, lo=sent + 1)
            if sent <= cut < due:  # the injected fault falls in this write
                if fault == "drop":
                    await response.write(b"".join(plan.chunks[sent:cut]))
                    return "dropped", _abort(request, response)
                await asyncio.sleep(core.settings.stall_seconds)
                cut = -1
                continue
            await response.write(b"".join(plan.chunks[sent:due]))
            sent = due
        await response.write_eof()
    except ConnectionError:
        return "client_gone", response
    return "ok", response


def _abort(request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
    """Close the connection at once, without finishing the response (a dropped connection)."""
    if request.transport is not None:
        request.transport.abort()
    return response if response is not None else web.Response(status=200)


async def _count_tokens(request: web.Request) -> web.Response:
    core = request.app[CORE_KEY]
    core.stats.count_tokens_total += 1
    body = await _read_body(request)
    try:
        core.authorize(request.headers)
        model, tokens = validate_count_request(body, core.catalog)
        if not core.count_tokens_allowed(model.name):
            raise errors.invalid(f"count_tokens is not supported for {model.name}")
    except ApiFailure as failure:
        return _error(failure, core)
    return _json({"input_tokens": tokens})


async def _stats(request: web.Request) -> web.Response:
    return _json(request.app[CORE_KEY].stats.as_json())


async def _reset(request: web.Request) -> web.Response:
    request.app[CORE_KEY].stats.reset()
    return _json({"reset": True})


async def _not_found(request: web.Request) -> web.Response:
    return _json(errors.not_found(f"{request.method} {request.path}").body(), 404)

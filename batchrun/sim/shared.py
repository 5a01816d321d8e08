"""What every process of one simulator shares: rate limits, quota, prompt cache and stats.

MiniMax's limits are per account and model, not per connection, so a simulator spread over
several processes (``batchrun sim --processes N``, sim/workers.py) must refuse exactly what one
process would. The parent holds the one ``SimulatorCore`` that decides admission (the sliding
windows, the account pool, the Token Plan quota) and the prompt cache; each worker asks it over a
Unix socket, one JSON line per message.

Why a coordinator and not shared memory or a per-process share: the parent runs the very code one
process runs (limits.py, cache.py), so the limits and the cache behave the same whatever the
kernel's spread of connections over the workers, at the cost of one round trip per request (two
for a prompt long enough to cache). At MiniMax's full rate that is about 62 round trips a second,
next to nothing for the parent; a per-process share (limit / N each) would refuse early whenever
the connections of one model are spread unevenly, which MiniMax never does.

Stats stay with each worker (they count its own requests) and are summed on demand: a worker
asked for ``/_sim/stats`` asks the parent, which asks every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from batchrun.exceptions import SimulatorError
from batchrun.sim.core import SimulatorCore
from batchrun.sim.errors import ApiFailure
from batchrun.sim.stats import merge_stats
from batchrun.sim.tokens import PromptPrefix
from batchrun.sim.validate import SimRequest

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


class Ledger(Protocol):
    """The shared decisions a request needs, wherever they are kept."""

    async def admit(self, model: str, input_tokens: int) -> None:
        """Count the request against the limits and the quota, or raise its ApiFailure."""

    async def cached_tokens(self, request: SimRequest) -> tuple[int, int]:
        """(tokens written to, tokens read from) the prompt cache for this request."""

    def settle(self, model: str, output_tokens: int) -> None:
        """Count a finished reply's output tokens against the limits."""

    async def stats(self) -> dict[str, Any]:
        """The counters of every process, summed, as GET /_sim/stats returns them."""

    async def reset(self) -> None:
        """Zero the counters of every process."""


class LocalLedger:
    """A simulator of one process: its own core decides everything."""

    def __init__(self, core: SimulatorCore) -> None:
        self.core = core

    async def admit(self, model: str, input_tokens: int) -> None:
        self.core.admit(model, input_tokens)

    async def cached_tokens(self, request: SimRequest) -> tuple[int, int]:
        return self.core.cached_tokens(request)

    def settle(self, model: str, output_tokens: int) -> None:
        self.core.settle(model, output_tokens)

    async def stats(self) -> dict[str, Any]:
        return self.core.stats.as_json()

    async def reset(self) -> None:
        self.core.stats.reset()


_FAILED = "failed"  # the key of a reply whose handler raised: the caller raises it


class Peer:
    """One end of a conversation in JSON lines: calls that wait for a reply, notes that do not,
    and the other end's calls answered by ``handler`` (a reply of None sends nothing back)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._handler = handler
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._gone = False

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send ``op`` and wait for the other end's reply; SimulatorError when the other end has
        gone (a call sent to no one would wait forever) or its handler failed."""
        if self._gone or self._writer.is_closing():
            raise SimulatorError("the simulator's other process has gone")
        ident = next(self._ids)
        reply = asyncio.get_running_loop().create_future()
        self._waiting[ident] = reply
        self._send({"op": op, "id": ident, **fields})
        answer: dict[str, Any] = await reply
        if _FAILED in answer:
            raise SimulatorError(f"the simulator's other process failed on {op}: {answer[_FAILED]}")
        return answer

    def tell(self, op: str, **fields: Any) -> None:
        """Send ``op`` without waiting for anything."""
        self._send({"op": op, **fields})

    async def run(self) -> None:
        """Read messages until the other end goes; then every call still waiting fails."""
        try:
            while line := await self._reader.readline():
                self._take(orjson.loads(line))
        finally:
            self._gone = True
            gone = SimulatorError("the simulator's other process has gone")
            for reply in self._waiting.values():
                if not reply.done():
                    reply.set_exception(gone)
            self._waiting.clear()
            self._writer.close()

    def _take(self, message: dict[str, Any]) -> None:
        if "re" in message:
            reply = self._waiting.pop(message["re"], None)
            if reply is not None and not reply.done():
                reply.set_result(message)
            return
        # one task per message, started in arrival order: the handler's synchronous part
        # (every admission) runs in that order
        task = asyncio.ensure_future(self._answer(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, message: dict[str, Any]) -> None:
        try:
            answer = await self._handler(message)
        except Exception as exc:
            if "id" in message:
                self._send({_FAILED: f"{type(exc).__name__}: {exc}", "re": message["id"]})
            return
        if answer is not None and "id" in message:
            self._send({**answer, "re": message["id"]})

    def _send(self, message: dict[str, Any]) -> None:
        if not self._writer.is_closing():
            self._writer.write(orjson.dumps(message) + b"\n")


class RemoteLedger:
    """A worker process's ledger: the parent decides; the worker walks its prompts itself."""

    def __init__(self, peer: Peer, core: SimulatorCore) -> None:
        self.peer = peer
        self.core = core

    async def admit(self, model: str, input_tokens: int) -> None:
        reply = await self.peer.call("admit", model=model, input_tokens=input_tokens)
        if "failure" in reply:
            raise failure_from_json(reply["failure"])

    async def cached_tokens(self, request: SimRequest) -> tuple[int, int]:
        prefixes = self.core.cache_prefixes(request)
        if not prefixes:  # the common case: a prompt too short to cache, no round trip
            return 0, 0
        sent = [[p.tokens, p.digest.hex(), p.marked] for p in prefixes]
        reply = await self.peer.call("cache", model=request.model.name, prefixes=sent)
        written, read = reply["cached"]
        return written, read

    def settle(self, model: str, output_tokens: int) -> None:
        self.peer.tell("settle", model=model, output_tokens=output_tokens)

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = (await self.peer.call("stats"))["stats"]
        return stats

    async def reset(self) -> None:
        await self.peer.call("reset")


def worker_handler(core: SimulatorCore) -> Handler:
    """How a worker answers the parent: its own stats, or a reset of them."""

    async def handle(message: dict[str, Any]) -> dict[str, Any] | None:
        if message["op"] == "stats":
            return {"stats": core.stats.as_json()}
        if message["op"] == "reset":
            core.stats.reset()
            return {}
        return None

    return handle


class Coordinator:
    """The parent's side: one core for every worker, and the workers to sum stats over."""

    def __init__(self, core: SimulatorCore) -> None:
        self.core = core
        self.workers: list[Peer] = []

    async def connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one worker's connection until it closes (asyncio.start_unix_server's callback)."""
        peer = Peer(reader, writer, self.handle)
        self.workers.append(peer)
        try:
            await peer.run()
        finally:
            self.workers.remove(peer)

    async def handle(self, message: dict[str, Any]) -> dict[str, Any] | None:
        op = message["op"]
        if op == "admit":
            try:
                self.core.admit(message["model"], message["input_tokens"])
            except ApiFailure as failure:
                return {"failure": failure_to_json(failure)}
            return {}
        if op == "cache":
            prefixes = [
                PromptPrefix(tokens=tokens, digest=bytes.fromhex(digest), marked=marked)
                for tokens, digest, marked in message["prefixes"]
            ]
            return {"cached": self.core.cache_usage(message["model"], prefixes)}
        if op == "settle":
            self.core.settle(message["model"], message["output_tokens"])
            return None
        return await self._ask_workers(op)

    async def _ask_workers(self, op: str) -> dict[str, Any]:
        """Sum the stats of every worker, or reset them (``op`` is "stats" or "reset")."""
        replies = []
        for peer in list(self.workers):
            with contextlib.suppress(SimulatorError):  # a worker that is stopping
                replies.append(await peer.call(op))
        if op == "stats":
            snapshots = [reply["stats"] for reply in replies]
            merged = merge_stats(snapshots)
            merged["workers"] = [snapshot["messages_total"] for snapshot in snapshots]
            return {"stats": merged}
        return {}


def failure_to_json(failure: ApiFailure) -> dict[str, Any]:
    """An ApiFailure as the parent sends it to a worker."""
    return {
        "status": failure.status,
        "error_type": failure.error_type,
        "message": failure.message,
        "code": failure.code,
        "delay": failure.delay,
    }


def failure_from_json(data: dict[str, Any]) -> ApiFailure:
    """The ApiFailure the parent decided, rebuilt in the worker (with the worker's request id)."""
    failure = ApiFailure(data["status"], data["error_type"], data["message"], delay=data["delay"])
    failure.code = data["code"]
    return failure

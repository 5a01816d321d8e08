"""What a batch will cost before it runs: the pre-check alone, summed per model.

Input tokens are exact where count_tokens answered and marked where estimated. Output tokens are
a range, from 0 to the sum of ``max_tokens``, and an expected figure where the store has results
of that model *of the same origin as the run*: each request is expected to write the model's past
mean output, capped by its own ``max_tokens``. A run against MiniMax takes real results only: the
simulator's answer lengths are made up and say nothing of what the real model writes (nor of what
will be billed), so simulated history leaves a real estimate without an expected figure, and says
so, rather than giving one that looks real. A simulated run takes simulated results.

Cost is the range and expected value of the same, at today's prices; requests of a model without
a price are counted as unpriced, never as $0.

Each figure of cost also comes "with cache": the requests' expected cache reads (``CacheView``,
without expiry: the batch is assumed to run within the cache's lifetime) are taken off their
input and priced at the model's cache-read price. Requests are counted concurrently, but the
expectation is worked out in the order they were planned (file order), so it is the same on
every run. A model with no cache-read price has its cost with cache unpriced (None), never $0.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from batchrun.catalog import Catalog
from batchrun.jobs import JobSpec
from batchrun.plan.cache import CacheView
from batchrun.plan.precheck import TokenCounter
from batchrun.pricing import Cost, Usage, day_of, request_cost

if TYPE_CHECKING:
    from batchrun.store import Store

Keep = Callable[[list[tuple[int, int, bool]]], None]  # stores (request id, tokens, estimated)
KEEP_EVERY = 5000
AHEAD = 16  # per worker: how many counted requests may wait for an earlier one to be counted


@dataclass(frozen=True, kw_only=True, slots=True)
class Planned:
    """One request to estimate."""

    model: str
    params: dict[str, Any]
    content_hash: str
    request_id: int | None = None
    known: tuple[int | None, bool | None] = (None, None)  # a count stored earlier: not redone


@dataclass
class ModelEstimate:
    """The estimate of one model's requests."""

    model: str
    requests: int = 0
    invalid: int = 0  # over the model's context window or output cap (ModelInfo.refuses_request)
    input_tokens: int = 0
    estimated: int = 0  # requests whose input is a local estimate
    max_output_tokens: int = 0
    expected_output_tokens: int | None = None
    history: int = 0  # past results the expectation is based on
    history_simulated: bool = False  # they are simulated results (a run on the simulator)
    unused_history: int = 0  # past results of the other origin, left out of the expectation
    cost_min_nanos: int = 0
    cost_max_nanos: int = 0
    cost_expected_nanos: int | None = None
    unpriced: int = 0
    cache_min_tokens: int | None = None  # the model's (catalog); None: no cache reads expected
    cache_ttl_seconds: int | None = None  # the model's (catalog): stated, not applied (no expiry)
    expected_cache_read_tokens: int = 0  # input tokens expected to be read from the cache
    # The cost with the expected cache reads (same requests as cost_*); None: unpriced (the
    # model has no cache-read price), or for the expected figure, no expected output.
    cached_cost_min_nanos: int | None = 0
    cached_cost_max_nanos: int | None = 0
    cached_cost_expected_nanos: int | None = None
    cache_unpriced: int = 0  # priced requests whose expected cache read has no price


@dataclass
class Estimate:
    """Per model, and what the pre-check learned per request (to store, so it is not redone)."""

    models: dict[str, ModelEstimate] = field(default_factory=dict)
    counts: list[tuple[int, int, bool]] = field(default_factory=list)  # (request id, tokens, est.)

    def total(self) -> ModelEstimate:
        """Every model added up (expected values only where every model has one)."""
        total = ModelEstimate(model="total")
        for m in self.models.values():
            for name in ("requests", "invalid", "input_tokens", "estimated", "max_output_tokens",
                         "cost_min_nanos", "cost_max_nanos", "unpriced", "history",
                         "unused_history",
                         "expected_cache_read_tokens", "cache_unpriced"):  # fmt: skip
                setattr(total, name, getattr(total, name) + getattr(m, name))
        models = self.models.values()
        total.cost_expected_nanos = _sum_known(m.cost_expected_nanos for m in models)
        if total.cost_expected_nanos is not None:
            total.expected_output_tokens = sum(m.expected_output_tokens or 0 for m in models)
        total.cached_cost_min_nanos = _sum_known(m.cached_cost_min_nanos for m in models)
        total.cached_cost_max_nanos = _sum_known(m.cached_cost_max_nanos for m in models)
        total.cached_cost_expected_nanos = _sum_known(m.cached_cost_expected_nanos for m in models)
        return total


def _sum_known(values: Iterable[int | None]) -> int | None:
    """The sum, or None when there is nothing to add up or any value is unknown."""
    known = list(values)
    if not known or any(v is None for v in known):
        return None
    return sum(v for v in known if v is not None)


async def estimate(
    planned: Iterable[Planned] | Callable[[], AsyncIterator[Planned]],
    catalog: Catalog,
    counter: TokenCounter,
    history: Mapping[str, tuple[int, float]],
    *,
    workers: int = 32,
    keep: Keep | None = None,
    history_simulated: bool = False,
    unused_history: Mapping[str, int] | None = None,
) -> Estimate:
    """Count and price every planned request; ``history`` is model -> (results, mean output),
    of simulated results when ``history_simulated`` (else real ones); ``unused_history``:
    model -> past results of the other origin, left out (and said so).

    With ``keep``, the counts of stored requests are handed to it in slices as they come (to
    store them) instead of piling up in ``Estimate.counts``: a million requests stay small.
    """
    estimator = _Estimator(
        catalog=catalog,
        counter=counter,
        history=history,
        keep=keep,
        history_simulated=history_simulated,
        unused_history=unused_history or {},
    )
    ahead = anyio.Semaphore(workers * AHEAD)  # bounds the requests waiting for their turn
    send, receive = anyio.create_memory_object_stream[tuple[int, Planned]](workers * 4)
    async with anyio.create_task_group() as group:
        for _ in range(workers):
            group.start_soon(estimator.work, receive.clone(), ahead)
        receive.close()
        async with send:
            number = 0
            async for item in _each(planned):
                await ahead.acquire()
                await send.send((number, item))
                number += 1
    await estimator.flush(0)
    order = {name: n for n, name in enumerate(catalog.names())}
    models = estimator.result.models
    estimator.result.models = {m: models[m] for m in sorted(models, key=lambda m: order.get(m, 0))}
    return estimator.result


async def _each(
    planned: Iterable[Planned] | Callable[[], AsyncIterator[Planned]],
) -> AsyncIterator[Planned]:
    if callable(planned):
        async for item in planned():
            yield item
    else:
        for item in planned:
            yield item


@dataclass
class _Estimator:
    catalog: Catalog
    counter: TokenCounter
    history: Mapping[str, tuple[int, float]]
    keep: Keep | None = None
    history_simulated: bool = False
    unused_history: Mapping[str, int] = field(default_factory=dict)
    result: Estimate = field(default_factory=Estimate)
    day: date = field(default_factory=lambda: day_of(time.time()))
    cache: CacheView = field(default_factory=CacheView.without_expiry)
    turn: int = 0  # the number of the next request to add, in planned order
    waiting: dict[int, tuple[Planned, int, bool]] = field(default_factory=dict)

    async def work(
        self, receive: MemoryObjectReceiveStream[tuple[int, Planned]], ahead: anyio.Semaphore
    ) -> None:
        async with receive:
            async for number, item in receive:
                tokens, estimated = await self.counter.input_tokens(
                    item.model, item.params, item.content_hash, known=item.known
                )
                if item.request_id is not None and item.known[0] is None:
                    self.result.counts.append((item.request_id, tokens, estimated))
                    await self.flush(KEEP_EVERY)
                self.waiting[number] = (item, tokens, estimated)
                while self.turn in self.waiting:  # add in planned order: the cache needs it
                    self.add(*self.waiting.pop(self.turn))
                    self.turn += 1
                    ahead.release()

    async def flush(self, at_least: int) -> None:
        """Hand the counts gathered so far to ``keep`` once there are ``at_least`` of them."""
        if self.keep is None or not self.result.counts or len(self.result.counts) < at_least:
            return
        counts, self.result.counts = self.result.counts, []
        await anyio.to_thread.run_sync(self.keep, counts)

    def add(self, item: Planned, tokens: int, estimated: bool) -> None:
        info = self.catalog.get(item.model)
        entry = self.result.models.setdefault(item.model, ModelEstimate(model=item.model))
        entry.cache_min_tokens, entry.cache_ttl_seconds = (
            info.cache_min_tokens,
            info.cache_ttl_seconds,
        )
        past = self.history.get(item.model)
        entry.history = past[0] if past else 0
        entry.history_simulated = self.history_simulated
        entry.unused_history = self.unused_history.get(item.model, 0)
        max_tokens = int(item.params["max_tokens"])
        entry.requests += 1
        entry.estimated += estimated
        entry.input_tokens += tokens
        if info.refuses_request(max_tokens, tokens, estimated) is not None:
            entry.invalid += 1
            return  # never sent, so it leaves nothing in the cache either
        entry.max_output_tokens += max_tokens
        read = self.cache.expect(info, item.params, tokens)
        entry.expected_cache_read_tokens += read
        expected = min(max_tokens, round(past[1])) if past else None
        if expected is not None:
            entry.expected_output_tokens = (entry.expected_output_tokens or 0) + expected

        def price(output: int | None, read: int = 0) -> Cost | None:
            if output is None:
                return None
            usage = Usage(input_tokens=tokens - read, output_tokens=output, cache_read_tokens=read)
            tier = self.catalog.priority_multiplier
            return request_cost(info, usage, self.day, item.params, tier)

        low, high = price(0), price(max_tokens)
        if low is None or high is None:
            entry.unpriced += 1
            return
        entry.cost_min_nanos += low.nanos
        entry.cost_max_nanos += high.nanos
        mid = price(expected)
        if mid is not None:
            entry.cost_expected_nanos = (entry.cost_expected_nanos or 0) + mid.nanos
        if read:
            low, high, mid = price(0, read), price(max_tokens, read), price(expected, read)
        _add_cached(entry, low, high, mid)


def _add_cached(
    entry: ModelEstimate, low: Cost | None, high: Cost | None, mid: Cost | None
) -> None:
    """Add one request, priced with its expected cache read, to the model's cost with cache;
    a request whose read has no price (``low`` None) leaves that cost unpriced for good."""
    if low is None or high is None or entry.cache_unpriced:
        entry.cache_unpriced += low is None or high is None
        entry.cached_cost_min_nanos = entry.cached_cost_max_nanos = None
        entry.cached_cost_expected_nanos = None
        return
    entry.cached_cost_min_nanos = (entry.cached_cost_min_nanos or 0) + low.nanos
    entry.cached_cost_max_nanos = (entry.cached_cost_max_nanos or 0) + high.nanos
    if mid is not None:
        entry.cached_cost_expected_nanos = (entry.cached_cost_expected_nanos or 0) + mid.nanos


def planned_from_file(specs: Iterable[object], models: list[str]) -> Iterator[Planned]:
    """The requests a job file would make: each valid line to each model it can run on."""
    for spec in specs:
        if not isinstance(spec, JobSpec):
            continue
        for model in models or [spec.model or ""]:
            if model not in spec.invalid_for:
                yield Planned(model=model, params=spec.params, content_hash=spec.content_hash)


def planned_from_store(
    store: Store, batch_id: str, models: list[str], *, every: bool = False
) -> Callable[[], AsyncIterator[Planned]]:
    """The pending requests of a stored batch that have no pre-checked count yet; with
    ``every``, all of them (the counted ones with their stored counts: nothing counted twice)."""

    async def pages() -> AsyncIterator[Planned]:
        for model in models:
            after = 0
            while page := await anyio.to_thread.run_sync(
                store.pending, batch_id, model, after, 1000
            ):
                for item in page:
                    if every or item.input_tokens is None:
                        yield Planned(
                            model=item.model,
                            params=item.params,
                            content_hash=item.content_hash,
                            request_id=item.request_id,
                            known=(item.input_tokens, item.input_estimated),
                        )
                after = page[-1].request_id

    return pages

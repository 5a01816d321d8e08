"""What a batch will cost before it runs: the pre-check alone, summed per model.

Input tokens are exact where count_tokens answered and marked where estimated. Output tokens are
a range, from 0 to the sum of ``max_tokens``, and an expected figure where the store has results
of that model: each request is expected to write the model's past mean output, capped by its own
``max_tokens``. Cost is the range and expected value of the same, at today's prices;
requests of a model without a price are counted as unpriced, never as $0.
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
from batchrun.plan.precheck import TokenCounter
from batchrun.pricing import Cost, Usage, day_of, request_cost

if TYPE_CHECKING:
    from batchrun.store import Store

Keep = Callable[[list[tuple[int, int, bool]]], None]  # stores (request id, tokens, estimated)
KEEP_EVERY = 5000


@dataclass(frozen=True, kw_only=True, slots=True)
class Planned:
    """One request to estimate."""

    model: str
    params: dict[str, Any]
    content_hash: str
    request_id: int | None = None


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
    cost_min_nanos: int = 0
    cost_max_nanos: int = 0
    cost_expected_nanos: int | None = None
    unpriced: int = 0


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
                         "cost_min_nanos", "cost_max_nanos", "unpriced", "history"):  # fmt: skip
                setattr(total, name, getattr(total, name) + getattr(m, name))
        expected = [m.cost_expected_nanos for m in self.models.values()]
        outputs = [m.expected_output_tokens for m in self.models.values()]
        if expected and all(e is not None for e in expected):
            total.cost_expected_nanos = sum(e for e in expected if e is not None)
            total.expected_output_tokens = sum(o for o in outputs if o is not None)
        return total


async def estimate(
    planned: Iterable[Planned] | Callable[[], AsyncIterator[Planned]],
    catalog: Catalog,
    counter: TokenCounter,
    history: Mapping[str, tuple[int, float]],
    *,
    workers: int = 32,
    keep: Keep | None = None,
) -> Estimate:
    """Count and price every planned request; ``history`` is model -> (results, mean output).

    With ``keep``, the counts of stored requests are handed to it in slices as they come (to
    store them) instead of piling up in ``Estimate.counts``: a million requests stay small.
    """
    estimator = _Estimator(catalog=catalog, counter=counter, history=history, keep=keep)
    send, receive = anyio.create_memory_object_stream[Planned](workers * 4)
    async with anyio.create_task_group() as group:
        for _ in range(workers):
            group.start_soon(estimator.work, receive.clone())
        receive.close()
        async with send:
            if callable(planned):
                async for item in planned():
                    await send.send(item)
            else:
                for item in planned:
                    await send.send(item)
    await estimator.flush(0)
    order = {name: n for n, name in enumerate(catalog.names())}
    models = estimator.result.models
    estimator.result.models = {m: models[m] for m in sorted(models, key=lambda m: order.get(m, 0))}
    return estimator.result


@dataclass
class _Estimator:
    catalog: Catalog
    counter: TokenCounter
    history: Mapping[str, tuple[int, float]]
    keep: Keep | None = None
    result: Estimate = field(default_factory=Estimate)
    day: date = field(default_factory=lambda: day_of(time.time()))

    async def work(self, receive: MemoryObjectReceiveStream[Planned]) -> None:
        async with receive:
            async for item in receive:
                tokens, estimated = await self.counter.input_tokens(
                    item.model, item.params, item.content_hash
                )
                if item.request_id is not None:
                    self.result.counts.append((item.request_id, tokens, estimated))
                    await self.flush(KEEP_EVERY)
                self.add(item, tokens, estimated)

    async def flush(self, at_least: int) -> None:
        """Hand the counts gathered so far to ``keep`` once there are ``at_least`` of them."""
        if self.keep is None or not self.result.counts or len(self.result.counts) < at_least:
            return
        counts, self.result.counts = self.result.counts, []
        await anyio.to_thread.run_sync(self.keep, counts)

    def add(self, item: Planned, tokens: int, estimated: bool) -> None:
        info = self.catalog.get(item.model)
        entry = self.result.models.setdefault(item.model, ModelEstimate(model=item.model))
        past = self.history.get(item.model)
        entry.history = past[0] if past else 0
        max_tokens = int(item.params["max_tokens"])
        entry.requests += 1
        entry.estimated += estimated
        entry.input_tokens += tokens
        if info.refuses_request(max_tokens, tokens, estimated) is not None:
            entry.invalid += 1
            return
        entry.max_output_tokens += max_tokens
        expected = min(max_tokens, round(past[1])) if past else None
        if expected is not None:
            entry.expected_output_tokens = (entry.expected_output_tokens or 0) + expected

        def price(output: int) -> Cost | None:
            usage = Usage(input_tokens=tokens, output_tokens=output)
            tier = self.catalog.priority_multiplier
            return request_cost(info, usage, self.day, item.params, tier)

        low, high = price(0), price(max_tokens)
        if low is None or high is None:
            entry.unpriced += 1
            return
        entry.cost_min_nanos += low.nanos
        entry.cost_max_nanos += high.nanos
        mid = price(expected) if expected is not None else None
        if mid is not None:
            entry.cost_expected_nanos = (entry.cost_expected_nanos or 0) + mid.nanos


def planned_from_file(specs: Iterable[object], models: list[str]) -> Iterator[Planned]:
    """The requests a job file would make: each valid line to each model it can run on."""
    for spec in specs:
        if not isinstance(spec, JobSpec):
            continue
        for model in models or [spec.model or ""]:
            if model not in spec.invalid_for:
                yield Planned(model=model, params=spec.params, content_hash=spec.content_hash)


def planned_from_store(
    store: Store, batch_id: str, models: list[str]
) -> Callable[[], AsyncIterator[Planned]]:
    """The pending requests of a stored batch that have no pre-checked count yet."""

    async def pages() -> AsyncIterator[Planned]:
        for model in models:
            after = 0
            while page := await anyio.to_thread.run_sync(
                store.pending, batch_id, model, after, 1000
            ):
                for item in page:
                    if item.input_tokens is None:
                        yield Planned(
                            model=item.model,
                            params=item.params,
                            content_hash=item.content_hash,
                            request_id=item.request_id,
                        )
                after = page[-1].request_id

    return pages

"""Recompute stored costs with the current catalog, after a price change or a new override.

Every repriced result gets all three cost figures from the same price: its cost, what it would
have cost without the prompt cache, and the part paid for cache writes (older results stored
before batchrun kept the last two gain them here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchrun.catalog import Catalog
from batchrun.pricing import Cost, Usage, day_of, request_cost
from batchrun.store import CostUpdate, Store


@dataclass
class ModelChange:
    """What repricing changed for one model."""

    model: str
    results: int = 0
    changed: int = 0
    before_nanos: int = 0
    after_nanos: int = 0
    unpriced_before: int = 0
    unpriced_after: int = 0
    cache_figures_filled: int = 0  # priced results that had no uncached cost stored before


def reprice(store: Store, catalog: Catalog, batch_id: str | None) -> list[ModelChange]:
    """Recompute the cost of every result (of one batch, or all) and store what changed."""
    changes: dict[str, ModelChange] = {}
    updates: list[CostUpdate] = []
    for row in store.pricing_rows(batch_id):
        change = changes.setdefault(row["model"], ModelChange(model=row["model"]))
        old = row["cost_nanos"]
        update = _update(row["request_id"], _cost(catalog, row))
        change.results += 1
        _add(change, old, before=True)
        _add(change, update.cost_nanos, before=False)
        if old != update.cost_nanos or row["price_date"] != update.price_date:
            change.changed += 1
        if update.uncached_cost_nanos is not None and row["uncached_cost_nanos"] is None:
            change.cache_figures_filled += 1
        if _differs(row, update):
            updates.append(update)
    store.update_costs(updates)
    return list(changes.values())


def _update(request_id: int, cost: Cost | None) -> CostUpdate:
    if cost is None:
        return CostUpdate(
            request_id=request_id,
            cost_nanos=None,
            price_date=None,
            uncached_cost_nanos=None,
            cache_write_cost_nanos=None,
        )
    return CostUpdate(
        request_id=request_id,
        cost_nanos=cost.nanos,
        price_date=cost.price_date.isoformat(),
        uncached_cost_nanos=cost.uncached_nanos,
        cache_write_cost_nanos=cost.cache_write_nanos,
    )


def _differs(row: dict[str, Any], update: CostUpdate) -> bool:
    """Whether any stored cost figure differs from the recomputed one."""
    return any(
        row[name] != getattr(update, name)
        for name in ("cost_nanos", "price_date", "uncached_cost_nanos", "cache_write_cost_nanos")
    )


def _cost(catalog: Catalog, row: dict[str, Any]) -> Cost | None:
    if row["model"] not in catalog:
        return None  # a model no longer in the catalog cannot be priced
    usage = Usage(
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cache_read_tokens=row["cache_read_tokens"],
        cache_creation_tokens=row["cache_creation_tokens"],
    )
    day = day_of(row["sent_at"])
    info = catalog.get(row["model"])
    return request_cost(info, usage, day, row["params"] or {}, catalog.priority_multiplier)


def _add(change: ModelChange, nanos: int | None, *, before: bool) -> None:
    if nanos is None:
        if before:
            change.unpriced_before += 1
        else:
            change.unpriced_after += 1
    elif before:
        change.before_nanos += nanos
    else:
        change.after_nanos += nanos

"""Recompute stored costs with the current catalog, after a price change or a new override."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchrun.catalog import Catalog
from batchrun.pricing import Cost, Usage, day_of, request_cost
from batchrun.store import Store


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


def reprice(store: Store, catalog: Catalog, batch_id: str | None) -> list[ModelChange]:
    """Recompute the cost of every result (of one batch, or all) and store what changed."""
    changes: dict[str, ModelChange] = {}
    updates: list[tuple[int, int | None, str | None]] = []
    for row in store.pricing_rows(batch_id):
        change = changes.setdefault(row["model"], ModelChange(model=row["model"]))
        old = row["cost_nanos"]
        new_cost = _cost(catalog, row)
        new = new_cost.nanos if new_cost else None
        change.results += 1
        _add(change, old, before=True)
        _add(change, new, before=False)
        price_date = new_cost.price_date.isoformat() if new_cost else None
        if old != new or row["price_date"] != price_date:
            change.changed += 1
            updates.append((row["request_id"], new, price_date))
    store.update_costs(updates)
    return list(changes.values())


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

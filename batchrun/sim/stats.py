"""What the simulator saw, served by GET /_sim/stats so tests and benchmarks can check it."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

OUTCOMES = ("ok", "4xx", "429", "5xx", "dropped", "client_gone")


@dataclass
class SimStats:
    """Counters since start or the last reset."""

    messages_total: int = 0
    count_tokens_total: int = 0
    in_flight: int = 0
    by_model: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def record(self, model: str, outcome: str, **extra: int) -> None:
        """Count one finished request of ``model`` by its outcome, plus any extra counters."""
        counts = self.by_model[model]
        counts[outcome] += 1
        counts.update(extra)

    def reset(self) -> None:
        """Zero every counter except requests still in flight."""
        self.messages_total = 0
        self.count_tokens_total = 0
        self.by_model.clear()

    def as_json(self) -> dict[str, Any]:
        """The stats in the shape GET /_sim/stats returns."""
        return {
            "messages_total": self.messages_total,
            "count_tokens_total": self.count_tokens_total,
            "in_flight": self.in_flight,
            "models": {
                model: {**dict.fromkeys(OUTCOMES, 0), **counts}
                for model, counts in sorted(self.by_model.items())
            },
        }


def merge_stats(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """The stats of several processes (each as ``as_json`` gives it), summed into one."""
    merged = SimStats()
    for snapshot in snapshots:
        merged.messages_total += snapshot["messages_total"]
        merged.count_tokens_total += snapshot["count_tokens_total"]
        merged.in_flight += snapshot["in_flight"]
        for model, counts in snapshot["models"].items():
            merged.by_model[model].update(counts)
    return merged.as_json()

"""A worker's vitals in its heartbeat row: requests sent, their rate, and event-loop stalls.

``batchrun worker`` counts what its runs send (from their live progress), watches its event loop
(run.looplag) and writes the figures to its ``workers`` row every few seconds, from a thread so
that the write itself never stalls the loop. ``batchrun status`` and the dashboard read them back
(``worker_figures``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from batchrun.exceptions import StoreError
from batchrun.run.looplag import LoopLag
from batchrun.run.progress import RunProgress
from batchrun.store import Store

if TYPE_CHECKING:  # the worker pulls in the SDK: `status` reads worker_figures without it
    from batchrun.teams.worker import Worker, WorkerReport

log = logging.getLogger(__name__)

WINDOW_S = 60.0  # the rate is over the last minute
BEAT_S = 5.0  # at most this long between two writes of the figures


class Vitals:
    """What one worker sent (over every batch it ran) and how late its loop woke."""

    def __init__(
        self, lag: LoopLag | None = None, window_s: float = WINDOW_S, now: float | None = None
    ) -> None:
        self.lag = lag or LoopLag()
        self.window_s = window_s
        self._runs: list[RunProgress] = []
        # Nothing sent at the start (``now``, monotonic): the first beat has a rate already.
        start = time.monotonic() if now is None else now
        self._samples: deque[tuple[float, int]] = deque([(start, 0)])

    def see(self, progress: RunProgress) -> None:
        """Count a run's progress in (each batch run has its own)."""
        if not any(run is progress for run in self._runs):
            self._runs.append(progress)

    def showing(self, display: Callable[[RunProgress], object]) -> Callable[[RunProgress], None]:
        """A display callback that also counts the run in, then shows it with ``display``."""

        def show(progress: RunProgress) -> None:
            self.see(progress)
            display(progress)

        return show

    def sent(self) -> int:
        """Requests sent so far: every attempt made (retries too; invalid lines never go)."""
        return sum(
            m.succeeded + m.errored + m.retries for run in self._runs for m in run.models.values()
        )

    def per_minute(self, now: float) -> float:
        """Requests sent per minute over the last minute (over the worker's life if shorter)."""
        sent = self.sent()
        self._samples.append((now, sent))
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.window_s:
            self._samples.popleft()  # keep one sample at or before the window's start
        since, before = self._samples[0]
        return (sent - before) / (now - since) * 60 if now > since else 0.0

    def figures(self, now: float | None = None) -> dict[str, float | int]:
        """The columns of the worker's row, as of ``now`` (monotonic seconds)."""
        rate = self.per_minute(time.monotonic() if now is None else now)
        return {
            "sent": self.sent(),
            "sent_per_min": round(rate, 2),
            "stall_s": round(self.lag.take(), 4),
            "stall_max_s": round(self.lag.longest_s, 4),
        }


async def beat(store: Store, owner: str, vitals: Vitals, every_s: float = BEAT_S) -> None:
    """Write the worker's figures to its row every ``every_s`` seconds, forever."""
    while True:
        await anyio.sleep(every_s)
        try:
            await anyio.to_thread.run_sync(store.claims.record_vitals, owner, vitals.figures())
        except StoreError as exc:  # a blip: the next beat writes newer figures anyway
            log.warning("could not record the worker's figures: %s", exc)


async def serve_watched(worker: Worker, vitals: Vitals, every_s: float = BEAT_S) -> WorkerReport:
    """Run the worker with its loop watched and its figures written beside its heartbeat."""
    async with anyio.create_task_group() as group:
        group.start_soon(vitals.lag.watch)
        group.start_soon(beat, worker.store, worker.id, vitals, every_s)
        report = await worker.serve()
        group.cancel_scope.cancel()
    return report


def worker_figures(rows: Sequence[Mapping[str, Any]], now: float) -> list[dict[str, Any]]:
    """The registered workers as ``status`` and the dashboard show them (None: not known)."""
    return [
        {
            "worker": row["id"],
            "host": row["host"],
            "pid": row["pid"],
            "up_s": round(now - row["started_at"], 1),
            "heartbeat_age_s": round(now - row["heartbeat_at"], 1),
            "claims_held": row["holding"],
            "sent": row.get("sent"),
            "sent_per_min": row.get("sent_per_min"),
            "stall_s": row.get("stall_s"),
            "stall_max_s": row.get("stall_max_s"),
        }
        for row in rows
    ]


def worker_cells(figures: Mapping[str, Any]) -> dict[str, Any]:
    """One worker's figures under the labels a person reads (``status``, the dashboard)."""
    return {
        "worker": figures["worker"],
        "host": figures["host"],
        "up (min)": round(figures["up_s"] / 60, 1),
        "heartbeat (s ago)": figures["heartbeat_age_s"],
        "claims held": figures["claims_held"],
        "sent": figures["sent"],
        "rate (req/min)": figures["sent_per_min"],
        "longest loop stall (s)": figures["stall_max_s"],
    }

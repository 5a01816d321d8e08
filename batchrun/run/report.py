"""A batch's status around a run: whether it may be resumed (``check_resumable``), how a run
ended, and the status that gives its batch (``finish_batch``).

Light to import: the commands read a report after the run without loading anything more.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from batchrun.exceptions import ConfigError
from batchrun.status import BatchStatus, RequestStatus, batch_status_after_run

if TYPE_CHECKING:
    from batchrun.store import BatchInfo, Outcome, Store


class StopReason(StrEnum):
    """Why a batch's last run ended, as stored in ``batches.stop_reason``."""

    FINISHED = "finished"  # nothing left pending
    BUDGET = "budget"  # the next request's worst case would pass a cap or budget
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM
    DISK_LOW = "disk_low"  # dispatch stopped for want of free space
    STORE_ERROR = "store_error"  # results could not be saved
    MODEL_STOPPED = "model_stopped"  # a model refused to go on (quota, unpriced, auth...)
    CANCELED = "canceled"  # `batchrun cancel` ran meanwhile
    PENDING = "pending"  # requests left for another reason (another process sends them)


STOP_TEXT = {
    StopReason.FINISHED: "finished",
    StopReason.BUDGET: "stopped at its budget",
    StopReason.INTERRUPTED: "interrupted",
    StopReason.DISK_LOW: "stopped: disk low",
    StopReason.STORE_ERROR: "stopped: results could not be saved",
    StopReason.MODEL_STOPPED: "stopped: a model refused to go on",
    StopReason.CANCELED: "canceled",
    StopReason.PENDING: "stopped with requests pending",
}


@dataclass
class RunReport:
    """How a run ended."""

    interrupted: bool = False
    stopped_models: dict[str, str] = field(default_factory=dict)
    budget_reached: bool = False  # the batch's cap (or a budget over all its models) is spent
    budget_models: dict[str, str] = field(default_factory=dict)  # stopped at their own budget
    store_error: str | None = None
    unsaved: list[Outcome] = field(default_factory=list)
    canceled: bool = False  # `batchrun cancel` ran meanwhile
    disk_low: str | None = None  # dispatch stopped for want of free space: what was short

    def stop_reason(self, *, pending: int, canceled: bool) -> StopReason:
        """Why the run ended: the first cause that applies, most serious first."""
        causes = (
            (canceled, StopReason.CANCELED),
            (self.store_error is not None, StopReason.STORE_ERROR),
            (self.disk_low is not None, StopReason.DISK_LOW),
            (self.budget_reached or (bool(self.budget_models) and pending > 0), StopReason.BUDGET),
            (self.interrupted, StopReason.INTERRUPTED),
            (bool(self.stopped_models) and pending > 0, StopReason.MODEL_STOPPED),
            (pending == 0, StopReason.FINISHED),
        )
        return next((reason for cause, reason in causes if cause), StopReason.PENDING)


@dataclass(frozen=True, kw_only=True)
class FinishedBatch:
    """A batch once its run ended: its status, and its requests per model and status."""

    status: BatchStatus
    counts: dict[str, dict[str, int]]

    @property
    def pending(self) -> int:
        """Requests still pending, over every model."""
        return count_requests(self.counts, RequestStatus.PENDING)

    @property
    def failed(self) -> int:
        """Requests errored or invalid, over every model."""
        return count_requests(self.counts, RequestStatus.ERRORED, RequestStatus.INVALID)


def count_requests(counts: Mapping[str, Mapping[str, int]], *statuses: RequestStatus) -> int:
    """Requests in any of ``statuses``, over every model of ``counts`` (Store.status_counts)."""
    return sum(by.get(s, 0) for by in counts.values() for s in statuses)


def check_resumable(batch: BatchInfo) -> None:
    """Refuse to resume a canceled batch, or one whose file was not wholly loaded."""
    if batch.status == BatchStatus.CANCELED:
        raise ConfigError(f"batch {batch.name} was canceled; run its file again for a new batch")
    if batch.status == BatchStatus.LOADING:
        raise ConfigError(
            f"batch {batch.name} was interrupted while its file was being loaded, so it holds "
            "only part of the file; run the file again (that makes a complete new batch)"
        )


def finish_batch(
    store: Store, batch_id: str, report: RunReport, *, pause: bool = True
) -> FinishedBatch:
    """Mark a batch after a run: completed if nothing is pending, canceled if `batchrun cancel`
    ran meanwhile (it stays so), else paused; with why the run ended (StopReason). Without
    ``pause`` a batch with pending requests is left as it is (a team's batch stays open for the
    other workers)."""
    counts = store.status_counts(batch_id)
    pending = count_requests(counts, RequestStatus.PENDING)
    canceled = report.canceled or store.find_batch(batch_id).status == BatchStatus.CANCELED
    status = batch_status_after_run(pending=pending, canceled=canceled)
    reason = report.stop_reason(pending=pending, canceled=canceled)
    _keep_budget_models(store, batch_id, report)
    if status is BatchStatus.COMPLETED:
        store.set_batch(batch_id, status=status, finished_at=time.time(), stop_reason=reason)
    elif status is BatchStatus.PAUSED and pause:
        store.set_batch(batch_id, status=status, stop_reason=reason)
    return FinishedBatch(status=status, counts=counts)


def _keep_budget_models(store: Store, batch_id: str, report: RunReport) -> None:
    """Keep with the batch the models its last run stopped at their own budget (and which
    budget), as ``settings["budget_models"]``, for ``batchrun status``."""
    kept = store.find_batch(batch_id).settings
    if kept.get("budget_models", {}) != report.budget_models:
        store.set_batch(batch_id, settings={**kept, "budget_models": report.budget_models})


def budget_models_text(batch: BatchInfo) -> str:
    """``MiniMax-M2.7 at the day budget of $1.00 for MiniMax-M2.7``: the models the batch's
    last run stopped at their own budget; empty when none."""
    stopped = batch.settings.get("budget_models") or {}
    return "; ".join(f"{model} at {budget}" for model, budget in stopped.items())

"""The statuses a batch and a request go through, and the moves allowed between them.

    batch:    loading ─► running ◄─► paused        (submit: loading ─► queued ─► running)
                           │  ▲
                           ▼  │ resume, --retry-errored, a judge run again
                        completed              any but canceled ─► canceled (final)

    request:  pending ─► succeeded | errored | canceled;   errored ─► pending (--retry-errored)
              invalid (a job line that could not be sent) is final from the start

The store refuses a batch move that BATCH_MOVES does not list (BatchMoveError); a request's
moves are guarded in the store's own SQL (an update applies only to a request still pending).

Both are ``StrEnum``s: a member equals its stored string, so rows read back compare equal.
"""

from __future__ import annotations

from enum import StrEnum


class BatchStatus(StrEnum):
    """Where a batch is."""

    LOADING = "loading"  # lines are still being stored: never continued as if whole
    QUEUED = "queued"  # submitted for workers, none has started it
    RUNNING = "running"
    PAUSED = "paused"  # stopped with requests still pending: resume continues it
    COMPLETED = "completed"  # nothing pending
    CANCELED = "canceled"  # final: pending requests were canceled


class RequestStatus(StrEnum):
    """Where one (job, model) request is."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    ERRORED = "errored"
    INVALID = "invalid"  # its job line was wrong for this model: never sent
    CANCELED = "canceled"


_OPEN = frozenset({BatchStatus.QUEUED, BatchStatus.RUNNING, BatchStatus.PAUSED})
BATCH_MOVES: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.LOADING: frozenset({BatchStatus.RUNNING, BatchStatus.QUEUED, BatchStatus.CANCELED}),
    BatchStatus.QUEUED: _OPEN | {BatchStatus.COMPLETED, BatchStatus.CANCELED},
    BatchStatus.RUNNING: _OPEN | {BatchStatus.COMPLETED, BatchStatus.CANCELED},
    BatchStatus.PAUSED: _OPEN | {BatchStatus.COMPLETED, BatchStatus.CANCELED},
    BatchStatus.COMPLETED: _OPEN | {BatchStatus.COMPLETED, BatchStatus.CANCELED},
    # Final: run.report.finish_batch leaves a batch canceled while it ran as it is.
    BatchStatus.CANCELED: frozenset({BatchStatus.CANCELED}),
}
REQUEST_MOVES: dict[RequestStatus, frozenset[RequestStatus]] = {
    RequestStatus.PENDING: frozenset(
        {RequestStatus.SUCCEEDED, RequestStatus.ERRORED, RequestStatus.CANCELED}
    ),
    RequestStatus.ERRORED: frozenset({RequestStatus.PENDING}),
    RequestStatus.SUCCEEDED: frozenset(),
    RequestStatus.INVALID: frozenset(),
    RequestStatus.CANCELED: frozenset(),
}
OPEN_BATCHES = (BatchStatus.QUEUED, BatchStatus.RUNNING)  # what workers take work from
FINISHED_REQUESTS = (RequestStatus.SUCCEEDED, RequestStatus.ERRORED, RequestStatus.INVALID)


def batch_may_move(old: str, new: str) -> bool:
    """Whether a batch in ``old`` may be set to ``new``."""
    return BatchStatus(new) in BATCH_MOVES[BatchStatus(old)]


def batch_status_after_run(*, pending: int, canceled: bool) -> BatchStatus:
    """A batch's status once a run of it ends: completed if nothing is pending, else paused."""
    if canceled:
        return BatchStatus.CANCELED
    return BatchStatus.COMPLETED if pending == 0 else BatchStatus.PAUSED

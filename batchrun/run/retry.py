"""Retry rules as data: a frozen policy and a pure ``decide()`` (procrastinate's RetryStrategy).

Every failed attempt is classified (``FailureKind``) by the client; ``decide`` says whether to try
again and after how long, to give up on this request, or to stop sending to this model. A plan's
quota (MiniMax 2056) that renews within ``quota_wait`` pauses the model until then instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from batchrun.api.failures import FailureKind

RETRYABLE = frozenset(
    {
        FailureKind.RATE_LIMITED,
        FailureKind.OVERLOADED,
        FailureKind.SERVER,
        FailureKind.CONNECTION,
        FailureKind.TIMEOUT,
        FailureKind.STALLED,
    }
)
STOPS_MODEL = frozenset(
    {FailureKind.AUTH, FailureKind.BALANCE, FailureKind.QUOTA, FailureKind.NO_ROUTE}
)
QUOTA_WAIT = 900.0  # seconds: a quota that renews within 15 minutes is waited for
# MiniMax gives the reset to the second; a little after it, so the first call is not too early.
QUOTA_MARGIN = 0.5
# One balance pays for every model, and one base URL serves them all.
STOPS_EVERY_MODEL = frozenset({FailureKind.BALANCE, FailureKind.NO_ROUTE})
BACKS_OFF_MODEL = frozenset({FailureKind.RATE_LIMITED, FailureKind.OVERLOADED})


class Action(Enum):
    """What to do after a failed attempt."""

    RETRY = "retry"
    GIVE_UP = "give_up"  # this request is errored; the others go on
    STOP_MODEL = "stop_model"  # nothing more goes to this model; its requests stay pending
    WAIT_QUOTA = "wait_quota"  # pause the model until its quota renews, then try again


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    """The action, and for RETRY and WAIT_QUOTA the delay in seconds before the next attempt."""

    action: Action
    delay: float = 0.0


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, for a bounded number of attempts.

    ``quota_wait``: how far ahead (seconds) a plan quota's renewal may be for the model to wait
    for it; 0 never waits. A quota wait does not use up a request's attempts.
    """

    max_attempts: int = 8
    base_delay: float = 1.0
    max_delay: float = 60.0
    quota_wait: float = QUOTA_WAIT

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before attempt ``attempt + 1``: uniform in [0, min(max, base * 2^(attempt-1))]."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return (rng or random).uniform(0.0, ceiling)


def decide(
    policy: RetryPolicy,
    kind: FailureKind,
    attempt: int,
    retry_after: float | None = None,
    rng: random.Random | None = None,
    *,
    quota_reset_in: float | None = None,
) -> Decision:
    """What to do after attempt number ``attempt`` (1-based) failed with ``kind``.

    ``quota_reset_in``: for a quota, seconds until it renews, when its message says.
    """
    if kind is FailureKind.QUOTA and quota_reset_in is not None:
        return _after_quota(policy, attempt, quota_reset_in, rng)
    if kind in STOPS_MODEL:
        return Decision(action=Action.STOP_MODEL)
    if kind not in RETRYABLE or attempt >= policy.max_attempts:
        return Decision(action=Action.GIVE_UP)
    delay = policy.backoff(attempt, rng)
    if retry_after is not None:
        delay = max(delay, retry_after)  # the server's word is a floor, never ignored
    return Decision(action=Action.RETRY, delay=delay)


def _after_quota(
    policy: RetryPolicy, attempt: int, reset_in: float, rng: random.Random | None
) -> Decision:
    """Wait for a renewal within ``quota_wait``; a renewal already past that MiniMax still
    refuses is retried as a plain failure (using up attempts), so it cannot loop for ever."""
    if policy.quota_wait <= 0 or reset_in > policy.quota_wait:
        return Decision(action=Action.STOP_MODEL)
    if reset_in > 0:
        return Decision(action=Action.WAIT_QUOTA, delay=reset_in + QUOTA_MARGIN)
    if attempt >= policy.max_attempts:
        return Decision(action=Action.STOP_MODEL)  # its requests stay pending for a resume
    return Decision(action=Action.RETRY, delay=policy.backoff(attempt, rng))

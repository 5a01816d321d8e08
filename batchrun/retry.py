"""Retry rules as data: a frozen policy and a pure ``decide()`` (procrastinate's RetryStrategy).

Every failed attempt is classified (``FailureKind``) by the client; ``decide`` says whether to try
again and after how long, to give up on this request, or to stop sending to this model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum


class FailureKind(Enum):
    """What went wrong with one attempt, in the terms that decide what happens next."""

    RATE_LIMITED = "rate_limited"  # 429
    OVERLOADED = "overloaded"  # 529
    SERVER = "server"  # 5xx other than insufficient balance
    CONNECTION = "connection"  # refused, reset, dropped mid-stream
    TIMEOUT = "timeout"  # total deadline passed
    STALLED = "stalled"  # no event within the idle deadline
    BAD_REQUEST = "bad_request"  # 400, 404, 413, 422: the request itself is wrong
    MODERATION = "moderation"  # MiniMax 1026 / 1027: flagged input or output
    AUTH = "auth"  # 401 / 403: the key is refused
    BALANCE = "balance"  # MiniMax 1008: insufficient balance (sent as a 500)
    QUOTA = "quota"  # MiniMax 2056: the plan's usage quota (a 5-hour window) is used up


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
STOPS_MODEL = frozenset({FailureKind.AUTH, FailureKind.BALANCE, FailureKind.QUOTA})
STOPS_EVERY_MODEL = frozenset({FailureKind.BALANCE})  # one balance pays for every model
BACKS_OFF_MODEL = frozenset({FailureKind.RATE_LIMITED, FailureKind.OVERLOADED})


class CallFailure(Exception):
    """A call that did not produce a message, classified for retry decisions."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        code: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.error_type = error_type or kind.value
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after


class Action(Enum):
    """What to do after a failed attempt."""

    RETRY = "retry"
    GIVE_UP = "give_up"  # this request is errored; the others go on
    STOP_MODEL = "stop_model"  # nothing more goes to this model; its requests stay pending


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    """The action, and for RETRY the delay in seconds before the next attempt."""

    action: Action
    delay: float = 0.0


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, for a bounded number of attempts."""

    max_attempts: int = 8
    base_delay: float = 1.0
    max_delay: float = 60.0

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
) -> Decision:
    """What to do after attempt number ``attempt`` (1-based) failed with ``kind``."""
    if kind in STOPS_MODEL:
        return Decision(action=Action.STOP_MODEL)
    if kind not in RETRYABLE or attempt >= policy.max_attempts:
        return Decision(action=Action.GIVE_UP)
    delay = policy.backoff(attempt, rng)
    if retry_after is not None:
        delay = max(delay, retry_after)  # the server's word is a floor, never ignored
    return Decision(action=Action.RETRY, delay=delay)

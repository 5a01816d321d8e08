"""How one failed call is described: the MiniMax error classification every layer above shares.

``api.client`` turns HTTP statuses, MiniMax codes and broken streams into a ``CallFailure``;
``run.retry`` decides what happens next from its ``FailureKind``.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import Enum

from batchrun.redaction import redact

# MiniMax's 2056 quota message says when the plan renews: "... resets at 2026-05-15T15:00:00Z".
_RESET_AT = re.compile(
    r"resets at (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))",
    re.IGNORECASE,
)


class FailureKind(Enum):
    """What went wrong with one attempt, in the terms that decide what happens next."""

    RATE_LIMITED = "rate_limited"  # 429
    OVERLOADED = "overloaded"  # 529
    SERVER = "server"  # 5xx other than insufficient balance
    CONNECTION = "connection"  # refused, reset, dropped mid-stream
    TIMEOUT = "timeout"  # total deadline passed
    STALLED = "stalled"  # no event within the idle deadline
    BAD_REQUEST = "bad_request"  # 400, 404, 413, 422: the request itself is wrong
    CONTEXT_OVERFLOW = "context_overflow"  # MiniMax 2013: too long for the model (input+max_tokens)
    MODERATION = "moderation"  # MiniMax 1026 / 1027: flagged input or output
    AUTH = "auth"  # 401 / 403: the key is refused
    BALANCE = "balance"  # MiniMax 1008: insufficient balance (sent as a 500)
    QUOTA = "quota"  # MiniMax 2056: the plan's usage quota (a 5-hour window) is used up
    NO_ROUTE = "no_route"  # a plain-text 404 ("404 page not found"): the base URL is wrong


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
        reset_at: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.error_type = error_type or kind.value
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after
        self.reset_at = reset_at  # a quota's renewal (UTC epoch seconds), when the message says

    def redacted(self) -> CallFailure:
        """This failure with secrets and credentials taken out of its message (in place)."""
        self.message = redact(self.message)
        self.args = (self.message,)
        return self


def quota_reset(message: str) -> float | None:
    """When a 2056 quota renews (UTC epoch seconds), from its message; None when it says not."""
    found = _RESET_AT.search(message)
    if found is None:
        return None
    text = found.group(1)
    try:
        # fromisoformat takes "+00:00"; a trailing Z is UTC too.
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "zZ" else text)
    except ValueError:
        return None
    return moment.timestamp()

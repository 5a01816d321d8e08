"""Errors the simulator answers with, in MiniMax's Anthropic-compatible body shape.

The messages are the ones MiniMax was seen to send (../shared/reference/minimax-field-evidence.md
and the team's contracts C1-C9, C13): a client matches on their codes and a few of their words.
"""

from __future__ import annotations

import uuid
from typing import Any

# MiniMax's numeric codes (see ../shared/reference/minimax-facts.md).
INVALID_PARAMS = 2013
AUTH_FAILED = 1004
RATE_LIMITED = 1002
INSUFFICIENT_BALANCE = 1008
INTERNAL = 1000
TIMEOUT = 1001
SYSTEM_ERROR = 1033
USAGE_LIMIT = 2056

MISSING_BEARER = (
    "login fail: Please carry the API secret key in the 'Authorization' field of the request header"
)


def new_request_id() -> str:
    """A fresh request id, as sent in the ``request-id`` header and in error bodies."""
    return uuid.uuid4().hex


class ApiFailure(Exception):
    """An error response: HTTP status, Anthropic error type and MiniMax code.

    ``delay`` is how many wall seconds the simulator waits before answering (a 408 comes late).
    """

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        code: int | None = None,
        *,
        delay: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = f"{message} ({code})" if code is not None else message
        self.code = code
        self.delay = delay
        self.request_id = new_request_id()

    def body(self) -> dict[str, Any]:
        """The JSON body MiniMax sends for this error (its request_id is the header's)."""
        return {
            "type": "error",
            "error": {"type": self.error_type, "message": self.message},
            "request_id": self.request_id,
        }


def invalid(message: str, code: int = INVALID_PARAMS) -> ApiFailure:
    """A 400 invalid_request_error."""
    return ApiFailure(400, "invalid_request_error", f"invalid params, {message}", code)


def unauthorized(message: str) -> ApiFailure:
    """A 401 authentication_error."""
    return ApiFailure(401, "authentication_error", message, AUTH_FAILED)


def missing_bearer() -> ApiFailure:
    """C1: the key did not come as ``Authorization: Bearer`` (x-api-key only, or no key)."""
    return unauthorized(MISSING_BEARER)


def invalid_key() -> ApiFailure:
    """C1: a Bearer key other than the configured one."""
    return unauthorized("invalid api key")


def rate_limited(model: str, what: str) -> ApiFailure:
    """A 429 rate_limit_error for one model's limit."""
    return ApiFailure(
        429, "rate_limit_error", f"rate limit exceeded ({what}) for {model}", RATE_LIMITED
    )


def account_rate_limited(what: str) -> ApiFailure:
    """C13: a 429 rate_limit_error for the account's pool across all models."""
    return ApiFailure(
        429, "rate_limit_error", f"rate limit exceeded (account {what})", RATE_LIMITED
    )


def usage_limit(used: int, limit: int, resets_at: str) -> ApiFailure:
    """C4: a Token Plan's quota is used up until ``resets_at`` (ISO 8601 UTC with a Z)."""
    return ApiFailure(
        429,
        "rate_limit_error",
        "usage limit exceeded, 5-hour usage limit reached for Token Plan Starter "
        f"({used}/{limit} used), resets at {resets_at}",
        USAGE_LIMIT,
    )


def overloaded() -> ApiFailure:
    """A 529 overloaded_error (MiniMax sends no code with it)."""
    return ApiFailure(529, "overloaded_error", "the server cluster is under high load, retry later")


def server_error() -> ApiFailure:
    """A retryable 500 api_error."""
    return ApiFailure(500, "api_error", "unknown error", INTERNAL)


def system_error() -> ApiFailure:
    """C7: a retryable 500 api_error ``system error (1033)``."""
    return ApiFailure(500, "api_error", "system error", SYSTEM_ERROR)


def request_timeout(delay: float) -> ApiFailure:
    """C5: a 408 sent after ``delay`` wall seconds, before any byte of an answer."""
    return ApiFailure(408, "api_error", "request timeout", TIMEOUT, delay=delay)


def insufficient_balance(status: int = 500) -> ApiFailure:
    """C6: MiniMax's insufficient balance, a 500 api_error (or, by a setting, a 402)."""
    if status == 402:
        return ApiFailure(
            402, "insufficient_balance_error", "insufficient balance", INSUFFICIENT_BALANCE
        )
    return ApiFailure(status, "api_error", "insufficient balance", INSUFFICIENT_BALANCE)


STREAM_ERROR = {"type": "error", "error": {"type": "api_error", "message": "unknown error (1000)"}}

"""Errors the simulator answers with, in MiniMax's Anthropic-compatible body shape."""

from __future__ import annotations

import uuid
from typing import Any

# MiniMax's numeric codes (see ../shared/reference/minimax-facts.md).
INVALID_PARAMS = 2013
TOKEN_LIMIT = 1039
AUTH_FAILED = 1004
RATE_LIMITED = 1002
INSUFFICIENT_BALANCE = 1008
INTERNAL = 1000


class ApiFailure(Exception):
    """An error response: HTTP status, Anthropic error type and MiniMax code."""

    def __init__(self, status: int, error_type: str, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = f"{message} ({code})" if code is not None else message
        self.code = code

    def body(self) -> dict[str, Any]:
        """The JSON body MiniMax sends for this error."""
        return {
            "type": "error",
            "error": {"type": self.error_type, "message": self.message},
            "request_id": uuid.uuid4().hex,
        }


def invalid(message: str, code: int = INVALID_PARAMS) -> ApiFailure:
    """A 400 invalid_request_error."""
    return ApiFailure(400, "invalid_request_error", f"invalid params, {message}", code)


def not_found(path: str) -> ApiFailure:
    """A 404 for a route the API does not have."""
    return ApiFailure(404, "not_found_error", f"no route {path}")


def unauthorized(message: str) -> ApiFailure:
    """A 401 authentication_error."""
    return ApiFailure(401, "authentication_error", message, AUTH_FAILED)


def rate_limited(model: str, what: str) -> ApiFailure:
    """A 429 rate_limit_error."""
    return ApiFailure(
        429, "rate_limit_error", f"rate limit exceeded ({what}) for {model}", RATE_LIMITED
    )


def overloaded() -> ApiFailure:
    """A 529 overloaded_error (MiniMax sends no code with it)."""
    return ApiFailure(529, "overloaded_error", "the server cluster is under high load, retry later")


def server_error() -> ApiFailure:
    """A retryable 500 api_error."""
    return ApiFailure(500, "api_error", "unknown error", INTERNAL)


def insufficient_balance() -> ApiFailure:
    """MiniMax's insufficient balance: a 500, not a 402."""
    return ApiFailure(500, "api_error", "insufficient balance", INSUFFICIENT_BALANCE)

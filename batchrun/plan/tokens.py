"""A local estimate of a request's input tokens, for when count_tokens cannot be used.

It is deliberately generous (UTF-8 bytes / 3, plus a few tokens per message): an estimate feeds
the token-rate limiter and the cost estimate, where counting too few would overshoot a limit or
a budget. Requests priced or limited by an estimate are marked as such.
"""

from __future__ import annotations

from typing import Any

import orjson

BYTES_PER_TOKEN = 3
PER_MESSAGE = 4
COUNTED = ("system", "messages", "tools", "tool_choice")


def estimate_tokens(params: dict[str, Any]) -> int:
    """A generous estimate of the input tokens of a Messages request."""
    size = sum(len(orjson.dumps(params[key])) for key in COUNTED if key in params)
    return size // BYTES_PER_TOKEN + PER_MESSAGE * len(params.get("messages", ())) + 1

"""How a bad job line is told: the Invalid raised inside validation, hints, and the report."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from batchrun.jobs.spec import LineError

EXAMPLE_LINE = (
    '{"custom_id": "q1", "params": {"model": "MiniMax-M3", "max_tokens": 256, '
    '"messages": [{"role": "user", "content": "Hello"}]}}'
)
EXAMPLE_SHORTHAND = '{"id": "q1", "model": "MiniMax-M3", "prompt": "Hello"}'
HINT = (
    f"a job file is JSONL: one JSON object per line, such as {EXAMPLE_LINE} "
    f"or the shorthand {EXAMPLE_SHORTHAND}"
)


class Invalid(Exception):
    """Raised inside line validation; turned into a LineError at the line boundary."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def under(self, prefix: str) -> Invalid:
        """The same problem with its field placed under ``prefix`` (e.g. "params.")."""
        return Invalid(f"{prefix}{self.field}" if self.field else prefix.rstrip("."), self.message)


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or nothing."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if not close:
        lowered = {k.lower(): k for k in known}
        close = [lowered[name.lower()]] if name.lower() in lowered else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def format_line_errors(errors: Sequence[LineError], limit: int = 20) -> str:
    """Up to ``limit`` errors, one per line, then "... and N more"."""
    shown = [str(error) for error in errors[:limit]]
    if len(errors) > limit:
        shown.append(f"... and {len(errors) - limit} more")
    return "\n".join(shown)

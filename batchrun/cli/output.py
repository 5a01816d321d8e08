"""Terminal output helpers shared by the commands."""

from __future__ import annotations

import sys

from rich.console import Console

PIPE_WIDTH = 160  # when output goes to a file or pipe, do not squeeze tables into 80 columns


def console(stderr: bool = False) -> Console:
    """A rich console for stdout (or stderr), wide enough for tables when not on a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else PIPE_WIDTH, highlight=False)


def shown_url(url: str) -> str:
    """A database or API URL as it may be shown: without its password or key."""
    from batchrun.store import redact_url  # noqa: PLC0415 - loaded only when used

    return redact_url(url)

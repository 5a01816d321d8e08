"""The one place where errors become messages and exit codes."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from batchrun.cli.output import console
from batchrun.exceptions import BatchrunError
from batchrun.redaction import redact

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def run_guarded(app: typer.Typer, argv: list[str] | None) -> None:
    """Run the Typer app; a BatchrunError prints one clear line and exits with its code."""
    try:
        app(args=argv, standalone_mode=True)
    except BatchrunError as exc:
        message = escape(redact(str(exc)))  # what a user typed or a server said is not markup
        console(stderr=True).print(f"[bold red]error:[/] {message}", markup=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console(stderr=True).print("interrupted")
        sys.exit(EXIT_INTERRUPTED)

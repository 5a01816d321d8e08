"""The one place where errors become messages and exit codes."""

from __future__ import annotations

import sys

import typer

from batchrun.cli.output import console
from batchrun.exceptions import BatchrunError

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def run_guarded(app: typer.Typer, argv: list[str] | None) -> None:
    """Run the Typer app; a BatchrunError prints one clear line and exits with its code."""
    try:
        app(args=argv, standalone_mode=True)
    except BatchrunError as exc:
        console(stderr=True).print(f"[bold red]error:[/] {exc}", markup=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console(stderr=True).print("interrupted")
        sys.exit(EXIT_INTERRUPTED)

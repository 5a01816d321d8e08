"""The one place where errors become messages and exit codes."""

from __future__ import annotations

import signal
import sys
from types import FrameType

import typer
from rich.markup import escape

from batchrun import interrupts
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
        # soft_wrap: one line, however long (a terminal wraps it; a log or grep gets it whole)
        console(stderr=True).print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
        sys.exit(exc.exit_code)
    except BaseException as exc:
        if not is_interrupt(exc):
            raise
        console(stderr=True).print("interrupted")
        sys.exit(EXIT_INTERRUPTED)


def is_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` is Ctrl-C or SIGTERM (KeyboardInterrupt), alone or in the exception group
    of a task group it interrupted."""
    if isinstance(exc, BaseExceptionGroup):
        return any(is_interrupt(inner) for inner in exc.exceptions)
    if isinstance(exc, KeyboardInterrupt):
        interrupts.taken()
        return True
    return False


def interrupt_on_sigterm() -> None:
    """Make SIGTERM stop the command as Ctrl-C does (KeyboardInterrupt, then exit 130), so that
    every phase of a run (loading, estimate, question, sending) ends with its batch put right.

    Called again after a run's sending phase: its signal receiver leaves SIGTERM at the default,
    which kills the process without a word.
    """
    signal.signal(signal.SIGTERM, _raise_interrupt)
    sys.unraisablehook = _quiet_dropped_interrupt


def _quiet_dropped_interrupt(unraisable: sys.UnraisableHookArgs) -> None:
    """Say nothing of an interrupt Python dropped in a finalizer: batchrun.interrupts keeps it
    and raises it again where the command can stop, so its traceback would only alarm."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        return
    sys.__unraisablehook__(unraisable)


def _raise_interrupt(_signum: int, frame: FrameType | None) -> None:
    # Whatever Ctrl-C does now: inside an event loop, asyncio's handler cancels the main task and
    # raises KeyboardInterrupt once it has unwound; elsewhere Python's raises it at once.
    interrupts.requested()  # kept, should Python drop the exception (see batchrun.interrupts)
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):
        raise KeyboardInterrupt
    handler(signal.SIGINT, frame)

"""`batchrun dashboard`: start the Streamlit dashboard on this machine."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from batchrun.cli import options as opt
from batchrun.cli.errors import EXIT_INTERRUPTED, EXIT_OK
from batchrun.cli.output import shown_url
from batchrun.config import child_environment, read_environment
from batchrun.sim.lifeline import spawn

if TYPE_CHECKING:
    from types import FrameType

LOOPBACK = ("127.0.0.1", "localhost", "::1")
STOP_SECONDS = 10.0  # how long Streamlit may take to stop after SIGTERM before it is killed


def streamlit_command(host: str, port: int) -> list[str]:
    """The command line that serves the dashboard."""
    script = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    return [
        sys.executable, "-m", "streamlit", "run", str(script),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--global.developmentMode", "false",
        "--client.toolbarMode", "minimal",
    ]  # fmt: skip


def dashboard_command(
    db: opt.Db = None,
    port: Annotated[int, typer.Option("--port", help="Port to serve on.")] = 8501,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on. The default serves this machine only; another address "
            "shows your batches, prompts and spend to whoever can reach it.",
        ),
    ] = "127.0.0.1",
) -> None:
    """Open the dashboard: compare models, watch spend, read answers side by side."""
    from batchrun.store import database_url  # noqa: PLC0415 - loaded only when used

    url = database_url(db or read_environment().db)
    out = Console(stderr=True)
    if host not in LOOPBACK:
        out.print(f"[yellow]Listening on {host}: anyone who can reach it sees this database.[/]")
    out.print(
        f"Dashboard for {shown_url(url)} at [bold]http://{host}:{port}[/] (Ctrl-C stops it)",
        highlight=False,
    )
    env = child_environment(BATCHRUN_DB=url)
    code, stopped = _serve(streamlit_command(host, port), env)
    if stopped:
        out.print("Dashboard stopped.")
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_OK if code in (0, -signal.SIGINT) else code)


def _serve(command: list[str], env: dict[str, str]) -> tuple[int, bool]:
    """Run the server until it ends; SIGINT or SIGTERM stops it (a second one, or no end within
    STOP_SECONDS, kills it). It ends with this process even after SIGKILL (``lifeline``).
    Returns its exit code and whether a signal stopped it."""
    signals: list[float] = []  # when each stopping signal came
    with spawn(command, env=env) as server:

        def stop(_signum: int, _frame: FrameType | None) -> None:
            signals.append(time.monotonic())
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.pid, signal.SIGTERM if len(signals) == 1 else signal.SIGKILL)

        with _handling(stop):
            while True:
                try:
                    return server.wait(timeout=0.5), bool(signals)
                except subprocess.TimeoutExpired:
                    if signals and time.monotonic() - signals[0] > STOP_SECONDS:
                        server.kill()


@contextlib.contextmanager
def _handling(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM while the block runs."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

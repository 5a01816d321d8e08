"""`batchrun dashboard`: start the Streamlit dashboard on this machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from batchrun.cli import options as opt
from batchrun.cli.errors import EXIT_INTERRUPTED, EXIT_OK
from batchrun.cli.output import shown_url
from batchrun.config import child_environment, read_environment

LOOPBACK = ("127.0.0.1", "localhost", "::1")


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
    try:
        command = streamlit_command(host, port)
        code = subprocess.run(command, env=env, check=False).returncode  # noqa: S603 - our interpreter
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(EXIT_OK if code in (0, -2) else code)

"""A simulator spread over several processes on one port (``batchrun sim --processes N``).

One process costs 5-20 µs of CPU per SSE event written (README, "Full rate at real pace"), so
MiniMax's full published rate (~70,000 events a second, one per write) can take all of its core.
Here the parent keeps the port (bound with SO_REUSEPORT, never listening), starts N workers that
each listen on it with SO_REUSEPORT, so that the kernel spreads the connections over them, and
holds what they share (sim/shared.py): rate limits, quota and prompt cache, decided in one place.

Each worker is ``python -m batchrun.sim`` with the same settings, started through
``lifeline.spawn``: it ends with the parent however the parent ends, SIGKILL included. Worker
``i`` draws its faults from its own seeded sequence; replies depend on the request and the seed
only, so a request gets the same reply whichever worker serves it. With a timing log each worker
writes its own, and the parent joins them into the one file when every worker has stopped.
These and the parent's socket live in a folder of the system's temp directory, removed at the
stop; only a parent killed with SIGKILL leaves it behind (its workers still end).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from batchrun.exceptions import SimulatorError
from batchrun.sim.core import SimulatorCore
from batchrun.sim.host import READY_PREFIX, RunningSimulator, settings_to_args, stop_process
from batchrun.sim.lifeline import spawn
from batchrun.sim.settings import SimSettings
from batchrun.sim.shared import Coordinator
from batchrun.sim.timing import check_new, join_timing_logs

if TYPE_CHECKING:
    from batchrun.catalog import Catalog

START_TIMEOUT_S = 30.0  # how long a worker may take to say it listens


@contextlib.asynccontextmanager
async def serve_workers(
    settings: SimSettings, catalog: Catalog | None = None
) -> AsyncIterator[RunningSimulator]:
    """Serve with ``settings.processes`` workers until the block exits; this loop coordinates."""
    from batchrun.catalog import load_catalog  # noqa: PLC0415

    if catalog is not None:  # the workers load theirs by name: they would judge by another
        raise SimulatorError(
            "a simulator given its own catalog object runs as one process: leave processes at 1"
        )
    if settings.timing_log is not None:
        check_new(settings.timing_log)
    folder = Path(tempfile.mkdtemp(prefix="batchrun-sim-"))
    try:
        with _reserved_port(settings.host, settings.port) as port:
            coordinator = Coordinator(SimulatorCore(settings, load_catalog()))
            path = folder / "sock"  # short: a Unix socket's path has ~100 bytes at most
            server = await asyncio.start_unix_server(coordinator.connected, path)
            try:
                parts = [folder / f"timing-{i}.jsonl" for i in range(settings.processes)]
                async with _started_workers(settings, port, path, parts):
                    yield RunningSimulator(base_url=f"http://{settings.host}:{port}")
            finally:
                server.close()
            if settings.timing_log is not None:
                join_timing_logs(parts, settings.timing_log)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _reserved_port(host: str, port: int) -> Iterator[int]:
    """Hold ``host:port`` (0: a free one) for the workers: bound with SO_REUSEPORT but never
    listening, so no connection comes to this socket and no other program takes the port.

    The port is first bound without SO_REUSEPORT, which fails if anything holds it, even another
    simulator's workers: SO_REUSEPORT alone would let two simulators share one port unseen."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise SimulatorError(
            "this system cannot share a port between processes (no SO_REUSEPORT): "
            "run the simulator as one process"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    with sock:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
                port = int(probe.getsockname()[1])
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
        except OSError as exc:
            raise SimulatorError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        yield port


@contextlib.asynccontextmanager
async def _started_workers(
    settings: SimSettings, port: int, coordinator: Path, parts: list[Path]
) -> AsyncIterator[list[subprocess.Popen[Any]]]:
    """Start every worker, wait until each listens, and stop them all when the block exits."""
    with contextlib.ExitStack() as undo:
        processes = []
        for index, part in enumerate(parts):
            log = part if settings.timing_log is not None else None
            child = replace(settings, port=port, processes=1, timing_log=log)
            command = [
                sys.executable, "-m", "batchrun.sim", *settings_to_args(child),
                f"--worker-of={coordinator}", f"--worker-index={index}",
            ]  # fmt: skip
            errors = undo.enter_context(tempfile.TemporaryFile())
            process = undo.enter_context(
                spawn(command, stdout=subprocess.PIPE, stderr=errors, text=True)
            )
            processes.append((process, errors))
        undo.callback(_stop_all, [process for process, _ in processes])
        for process, errors in processes:
            try:  # a worker that neither listens nor ends must not hold the start-up forever
                await asyncio.wait_for(
                    asyncio.to_thread(_wait_ready, process, errors), START_TIMEOUT_S
                )
            except TimeoutError:
                raise SimulatorError(
                    f"a simulator worker process did not start within {START_TIMEOUT_S:.0f} s"
                ) from None
        yield [process for process, _ in processes]


def _stop_all(processes: list[subprocess.Popen[Any]]) -> None:
    """Ask every worker to stop at once, then wait for each (a worker that was not asked, as
    when one failed to start, stops when its lifeline's pipe closes)."""
    for process in processes:
        process.terminate()
    for process in processes:
        stop_process(process)


def _wait_ready(process: subprocess.Popen[Any], errors: IO[bytes]) -> None:
    """Wait for a worker's ready line; raise what it said if it stopped instead."""
    line = process.stdout.readline() if process.stdout else ""
    if line.startswith(READY_PREFIX):
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=START_TIMEOUT_S)
    errors.seek(0)
    said = errors.read().decode(errors="replace").strip() or line
    raise SimulatorError(f"a simulator worker process did not start: {said}")

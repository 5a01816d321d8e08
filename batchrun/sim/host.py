"""Ways to run the simulator: in the current event loop, in a background thread, or as a process.

Each picks a free loopback port when ``settings.port`` is 0 and gives back the base URL, which
the ``anthropic`` SDK takes as ``base_url`` (both ``http://host:port`` and
``http://host:port/anthropic`` work).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from batchrun.exceptions import SimulatorError
from batchrun.sim.lifeline import spawn
from batchrun.sim.loop import loop_factory
from batchrun.sim.settings import MB, SimSettings, format_faults, format_model_limits

if TYPE_CHECKING:
    from batchrun.catalog import Catalog
    from batchrun.sim.core import SimulatorCore
    from batchrun.sim.shared import Ledger
    from batchrun.sim.stats import SimStats

READY_PREFIX = "batchrun simulator listening on "


@dataclass(frozen=True, kw_only=True)
class RunningSimulator:
    """A simulator that is serving: where it listens, and its live counters (in-process only)."""

    base_url: str
    stats: SimStats | None = None
    pid: int | None = None  # the child process, when run as one

    def fetch_stats(self) -> dict[str, Any]:
        """GET /_sim/stats over HTTP (works for every way of running the simulator)."""
        return _http_json("GET", f"{self.base_url}/_sim/stats")

    def reset_stats(self) -> None:
        """POST /_sim/reset over HTTP."""
        _http_json("POST", f"{self.base_url}/_sim/reset")


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); ``reuse_port``: one of the
    listening sockets of a simulator's worker processes, among which the kernel spreads
    connections (SO_REUSEPORT)."""
    try:
        sock = socket.create_server((host, port), reuse_port=reuse_port, backlog=2048)
    except OSError as exc:
        raise SimulatorError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


@dataclass(frozen=True, kw_only=True)
class WorkerRole:
    """This process is worker ``index`` of a simulator of several; its parent listens on
    ``coordinator`` (a Unix socket, sim/shared.py)."""

    coordinator: Path
    index: int


@contextlib.asynccontextmanager
async def serve(
    settings: SimSettings, catalog: Catalog | None = None, *, worker: WorkerRole | None = None
) -> AsyncIterator[RunningSimulator]:
    """Serve the simulator in the running event loop until the block exits.

    With ``settings.processes`` above 1 this loop only coordinates, and worker processes serve
    (sim/workers.py)."""
    if settings.processes > 1:
        from batchrun.sim.workers import serve_workers  # noqa: PLC0415

        async with serve_workers(settings, catalog) as running:
            yield running
        return
    # The server is imported here: a process that only starts a child simulator never loads it.
    from batchrun.catalog import load_catalog  # noqa: PLC0415
    from batchrun.sim.core import SimulatorCore  # noqa: PLC0415
    from batchrun.sim.server import QuietServer, SimulatorApp  # noqa: PLC0415
    from batchrun.sim.timing import TimingLog  # noqa: PLC0415

    # Everything made from here on is undone however the block ends, a failed start included:
    # settings the server refuses must not leave the listening socket or the log's thread open.
    async with contextlib.AsyncExitStack() as undo:
        sock = bind_socket(settings.host, settings.port, reuse_port=worker is not None)
        undo.callback(sock.close)
        timing = None
        if settings.timing_log is not None:
            timing = undo.enter_context(TimingLog(settings.timing_log))
        core = SimulatorCore(
            settings, catalog or load_catalog(), worker=worker.index if worker else 0
        )
        ledger = await undo.enter_async_context(_remote_ledger(core, worker)) if worker else None
        app = SimulatorApp(core, ledger, timing=timing)
        server = QuietServer(_server_config(app))
        host, port = sock.getsockname()[:2]
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if task.done():
                    task.result()
                    raise SimulatorError("the simulator stopped while starting")
                await asyncio.sleep(0.005)
            yield RunningSimulator(base_url=f"http://{host}:{port}", stats=app.core.stats)
        finally:
            server.should_exit = True
            await task


@contextlib.asynccontextmanager
async def _remote_ledger(core: SimulatorCore, worker: WorkerRole) -> AsyncIterator[Ledger]:
    """The ledger of a worker process: a conversation with its parent while the block runs."""
    from batchrun.sim.shared import Peer, RemoteLedger, worker_handler  # noqa: PLC0415

    try:
        reader, writer = await asyncio.open_unix_connection(worker.coordinator)
    except OSError as exc:
        raise SimulatorError(f"cannot reach the simulator's parent process: {exc}") from exc
    peer = Peer(reader, writer, worker_handler(core))
    reading = asyncio.ensure_future(peer.run())
    try:
        yield RemoteLedger(peer, core)
    finally:
        writer.close()
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await reading


def _server_config(app: Any) -> Any:
    """uvicorn's settings for the simulator: httptools, no lifespan, no access log."""
    import uvicorn  # noqa: PLC0415

    return uvicorn.Config(
        app,
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        log_config=None,
        backlog=4096,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=1,
    )


@contextlib.contextmanager
def simulator_thread(
    settings: SimSettings, catalog: Catalog | None = None
) -> Iterator[RunningSimulator]:
    """Serve the simulator from a background thread with its own event loop."""
    started = threading.Event()
    stopping: asyncio.Event | None = None
    loop = loop_factory()()
    holder: list[RunningSimulator | BaseException] = []

    async def main() -> None:
        nonlocal stopping
        stopping = asyncio.Event()
        try:
            async with serve(settings, catalog) as running:
                holder.append(running)
                started.set()
                await stopping.wait()
        except Exception as exc:  # handed to the caller's thread below
            holder.append(exc)
            started.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait()
    if isinstance(holder[0], BaseException):
        thread.join()
        raise holder[0]
    try:
        yield holder[0]
    finally:
        if stopping is not None:
            loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=10)
        loop.close()


@contextlib.contextmanager
def simulator_process(settings: SimSettings, *extra_args: str) -> Iterator[RunningSimulator]:
    """Run ``batchrun sim`` as a child process (its own core) until the block exits; the child
    ends with this process, even if this one is killed with SIGKILL (``lifeline``)."""
    command = [sys.executable, "-m", "batchrun.sim", *settings_to_args(settings), *extra_args]
    with (
        tempfile.TemporaryFile() as errors,
        spawn(command, stdout=subprocess.PIPE, stderr=errors, text=True) as process,
    ):
        try:
            line = process.stdout.readline() if process.stdout else ""
            if not line.startswith(READY_PREFIX):
                process.wait(timeout=10)
                errors.seek(0)
                said = errors.read().decode(errors="replace").strip() or line
                raise SimulatorError(f"the simulator process did not start: {said}")
            yield RunningSimulator(base_url=line[len(READY_PREFIX) :].strip(), pid=process.pid)
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Ask a child simulator to stop (SIGTERM), and end it if it has not within 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def settings_to_args(settings: SimSettings) -> list[str]:
    """Command-line arguments of ``batchrun sim`` that reproduce these settings.

    Of the distribution assumptions only the medians of TTFT and of answer length are passed;
    a child process uses the defaults for the others.
    """
    args = [
        f"--host={settings.host}",
        f"--port={settings.port}",
        f"--time-scale={settings.time_scale}",
        f"--seed={settings.seed}",
        f"--limit-window={settings.limit_window}",
        f"--stall-seconds={settings.stall_seconds}",
        f"--ttft={settings.ttft_median}",
        f"--output-tokens={settings.output_median}",
        f"--tick={settings.tick}",
    ]
    if settings.api_key is not None:
        args.append(f"--api-key={settings.api_key}")
    if not settings.limits:
        args.append("--no-limits")
    if settings.retry_after is not None:
        args.append(f"--retry-after={settings.retry_after}")
    if settings.rpm:
        args.append(f"--rpm={format_model_limits(settings.rpm)}")
    if settings.tpm:
        args.append(f"--tpm={format_model_limits(settings.tpm)}")
    faults = format_faults(settings.faults, settings.model_faults)
    if faults or settings.profile is not None:  # given, even empty, it wins over the profile's
        args.append(f"--faults={faults}")
    if settings.count_tokens_models is not None:
        args.append(f"--count-tokens-models={','.join(sorted(settings.count_tokens_models))}")
    if settings.quirks:
        args.append(f"--quirks={','.join(sorted(settings.quirks))}")
    if settings.timing_log is not None:
        args.append(f"--timing-log={settings.timing_log}")
    return [*args, f"--processes={settings.processes}", *_field_args(settings)]


def _field_args(settings: SimSettings) -> list[str]:
    """The field-behaviour options (issue 15, "simfaults").

    Each is given even at its default: an option given on the command line wins over
    ``--profile``, so the child serves exactly these settings, not the profile's.
    """
    s = settings
    args = [
        f"--{'' if s.accept_x_api_key else 'no-'}accept-x-api-key",
        f"--x-api-key-status={s.x_api_key_status}",
        f"--{'' if s.accept_enabled_thinking else 'no-'}accept-enabled-thinking",
        f"--balance-status={s.balance_status}",
        f"--quota-window={s.quota_window!r}",
        f"--quota-reset-seconds={s.quota_reset_seconds!r}",
        f"--timeout-seconds={s.timeout_seconds!r}",
        f"--ping-interval={s.ping_interval!r}",
        f"--max-body-mb={s.max_body_bytes / MB!r}",
        f"--max-image-mb={s.max_image_bytes / MB!r}",
        f"--max-video-mb={s.max_video_bytes / MB!r}",
    ]
    if s.profile is not None:
        args.append(f"--profile={s.profile}")
    if s.context_windows:
        args.append(f"--context-window={format_model_limits(s.context_windows)}")
    if s.max_output_tokens:
        args.append(f"--max-output-tokens={format_model_limits(s.max_output_tokens)}")
    for option, value in (
        ("quota-requests", s.quota_requests),
        ("account-rpm", s.account_rpm),
        ("account-tpm", s.account_tpm),
    ):
        if value is not None:
            args.append(f"--{option}={value}")
    # what the simulator answers (issue 15, "simcontent")
    args += [
        f"--think-leak-rate={settings.think_leak_rate!r}",
        f"--empty-reply-rate={settings.empty_reply_rate!r}",
        f"--tool-call-rate={settings.tool_call_rate!r}",
        "--passive-cache" if settings.passive_cache else "--no-passive-cache",
        f"--cache-min-tokens={settings.cache_min_tokens}",
        f"--cache-mark-min-tokens={settings.cache_mark_min_tokens}",
        f"--cache-ttl={settings.cache_ttl!r}",
        "--passive-cache-writes" if settings.passive_cache_writes else "--no-passive-cache-writes",
        f"--passive-only-models={','.join(sorted(settings.passive_only_models))}",
        f"--cache-max-entries={settings.cache_max_entries}",
    ]
    return args


def _http_json(method: str, url: str) -> dict[str, Any]:
    import urllib.request  # noqa: PLC0415 - only for the stats endpoints

    request = urllib.request.Request(url, method=method)  # noqa: S310 - our own http:// URL
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        data: dict[str, Any] = orjson.loads(response.read())
    return data

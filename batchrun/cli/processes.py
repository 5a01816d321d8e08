"""``batchrun run --processes N``: one batch sent by N processes on this machine, one store.

One Python process cannot read ~62 streamed answers a second at one event per read (MiniMax's
published limits over every model; README, "Full rate at real pace"): its reads cost more than a
core. So the run starts N-1 child senders. Each claims requests the way any second sender of a
batch does (teams/sender.py ``send_claimed``: leases, no request sent twice, the shared budget),
and each paces itself at 1/N of every model's limits, so together they keep the account's pace
with no shared pacer. The children end with the run, even one killed with SIGKILL (they are
started by sim/lifeline.py). They show nothing themselves: each writes its counters to the run
twice a second (a JSON line on its standard output), and the run's one display adds them to its
own; its summary, read from the store, covers every process's results. A soft budget threshold
a child crosses travels in the same line: the run shows it and logs it once, however many
children cross it (the children log none; the run's own crossings are logged with theirs).

A child reads what to send from its standard input (a JSON object, with the API key: never on
its command line, where any user of the machine could read it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from batchrun.api.endpoint import Deadlines, Endpoint
from batchrun.budgets import PeriodBudget
from batchrun.run.budget import crossings
from batchrun.run.launch import LimitOptions, split_limits
from batchrun.run.progress import BudgetWarning, ModelProgress, RunProgress
from batchrun.run.retry import RetryPolicy
from batchrun.run.settings import SendSettings
from batchrun.sim.lifeline import spawn

if TYPE_CHECKING:
    from batchrun.catalog import Catalog
    from batchrun.run.report import RunReport
    from batchrun.run.space import SpaceGuard
    from batchrun.store import BatchInfo, Store

log = logging.getLogger(__name__)

CHILD_WAIT_S = 60.0  # after the run's own sender is done, how long its children may take
READ_WAIT_S = 5.0  # then, how long the reading of a child's last lines may take
RATE_WINDOW = 10.0  # seconds ModelProgress.rate counts over (its default)
# The counters of a model that add up across processes.
SUMMED = (
    "succeeded", "errored", "invalid", "retries", "throttled",
    "input_tokens", "output_tokens", "spent_nanos", "unpriced",
)  # fmt: skip


def send_in_processes(
    processes: int,
    *,
    store: Store,
    catalog: Catalog,
    batch: BatchInfo,
    endpoint: Endpoint,
    settings: SendSettings,
    display: Callable[[RunProgress], object] | None,
    space: SpaceGuard,
    owner: str,
    catalog_file: Path | None = None,
) -> tuple[RunReport, RunProgress]:
    """Send the batch from this process and ``processes - 1`` children (1: this one alone)."""
    from batchrun.sim.loop import run_fast  # noqa: PLC0415 - only when sending
    from batchrun.teams.sender import send_claimed  # noqa: PLC0415

    share = settings
    if processes > 1:
        limits = split_limits(catalog, store.batch_models(batch.id), settings.limits, processes)
        share = dataclasses.replace(settings, limits=limits)
    spec = {
        "db": store.url,
        "catalog": str(catalog_file) if catalog_file else None,
        "batch": batch.id,
        "endpoint": dataclasses.asdict(endpoint),
        "settings": settings_spec(share),
    }
    counts = ChildCounts()
    shown = display if processes == 1 else counts.shown_by(display)
    quiet = _Quiet() if processes > 1 else contextlib.nullcontext()
    with quiet, _children(processes - 1, spec) as children:
        readers = [counts.follow(child) for child in children]
        sending = send_claimed(
            store=store,
            catalog=catalog,
            batch=batch,
            endpoint=endpoint,
            settings=share,
            display=shown,
            space=space,
            owner=owner,
        )
        report, progress = run_fast(sending)
        _end(children, interrupted=report.interrupted)
        for reader in readers:  # a child's last lines (its final report) are read before the sums
            reader.join(timeout=READ_WAIT_S)
    if processes > 1:  # the children's crossings too, so that the summary does not repeat them
        progress.budget_warnings[:] = counts.warnings(progress)
    return report, progress


class _Quiet(contextlib.AbstractContextManager[None]):
    """While several processes send: the run's own threshold crossings are logged with the
    children's (ChildCounts.warnings), once, not by its spend watch as well."""

    def __enter__(self) -> None:
        self._was = crossings.disabled
        crossings.disabled = True

    def __exit__(self, *exc: object) -> None:
        crossings.disabled = self._was


def settings_spec(settings: SendSettings) -> dict[str, Any]:
    """The settings as JSON values, for a child sender's standard input."""
    return dataclasses.asdict(settings)


def settings_from(spec: dict[str, Any]) -> SendSettings:
    """The settings a child sender was handed (``settings_spec``'s output)."""
    return SendSettings(
        limits=LimitOptions(**spec["limits"]),
        retry=RetryPolicy(**spec["retry"]),
        deadlines=Deadlines(**spec["deadlines"]),
        precheck=spec["precheck"],
        max_cost_nanos=spec["max_cost_nanos"],
        grace_seconds=spec["grace_seconds"],
    )


@contextlib.contextmanager
def _children(count: int, spec: dict[str, Any]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` child senders, each handed ``spec``; they end with this block at the latest."""
    command = [sys.executable, "-m", __name__]
    with contextlib.ExitStack() as stack:
        started = []
        for _ in range(count):  # their errors go where the run's own go
            child = stack.enter_context(
                spawn(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            )
            _hand(child.stdin, spec)
            started.append(child)
        yield started


def _hand(pipe: IO[bytes] | None, spec: dict[str, Any]) -> None:
    assert pipe is not None  # started with stdin=PIPE
    with pipe:
        pipe.write(orjson.dumps(spec))


def _end(children: list[subprocess.Popen[bytes]], *, interrupted: bool) -> None:
    """Wait for the children to finish; an interrupted run stops them first (as Ctrl-C does)."""
    for child in children:
        if interrupted and child.poll() is None:
            child.send_signal(signal.SIGINT)
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):  # the block's end then stops it
            child.wait(timeout=CHILD_WAIT_S)


class ChildCounts:
    """The latest counters each child sender reported, read from its output by a thread, and
    the budget warnings of every process (each budget once, logged when first seen)."""

    def __init__(self) -> None:
        self.latest: dict[int, dict[str, Any]] = {}
        self._warned: dict[PeriodBudget, BudgetWarning] = {}

    def follow(self, child: subprocess.Popen[bytes]) -> threading.Thread:
        """Keep the child's latest report, from a thread that reads its output to the end; the
        thread."""
        thread = threading.Thread(target=self._read, args=(child,), daemon=True)
        thread.start()
        return thread

    def _read(self, child: subprocess.Popen[bytes]) -> None:
        assert child.stdout is not None  # started with stdout=PIPE
        for line in child.stdout:
            with contextlib.suppress(orjson.JSONDecodeError):
                self.latest[child.pid] = orjson.loads(line)

    def shown_by(
        self, display: Callable[[RunProgress], object] | None
    ) -> Callable[[RunProgress], object]:
        """A display callback that shows this run's counters with the children's added (and,
        without a display, still logs every process's budget warnings)."""
        if display is None:
            return self.warnings
        return lambda progress: display(self.combined(progress))

    def warnings(self, progress: RunProgress) -> list[BudgetWarning]:
        """The budget warnings of this run and its children, each budget once, in the order
        they were first seen; a new one is logged."""
        reports = list(self.latest.values())
        theirs = [_warning(w) for report in reports for w in report.get("warnings", [])]
        for warning in [*progress.budget_warnings, *theirs]:
            if warning.budget not in self._warned:
                self._warned[warning.budget] = warning
                log.warning("%s", warning.text)
        return list(self._warned.values())

    def combined(self, progress: RunProgress) -> RunProgress:
        """A copy of ``progress`` with every child's counters added to each model's."""
        warnings = self.warnings(progress)
        reports = [report["models"] for report in self.latest.values()]
        now = time.monotonic()
        models = {}
        for name, mine in progress.models.items():
            theirs = [report[name] for report in reports if name in report]
            sums = {k: getattr(mine, k) + sum(t.get(k, 0) for t in theirs) for k in SUMMED}
            model = ModelProgress(
                model=name, total=mine.total, stopped=mine.stopped,
                quota_reset=mine.quota_reset, quota_until=mine.quota_until, **sums,
            )  # fmt: skip
            recent = _recent(mine, now) + sum(t.get("recent", 0) for t in theirs)
            for _ in range(recent):  # the rate over the window: every process's finishes
                model.finished(now - 1.0)
            models[name] = model
        return RunProgress(models=models, started=progress.started, budget_warnings=warnings)


def _warning(spec: dict[str, Any]) -> BudgetWarning:
    """A budget warning from a child's report line (``report_line``)."""
    return BudgetWarning(budget=PeriodBudget(**spec["budget"]), text=spec["text"])


def _recent(model: ModelProgress, now: float) -> int:
    """Requests the model finished within the rate's window."""
    return round(model.rate(RATE_WINDOW, now) * RATE_WINDOW)


def report_line(progress: RunProgress) -> bytes:
    """A child's counters and budget warnings, as the JSON line it writes to the run that
    started it."""
    now = time.monotonic()
    counts = {
        name: {**{k: getattr(m, k) for k in SUMMED}, "recent": _recent(m, now)}
        for name, m in progress.models.items()
    }
    warnings = [dataclasses.asdict(w) for w in progress.budget_warnings]
    return orjson.dumps({"models": counts, "warnings": warnings}) + b"\n"


def report_counts(progress: RunProgress) -> None:
    """A child's display: its counters, to the run that started it."""
    with contextlib.suppress(OSError):  # the run has gone: it reads no more
        sys.stdout.buffer.write(report_line(progress))
        sys.stdout.buffer.flush()


def child_main() -> None:
    """A child sender: read the spec from standard input, send what it can claim, exit."""
    from batchrun.catalog import load_catalog  # noqa: PLC0415 - a child loads only this
    from batchrun.cli.startup import load_sender  # noqa: PLC0415
    from batchrun.sim.loop import run_fast  # noqa: PLC0415
    from batchrun.store import Store  # noqa: PLC0415

    load_sender()
    from batchrun.teams.sender import send_claimed  # noqa: PLC0415

    crossings.disabled = True  # the run that started this child says them, once (report_line)

    spec = orjson.loads(sys.stdin.buffer.read())
    store = Store(spec["db"])
    catalog = load_catalog(spec["catalog"] and Path(spec["catalog"]))
    report, progress = run_fast(
        send_claimed(
            store=store,
            catalog=catalog,
            batch=store.find_batch(spec["batch"]),
            endpoint=Endpoint(**spec["endpoint"]),
            settings=settings_from(spec["settings"]),
            display=report_counts,
        )
    )
    report_counts(progress)  # the last counts and crossings, which a twice-a-second one may miss
    store.close()
    if report.unsaved or report.store_error:  # the run's own process saves nothing for it
        print(f"child sender: {report.store_error or 'answers it could not save'}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    child_main()

"""What every task of one run shares: its report, its progress, and whether dispatch stops
(for the whole run, or for one model: stopped, or paused until its plan's quota renews)."""

from __future__ import annotations

import logging

import anyio

from batchrun.run.progress import RunProgress, utc_clock
from batchrun.run.report import RunReport

log = logging.getLogger(__name__)


class RunControl:
    """Stopping the whole run or one model, as the feeders, workers and writer see it."""

    def __init__(self, models: list[str], progress: RunProgress) -> None:
        self.models = models
        self.progress = progress
        self.report = RunReport()
        self.stopping = anyio.Event()

    def stop(self, *, interrupted: bool) -> None:
        """Stop dispatching; calls in flight get the grace period, then are cancelled."""
        if self.stopping.is_set():
            return
        self.report.interrupted = self.report.interrupted or interrupted
        self.stopping.set()

    def halted(self, model: str) -> bool:
        """Whether nothing more may be sent to ``model``."""
        return self.stopping.is_set() or model in self.report.stopped_models

    def stop_model(self, model: str, reason: str) -> None:
        """Send nothing more to ``model``; its requests stay pending."""
        if model in self.report.stopped_models:
            return
        self.report.stopped_models[model] = reason
        self.progress.of(model).stopped = reason
        log.warning("stopped sending to %s: %s", model, reason)

    async def sleep_unless_stopping(self, seconds: float) -> None:
        """Wait ``seconds``, less when the run stops meanwhile."""
        if seconds <= 0:
            return
        with anyio.move_on_after(seconds):
            await self.stopping.wait()

    def pause_for_quota(self, model: str, until: float) -> None:
        """Send nothing to ``model`` before ``until`` (UTC epoch seconds): its quota renews then."""
        progress = self.progress.of(model)
        waiting = progress.quota_left() > 0
        progress.pause_for_quota(until)
        if not waiting:
            log.warning(
                "%s: the plan's quota is used up; waiting until %s", model, utc_clock(until)
            )

    async def wait_for_quota(self, model: str) -> None:
        """Return once ``model``'s quota pause has passed, or the run stops."""
        progress = self.progress.of(model)
        # A loop: the pause may be lengthened while this waits.
        while (left := progress.quota_left()) > 0 and not self.stopping.is_set():
            await self.sleep_unless_stopping(left)

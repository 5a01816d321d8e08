"""What every task of one run shares: its report, its progress, and whether dispatch stops."""

from __future__ import annotations

import logging

import anyio

from batchrun.run.progress import RunProgress
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

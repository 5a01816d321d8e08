"""Live counters of a run, per model: what the progress display and the end summary read."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from batchrun.budgets import PeriodBudget


@dataclass
class ModelProgress:
    """Counters of one model in this run."""

    model: str
    total: int = 0  # pending when the run started
    succeeded: int = 0
    errored: int = 0
    invalid: int = 0
    retries: int = 0
    throttled: int = 0  # 429s and 529s seen
    input_tokens: int = 0
    output_tokens: int = 0
    spent_nanos: int = 0
    unpriced: int = 0
    stopped: str | None = None  # why dispatch to this model stopped
    quota_reset: float | None = None  # stopped on its plan's quota (2056): when it renews
    quota_until: float | None = None  # dispatch paused until then for the quota (epoch seconds)
    _quota_since: float | None = None  # when the current quota pause began
    _quota_waited: float = 0.0  # seconds of quota pauses that have ended
    _finished_at: deque[float] = field(default_factory=lambda: deque(maxlen=2000))

    @property
    def done(self) -> int:
        """Requests finished in this run, whatever their outcome."""
        return self.succeeded + self.errored + self.invalid

    @property
    def remaining(self) -> int:
        """Requests not finished yet."""
        return max(0, self.total - self.done)

    def finished(self, now: float | None = None) -> None:
        """Count one finished request for the rate."""
        self._finished_at.append(time.monotonic() if now is None else now)

    def rate(self, window: float = 10.0, now: float | None = None) -> float:
        """Requests finished per second over the last ``window`` seconds."""
        now = time.monotonic() if now is None else now
        recent = sum(1 for t in self._finished_at if t > now - window)
        return recent / window

    def pause_for_quota(self, until: float, now: float | None = None) -> None:
        """Pause this model until ``until`` (UTC epoch seconds) for its plan's quota."""
        now = time.time() if now is None else now
        if self.quota_until is not None and self.quota_until >= now:
            self.quota_until = max(self.quota_until, until)  # the same pause, perhaps longer
            return
        self._close_quota_pause()
        self._quota_since, self.quota_until = now, until

    def quota_left(self, now: float | None = None) -> float:
        """Seconds this model still waits for its quota; 0 when it is not waiting."""
        if self.quota_until is None:
            return 0.0
        return max(0.0, self.quota_until - (time.time() if now is None else now))

    def quota_waited(self, now: float | None = None) -> float:
        """Seconds this model has waited for its plan's quota in this run."""
        if self._quota_since is None or self.quota_until is None:
            return self._quota_waited
        end = min(self.quota_until, time.time() if now is None else now)
        return self._quota_waited + max(0.0, end - self._quota_since)

    def quota_note(self, now: float | None = None) -> str | None:
        """'waiting for the plan's quota until 15:00:00 UTC, 4m12s' while it waits, else None."""
        left = self.quota_left(now)
        if not left or self.quota_until is None:
            return None
        return f"waiting for the plan's quota until {utc_clock(self.quota_until)}, {eta_text(left)}"

    def _close_quota_pause(self) -> None:
        if self._quota_since is not None and self.quota_until is not None:
            self._quota_waited += max(0.0, self.quota_until - self._quota_since)
        self._quota_since = None

    def eta(self) -> float | None:
        """Seconds until the remaining requests are done at the current rate."""
        rate = self.rate()
        if not self.remaining:
            return 0.0
        return self.remaining / rate if rate > 0 else None


@dataclass(frozen=True, kw_only=True, slots=True)
class BudgetWarning:
    """A budget whose soft threshold this run crossed: which one (so that it is said once, by
    what it is rather than by its words), and what to tell people."""

    budget: PeriodBudget
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass
class RunProgress:
    """Counters of every model in this run."""

    models: dict[str, ModelProgress]
    started: float = field(default_factory=time.monotonic)
    budget_warnings: list[BudgetWarning] = field(default_factory=list)  # thresholds crossed

    def of(self, model: str) -> ModelProgress:
        """The counters of ``model``."""
        return self.models[model]

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started


def eta_text(seconds: float | None) -> str:
    """Seconds as a short duration, '?' when unknown."""
    if seconds is None or math.isinf(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def utc_clock(epoch: float) -> str:
    """An instant as its UTC time of day: '15:00:00 UTC'."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S UTC")


def utc_minute(epoch: float) -> str:
    """An instant as its UTC date and minute, rounded up: '2026-05-15 15:00 UTC'."""
    return datetime.fromtimestamp(math.ceil(epoch / 60) * 60, UTC).strftime("%Y-%m-%d %H:%M UTC")

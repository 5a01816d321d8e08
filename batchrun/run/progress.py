"""Live counters of a run, per model: what the progress display and the end summary read."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field


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

    def eta(self) -> float | None:
        """Seconds until the remaining requests are done at the current rate."""
        rate = self.rate()
        if not self.remaining:
            return 0.0
        return self.remaining / rate if rate > 0 else None


@dataclass
class RunProgress:
    """Counters of every model in this run."""

    models: dict[str, ModelProgress]
    started: float = field(default_factory=time.monotonic)

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

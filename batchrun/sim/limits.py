"""Per-model request and token rate limits over a sliding window, as the simulator enforces them.

MiniMax publishes limits per minute but not how it measures them. The simulator uses a sliding
window (60 s by default, ``limit_window`` to shorten it for tests): a request is refused with 429
when the requests, or the input and output tokens, admitted in the last window would pass the
limit scaled to that window. Refused requests do not count.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class SlidingWindow:
    """Amounts admitted over the last ``window`` seconds, against a ``limit`` per window."""

    limit: float
    window: float
    clock: Callable[[], float] = time.monotonic
    _events: deque[tuple[float, float]] = field(default_factory=deque)
    _total: float = 0.0

    def used(self) -> float:
        """The amount admitted during the last window."""
        cutoff = self.clock() - self.window
        while self._events and self._events[0][0] <= cutoff:
            self._total -= self._events.popleft()[1]
        return self._total

    def would_exceed(self, amount: float) -> bool:
        """Whether admitting ``amount`` now would pass the limit."""
        return self.used() + amount > self.limit

    def add(self, amount: float) -> None:
        """Record ``amount`` as admitted now."""
        self._events.append((self.clock(), amount))
        self._total += amount


@dataclass
class ModelLimits:
    """The RPM and TPM windows of one model; either may be None (no limit)."""

    requests: SlidingWindow | None
    tokens: SlidingWindow | None

    def refusal(self, input_tokens: int) -> str | None:
        """Why a request with ``input_tokens`` would be refused now, or None to admit it."""
        if self.requests is not None and self.requests.would_exceed(1):
            return "requests per minute"
        if self.tokens is not None and self.tokens.would_exceed(input_tokens):
            return "tokens per minute"
        return None

    def admit(self, input_tokens: int) -> None:
        """Count an admitted request and its input tokens."""
        if self.requests is not None:
            self.requests.add(1)
        if self.tokens is not None:
            self.tokens.add(input_tokens)

    def add_output(self, output_tokens: int) -> None:
        """Count a reply's output tokens once they are generated."""
        if self.tokens is not None:
            self.tokens.add(output_tokens)


def model_limits(rpm: int | None, tpm: int | None, window: float) -> ModelLimits:
    """Limits for one model, from per-minute figures scaled to ``window`` seconds."""
    return ModelLimits(
        requests=SlidingWindow(per_window(rpm, window), window) if rpm else None,
        tokens=SlidingWindow(per_window(tpm, window), window) if tpm else None,
    )


def per_window(per_minute: int, window: float) -> float:
    """A per-minute limit scaled to ``window`` seconds, free of float noise (600 x 0.7 s = 7)."""
    return round(per_minute * window / 60.0, 9)


@dataclass
class Quota:
    """A Token Plan's quota: ``limit`` requests per fixed window of ``window`` wall seconds.

    Windows follow each other from the simulator's start; a used-up quota refuses every request
    until the current window ends (MiniMax's 2056 answer names that instant).
    """

    limit: int
    window: float
    clock: Callable[[], float] = time.time
    _start: float = 0.0
    _index: int = 0  # which window the count belongs to
    _used: int = 0

    def __post_init__(self) -> None:
        self._start = self.clock()

    def used(self) -> int:
        """Requests counted in the current window (a new window starts from 0)."""
        index = int((self.clock() - self._start) // self.window)
        if index != self._index:
            self._index, self._used = index, 0
        return self._used

    def window_end(self) -> float:
        """The wall-clock instant (Unix seconds) at which the current window ends."""
        return self._start + (int((self.clock() - self._start) // self.window) + 1) * self.window

    def use(self) -> None:
        """Count one request against the current window."""
        self._used = self.used() + 1

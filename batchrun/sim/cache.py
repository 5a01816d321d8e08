"""The simulator's prompt cache: passive prefix caching as MiniMax describes it, and explicit marks.

MiniMax caches on its own (row 7 of the field evidence, strong): a prompt of at least
``cache_min_tokens`` input tokens is kept by prefix, in the order tools, system, messages, and a
later prompt of the same model that starts with a kept prefix reads the longest one. Prefixes are
matched at item boundaries (a tool, a system block, a message's role or one of its blocks).
Explicit ``cache_control`` marks take effect only from ``cache_mark_min_tokens`` and report what
they write as cache creation; passive writes report none unless ``passive_cache_writes`` (an
assumption: MiniMax's page does not say how they are billed). Models in ``passive_only_models``
(MiniMax-M3, row 7, single) ignore marks and never report cache creation.

Entries live ``cache_ttl`` seconds of simulated time (wall time divided by ``time_scale``; at
time scale 0 they never expire) and are refreshed whenever a request reads or writes them. Each
model keeps at most ``cache_max_entries`` entries, the least recently used going first, so a
run of millions of requests holds bounded memory. The cache is per model; a simulator of
several processes keeps one, in its parent (sim/shared.py).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from batchrun.sim.settings import SimSettings
from batchrun.sim.tokens import PromptPrefix, prompt_prefixes


class PromptCache:
    """Prompt prefixes each model has seen recently, with when each expires (simulated time)."""

    def __init__(self, settings: SimSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._started = clock()
        self._models: dict[str, OrderedDict[bytes, float]] = {}

    def usage(self, model: str, body: dict[str, Any], input_tokens: int) -> tuple[int, int]:
        """(tokens written, tokens read) of this request; its prefixes are kept for later ones.

        ``input_tokens``: the prompt's count (validation has it), so that a prompt too short to
        cache, the common case, is not walked a second time."""
        return self.usage_of(model, self.prefixes(model, body, input_tokens))

    def prefixes(self, model: str, body: dict[str, Any], input_tokens: int) -> list[PromptPrefix]:
        """The prefixes of this prompt the cache would look at (none for a short prompt).

        Apart from ``usage_of`` so that a worker process can walk its prompts itself and send
        only the digests to the process that holds the cache (sim/shared.py)."""
        threshold = self._threshold(model)
        if input_tokens < threshold:  # also when nothing is cached at all (an infinite threshold)
            return []
        return prompt_prefixes(body, math.ceil(threshold))

    def usage_of(self, model: str, prefixes: list[PromptPrefix]) -> tuple[int, int]:
        """(tokens written, tokens read) for a prompt with these prefixes; they are kept."""
        if not prefixes:
            return 0, 0
        marks = model not in self._settings.passive_only_models
        passive_min, mark_min = self._minimums(model)
        now = self._now()
        entries = self._models.setdefault(model, OrderedDict())
        hit = self._longest_hit(entries, prefixes, now)
        read = hit.tokens if hit is not None else 0
        passive = [p for p in prefixes if p.tokens >= passive_min]
        mark = next((p for p in reversed(prefixes) if p.marked), None) if marks else None
        if mark is not None and mark.tokens < mark_min:
            mark = None  # below the threshold a mark does nothing (MiniMax: about 600 tokens)
        self._keep(entries, [p for p in (*passive, mark, hit) if p is not None], now)
        return self._written(model, read, passive, mark), read

    def _threshold(self, model: str) -> float:
        """The fewest tokens a prompt of ``model`` needs for the cache to look at it."""
        return min(self._minimums(model))

    def _minimums(self, model: str) -> tuple[float, float]:
        """(fewest tokens of a passive write, of a mark's write) for ``model``; inf: never."""
        settings = self._settings
        marks = model not in settings.passive_only_models
        passive_min = settings.cache_min_tokens if settings.passive_cache else math.inf
        return passive_min, settings.cache_mark_min_tokens if marks else math.inf

    def _written(
        self, model: str, read: int, passive: list[PromptPrefix], mark: PromptPrefix | None
    ) -> int:
        """Tokens reported as cache creation: what a mark (or, by setting, a passive write) adds
        beyond what was read."""
        if model in self._settings.passive_only_models:
            return 0
        longest = mark.tokens if mark is not None else 0
        if passive and self._settings.passive_cache_writes:
            longest = max(longest, passive[-1].tokens)
        return max(0, longest - read)

    def _longest_hit(
        self, entries: OrderedDict[bytes, float], prefixes: list[PromptPrefix], now: float
    ) -> PromptPrefix | None:
        for prefix in reversed(prefixes):
            expires = entries.get(prefix.digest)
            if expires is None:
                continue
            if expires > now:
                return prefix
            del entries[prefix.digest]  # expired: gone for good
        return None

    def _keep(
        self, entries: OrderedDict[bytes, float], prefixes: list[PromptPrefix], now: float
    ) -> None:
        """Write (or refresh) these prefixes, evicting the least recently used past the cap."""
        expires = now + self._settings.cache_ttl
        for prefix in prefixes:
            entries[prefix.digest] = expires
            entries.move_to_end(prefix.digest)
        while len(entries) > self._settings.cache_max_entries:
            entries.popitem(last=False)

    def _now(self) -> float:
        """Seconds of simulated time since the cache started; always 0 at time scale 0."""
        scale = self._settings.time_scale
        return (self._clock() - self._started) / scale if scale else 0.0

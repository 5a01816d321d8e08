"""The pre-check: each request's input tokens before it is generated.

count_tokens where the API answers (MiniMax documents it for M3; other models may be refused),
else a local estimate, marked as such. Used by the runner and by ``batchrun estimate``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from batchrun.retry import CallFailure
from batchrun.tokens import estimate_tokens

if TYPE_CHECKING:
    from batchrun.client import ApiClient


class TokenCounter:
    """Input tokens per request: count_tokens where the API answers, else a local estimate.

    Counts are cached by (model, hash of what counts), and count_tokens calls run under their
    own concurrency limit so that a large batch's pre-check never floods the API.
    """

    def __init__(self, client: ApiClient, enabled: bool = True, concurrency: int = 16) -> None:
        self._client = client
        self._enabled = enabled
        self._slots = anyio.CapacityLimiter(concurrency)
        self._cache: dict[tuple[str, str], int] = {}
        self._refused: set[str] = set()
        self._counting: dict[tuple[str, str], anyio.Event] = {}

    async def input_tokens(
        self,
        model: str,
        params: dict[str, Any],
        content_hash: str,
        known: tuple[int | None, bool | None] = (None, None),
    ) -> tuple[int, bool]:
        """(input tokens, whether they are a local estimate) for one request.

        ``known`` is a count stored earlier (by ``estimate`` or an interrupted run).
        """
        if known[0] is not None and known[1] is not None:
            return known[0], known[1]
        if not self._enabled or model in self._refused:
            return estimate_tokens(params), True
        key = (model, content_hash)
        while key in self._counting:  # the same content is being counted: wait for it
            await self._counting[key].wait()
        cached = self._cache.get(key)
        if cached is not None:
            return cached, False
        self._counting[key] = anyio.Event()
        try:
            counted = await self._count(model, params)
        finally:
            self._counting.pop(key).set()
        if counted is None:
            return estimate_tokens(params), True
        self._cache[key] = counted
        return counted, False

    async def _count(self, model: str, params: dict[str, Any]) -> int | None:
        async with self._slots:
            try:
                counted = await self._client.count_tokens(model, params)
            except CallFailure:
                return None  # counting failed this time: estimate, and let the call decide
        if counted is None:
            self._refused.add(model)
        return counted

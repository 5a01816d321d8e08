"""The pre-check: each request's input tokens before it is generated.

count_tokens where the API answers (MiniMax documents it for M3; other models may be refused),
else a local estimate, marked as such. Used by the runner and by ``batchrun estimate``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from batchrun.api.failures import CallFailure, FailureKind
from batchrun.plan.tokens import estimate_tokens

if TYPE_CHECKING:
    from batchrun.api.client import ApiClient

# A 400/422 from count_tokens is about one request (a malformed line), not the model: only this
# many in a row, with no count in between, take the model for one that refuses counting.
REJECTIONS_BEFORE_REFUSED = 3


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
        self._rejections: dict[str, int] = {}
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
            except CallFailure as failure:
                if failure.kind is FailureKind.BAD_REQUEST:
                    self._rejected(model)
                return None  # counting failed this time: estimate, and let the call decide
        if counted is None:  # 404 / 405 / 501: the endpoint does not count this model
            self._refused.add(model)
        else:
            self._rejections[model] = 0
        return counted

    def _rejected(self, model: str) -> None:
        self._rejections[model] = self._rejections.get(model, 0) + 1
        if self._rejections[model] >= REJECTIONS_BEFORE_REFUSED:
            self._refused.add(model)

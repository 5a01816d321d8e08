"""What one successful call leaves: its result row (timings, usage, cost, text) and its counts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from batchrun.api.client import CallResult
from batchrun.api.stream import split_answer
from batchrun.catalog import ModelInfo
from batchrun.pricing import Usage, day_of, request_cost
from batchrun.run.progress import ModelProgress


def result_row(
    info: ModelInfo,
    call: CallResult,
    params: dict[str, Any],
    *,
    priority_multiplier: Decimal,
    simulated: bool,
    expected_cache_tokens: int | None = None,
) -> dict[str, Any]:
    """The stored result of a successful call, priced on the day it was sent.

    ``text`` is the visible answer (reasoning leaked as ``<think>...</think>`` goes to
    ``thinking``); ``message`` keeps the content as received; ``flags`` says what was odd.
    ``expected_cache_tokens``: the prompt tokens expected to be read from MiniMax's cache when
    the call was sent (None: not known); the cost comes with its uncached and cache-write
    figures."""
    message = call.message
    usage = _usage(message.get("usage") or {})
    cost = request_cost(info, usage, day_of(call.sent_at), params, priority_multiplier)
    answer = split_answer(message)
    return {
        "sent_at": call.sent_at,
        **_timings(call),
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_creation_tokens": usage.cache_creation_tokens,
        "stop_reason": message.get("stop_reason"),
        "text": answer.text,
        "thinking": answer.thinking,
        "flags": answer.flag_text,
        "message": message,
        "cost_nanos": cost.nanos if cost else None,
        "price_date": cost.price_date.isoformat() if cost else None,
        "uncached_cost_nanos": cost.uncached_nanos if cost else None,
        "cache_write_cost_nanos": cost.cache_write_nanos if cost else None,
        "expected_cache_tokens": expected_cache_tokens,
        "simulated": simulated,
    }


def _usage(raw: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0),
        output_tokens=int(raw.get("output_tokens") or 0),
        cache_read_tokens=int(raw.get("cache_read_input_tokens") or 0),
        cache_creation_tokens=int(raw.get("cache_creation_input_tokens") or 0),
    )


def _timings(call: CallResult) -> dict[str, float | None]:
    timings = call.timings
    return {
        "first_event_s": timings.first_event,
        "first_token_s": timings.first_token,
        "first_thinking_s": timings.first_thinking,
        "first_text_s": timings.first_text,
        "last_token_s": timings.last_token,
        "done_s": timings.done if timings.done is not None else 0.0,
    }


def count_success(progress: ModelProgress, result: dict[str, Any]) -> None:
    """Add a successful request's tokens and cost to its model's progress."""
    progress.succeeded += 1
    progress.input_tokens += result["input_tokens"]
    progress.output_tokens += result["output_tokens"]
    if result["cost_nanos"] is None:
        progress.unpriced += 1
    else:
        progress.spent_nanos += result["cost_nanos"]
    progress.finished()

"""Run a coroutine on uvloop where it is installed (it is much faster), else on asyncio."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop factory, or asyncio's default where uvloop is missing."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.new_event_loop
    return cast(Callable[[], asyncio.AbstractEventLoop], uvloop.new_event_loop)


def run_fast(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on the fastest available event loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coroutine)

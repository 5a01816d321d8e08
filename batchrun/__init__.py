"""batchrun: run JSONL batches against MiniMax's Anthropic-compatible API, compare models side
by side, and watch token spend.

From Python (a notebook or a script)::

    import batchrun

    store = batchrun.open_store("batchrun.db")
    done = batchrun.run_file("jobs/demo.jsonl", store=store,
                             options=batchrun.RunOptions(models=["MiniMax-M2.7"]))
    batchrun.metrics_frame(store, [done.batch.id])   # latency, TTFT, tokens/s, cost per model

Names load on first use, so ``import batchrun`` (and the command line) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchrun.store import BatchInfo, Store
    from batchrun.workspace import (
        BatchRun,
        RunOptions,
        answers_frame,
        metrics_frame,
        open_store,
        requests_frame,
        resume,
        run_file,
        run_jobs,
    )

__version__ = "0.1.0"
__all__ = [
    "BatchInfo",
    "BatchRun",
    "RunOptions",
    "Store",
    "answers_frame",
    "metrics_frame",
    "open_store",
    "requests_frame",
    "resume",
    "run_file",
    "run_jobs",
]
_HOME = {"BatchInfo": "batchrun.store", "Store": "batchrun.store"}


def __getattr__(name: str) -> Any:
    """Load a public name from its module the first time it is used."""
    if name not in __all__:
        raise AttributeError(f"module 'batchrun' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME.get(name, "batchrun.workspace")), name)
    globals()[name] = value
    return value

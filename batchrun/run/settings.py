"""How a run behaves: the settings the commands build from options, the catalog and the
environment before anything is sent. Light to import: nothing here loads the SDK.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from batchrun.api.endpoint import Deadlines
from batchrun.run.launch import LimitOptions, limit_settings
from batchrun.run.limits import ModelLimitSettings
from batchrun.run.retry import RetryPolicy

if TYPE_CHECKING:
    from batchrun.catalog import Catalog

PAGE = 500  # pending requests a feeder takes from its source at a time
# The queue to the writer holds one commit's worth (``RunSettings.commit_batch``): the writer
# gathers outcomes for ``commit_interval`` before each commit, and workers should not wait on it.
OUTCOME_QUEUE = 256


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """How one run behaves; the CLI builds it from options, the catalog and the environment."""

    limits: Mapping[str, ModelLimitSettings]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    precheck: bool = True
    precheck_concurrency: int = 16
    grace_seconds: float = 5.0
    commit_batch: int = 256
    # Seconds the writer gathers outcomes before it commits them (``run.writer``).
    commit_interval: float = 0.1
    cancel_poll_seconds: float = 1.0  # how often the batch's status is read for a cancel


@dataclass(frozen=True, kw_only=True)
class SendSettings:
    """How a sender sends one batch: what ``run``, ``resume``, their child senders and the
    Python API hand to ``send_claimed``, whatever process it runs in."""

    limits: LimitOptions  # the command line's, before the catalog's are added
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    deadlines: Deadlines = field(default_factory=Deadlines)
    precheck: bool = True
    max_cost_nanos: int | None = None  # the batch's hard cap; None: no cap
    grace_seconds: float = 5.0  # after a stop, how long calls in flight may finish

    def run_settings(self, catalog: Catalog, models: Sequence[str]) -> RunSettings:
        """The run's settings for these models: their limits resolved against the catalog."""
        limits = limit_settings(catalog, models, self.limits)
        return RunSettings(
            limits=limits,
            retry=self.retry,
            precheck=self.precheck,
            grace_seconds=self.grace_seconds,
        )

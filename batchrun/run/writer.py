"""The writer task: outcomes from every worker, committed to the store in batches.

A request's result exists only once the writer has committed it. A store that cannot be written
stops the run; what could not be committed is kept in the report for the CLI to write out.

After the first outcome of a commit arrives, the writer gathers more for up to
``commit_interval`` seconds (or until ``commit_batch`` are in hand) before it commits: every
commit, whatever its size, has SQLAlchemy build and bind four statements and SQLite end a
transaction, and committing outcomes as they came, one to three at a time, was a third of the
runner's CPU at time scale 0 (py-spy on bench/peers.py's workload; 9 % after this change). A process
killed meanwhile loses what was finished and not yet committed: the batch in hand (up to
``commit_batch``) and the queue behind it (up to ``OUTCOME_QUEUE``), which a resume runs again.
"""

from __future__ import annotations

import functools
import logging
import time

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from batchrun.exceptions import StoreError
from batchrun.run.control import RunControl
from batchrun.run.offload import offload
from batchrun.status import RequestStatus
from batchrun.store import Outcome, Store

log = logging.getLogger(__name__)


class OutcomeWriter:
    """Commits the outcomes it receives, up to ``commit_batch`` at a time, until the stream ends."""

    def __init__(
        self,
        store: Store,
        control: RunControl,
        *,
        commit_batch: int,
        owner: str | None,
        commit_interval: float = 0.0,
    ) -> None:
        self.store = store
        self.control = control
        self.commit_batch = commit_batch
        self.commit_interval = commit_interval
        self.owner = owner  # the worker whose claims the results must match

    async def run(self, outcomes: MemoryObjectReceiveStream[Outcome]) -> None:
        """Receive and commit until every sender is closed."""
        async with outcomes:
            while True:
                try:
                    first = await outcomes.receive()
                except anyio.EndOfStream:
                    return
                except anyio.get_cancelled_exc_class():
                    # the run is cancelled (an error elsewhere): what is queued was paid for, so
                    # it is committed still, or kept as unsaved, never dropped
                    with anyio.CancelScope(shield=True):
                        while batch := _waiting(outcomes, self.commit_batch):
                            await self._commit(batch)
                    raise
                with anyio.CancelScope(shield=True):  # what was received is committed
                    batch = await self._gather(first, outcomes)
                    await self._commit(batch)

    async def _gather(
        self, first: Outcome, outcomes: MemoryObjectReceiveStream[Outcome]
    ) -> list[Outcome]:
        """``first`` and what else arrives within ``commit_interval``, ``commit_batch`` at most.

        One sleep, then what is queued: a receive cancelled by a deadline could lose the
        outcome handed to it, and the queue holds a whole commit's worth meanwhile. No sleep
        once every worker is done (the end of a run commits at once).
        """
        batch = [first, *_waiting(outcomes, self.commit_batch - 1)]
        senders = outcomes.statistics().open_send_streams
        if self.commit_interval > 0 and len(batch) < self.commit_batch and senders:
            await anyio.sleep(self.commit_interval)
            batch += _waiting(outcomes, self.commit_batch - len(batch))
        return batch

    async def _commit(self, batch: list[Outcome]) -> None:
        report = self.control.report
        if report.store_error is not None:
            self._unsaved(batch)
            return
        started = time.perf_counter()
        try:
            # SQLite's in the event loop's own thread, on purpose: a worker thread here waits for
            # the GIL behind the busy loop at every SQLite call (a 256-row commit took ~1 s
            # instead of 14 ms), and completed results piled up uncommitted. A short block is
            # the cheaper there; PostgreSQL's round trips would stall every stream (offload).
            await offload(
                self.store, functools.partial(self.store.record, claimed_by=self.owner), batch
            )
        except StoreError as exc:
            report.store_error = str(exc)
            self._unsaved(batch)
            self.control.stop(interrupted=False)
            return
        log.debug("committed %d outcomes in %.3f s", len(batch), time.perf_counter() - started)

    def _unsaved(self, batch: list[Outcome]) -> None:
        """Keep what could not be committed for the CLI to write out; a request that was never
        sent (stopped before its first attempt) has nothing to lose and stays pending."""
        self.control.report.unsaved.extend(
            o for o in batch if o.attempts or o.status != RequestStatus.PENDING
        )


def _waiting(outcomes: MemoryObjectReceiveStream[Outcome], most: int) -> list[Outcome]:
    """Up to ``most`` outcomes that are already queued, without waiting for more."""
    found: list[Outcome] = []
    while len(found) < most:
        try:
            found.append(outcomes.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            break
    return found

"""A hard budget cap: each attempt reserves its worst-case cost before it is sent.

The worst case is the request's input tokens plus ``max_tokens`` of output, at the model's price
on that day. When the attempt ends, the reservation is replaced by what it actually cost (zero
for a failed attempt). A reservation that does not fit waits while other reservations are in
flight (they usually settle lower); when nothing is in flight and it still does not fit, the
budget is spent and dispatch stops. So committed spend never passes the cap, whatever the
concurrency and retries. (With ``--no-precheck`` or where count_tokens is refused, the input is a
generous local estimate rather than an exact count.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from batchrun.store import BatchInfo, Store


def batch_cap(store: Store, batch: BatchInfo, max_cost_nanos: int | None) -> int | None:
    """The batch's cap for this run: the one given now, else the one it had; kept with it."""
    cap = max_cost_nanos or batch.max_cost_nanos
    if cap is not None:
        store.set_batch(batch.id, max_cost_nanos=cap)
    return cap


class Budget:
    """Spend so far, reservations in flight, and the cap (nano-dollars)."""

    def __init__(self, cap_nanos: int, spent_nanos: int) -> None:
        self.cap_nanos = cap_nanos
        self.spent_nanos = spent_nanos
        self.reserved_nanos = 0
        self.exhausted = False
        self._changed = anyio.Event()

    async def reserve(self, nanos: int) -> bool:
        """Reserve ``nanos``; False when it can never fit (the budget is spent)."""
        while not self.exhausted:
            if self.spent_nanos + self.reserved_nanos + nanos <= self.cap_nanos:
                self.reserved_nanos += nanos
                return True
            if self.reserved_nanos == 0:
                self.exhausted = True
                break
            await self._changed.wait()
        self._notify()
        return False

    def settle(self, reserved: int, actual: int) -> None:
        """Replace a reservation by what the attempt really cost."""
        self.reserved_nanos -= reserved
        self.spent_nanos += actual
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

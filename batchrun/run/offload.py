"""Store calls off the event loop when the database is over the network (PostgreSQL), where one
round trip in the loop's thread would stall every stream the process holds; SQLite's calls stay
in the loop's thread (see writer.py: there a worker thread waits for the GIL behind the busy
loop at every call, and the file answers in microseconds anyway)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar, TypeVarTuple

import anyio.to_thread

if TYPE_CHECKING:  # only a type here: `batchrun --help` must not load SQLAlchemy
    from batchrun.store import Store

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


async def offload(store: Store, call: Callable[[*Ts], T], *args: *Ts) -> T:
    """``call(*args)``: in a thread for PostgreSQL, here for SQLite."""
    if store.database.is_postgresql:
        return await anyio.to_thread.run_sync(call, *args)
    return call(*args)

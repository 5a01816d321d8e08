"""From a job file to a stored batch: every valid line fanned out to its models as requests.

The file is read in one streaming pass and stored in chunks, so a 1,000,000-line file never sits
in memory. With ``strict``, a first pass checks every line and nothing is stored (or sent) when
any line is invalid.

One file with one set of models makes one batch however many processes load it at once
(``open_file_batch``): the batch row carries a key (``batch_key``) that a unique index lets only
one batch hold. The process whose insert wins loads the lines, touching the row every few seconds;
the others wait for it to finish loading and continue that batch. A load whose row stopped moving
for ``LOAD_STALE_S`` (its process died) gives the key up, and the file is loaded again.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchrun import interrupts
from batchrun.catalog import Catalog
from batchrun.exceptions import StrictModeError
from batchrun.jobs import JobSpec, LineError, ReadOptions, read_jobs
from batchrun.status import BatchStatus

if TYPE_CHECKING:
    from batchrun.api.endpoint import Endpoint
    from batchrun.store import BatchInfo, Store

CHUNK = 2000
TOUCH_EVERY_S = 2.0  # how often a load in progress shows it is alive
LOAD_STALE_S = 30.0  # a load whose batch row has not moved for this long is taken for dead
LOAD_POLL_S = 0.2


@dataclass(frozen=True, kw_only=True)
class PlanOptions:
    """How a file becomes a batch."""

    models: Sequence[str]  # fan-out; empty: each line's own model
    default_max_tokens: int = 1024
    strict: bool = False
    name: str | None = None


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What loading a file produced."""

    batch: BatchInfo
    requests: int
    line_errors: list[LineError]  # the first ones, for the message; all are stored
    line_error_count: int


@dataclass(frozen=True, kw_only=True)
class Opened:
    """The batch a run of a file goes on with: a new one (with its plan) or one continued."""

    batch: BatchInfo
    plan: Plan | None  # None: an existing batch, continued


class _KeyTaken(Exception):
    """Another process stored a batch with the same key first."""


def batch_key(digest: str, models: Sequence[str], name: str | None = None) -> str:
    """What makes two runs the same batch: the file's content and the models, in order (and
    the --name given, which names a batch of its own)."""
    text = f"{digest}\n{json.dumps(list(models), separators=(',', ':'))}"
    if name is not None:
        text += f"\n{name}"
    return hashlib.sha256(text.encode()).hexdigest()


def open_file_batch(
    store: Store,
    catalog: Catalog,
    path: Path,
    options: PlanOptions,
    endpoint: Endpoint,
    *,
    digest: str,
    waiting: Callable[[BatchInfo], object] = lambda batch: None,
    stale_s: float = LOAD_STALE_S,
) -> Opened:
    """The batch of ``path`` (of ``digest``) with these models to continue, else a new one
    loaded now; ``waiting`` is told once when another process is still loading it, and a load
    whose batch row has not moved for ``stale_s`` is taken for dead."""
    key = batch_key(digest, options.models, options.name)
    watch = _LoadWatch(stale_s)
    while True:
        holder = store.batches.holding(key)
        if holder is not None and holder.status == BatchStatus.LOADING:
            if watch.stale(holder):
                store.batches.give_up_key(holder.id, holder.updated_at)
            else:
                if watch.first_look:
                    waiting(holder)
                time.sleep(LOAD_POLL_S)
            continue
        # The batch to continue: the --name's (ConfigError if that name is another file's
        # batch), else the latest of the file and models.
        found = store.find_resumable(digest, options.models, options.name) or holder
        if found is not None:
            return Opened(batch=found, plan=None)
        try:
            plan = load_file(store, catalog, path, options, endpoint, digest=digest, key=key)
        except _KeyTaken:
            continue  # another process inserted it first: wait for it to be loaded
        return Opened(batch=plan.batch, plan=plan)


class _LoadWatch:
    """Whether another process's load is alive: its row's ``updated_at`` moves, on our clock."""

    def __init__(self, stale_s: float) -> None:
        self.stale_s = stale_s
        self.seen: tuple[str, float] | None = None
        self.since = time.monotonic()
        self.looks = 0

    @property
    def first_look(self) -> bool:
        return self.looks == 1

    def stale(self, batch: BatchInfo) -> bool:
        self.looks += 1
        now = time.monotonic()
        if self.seen != (batch.id, batch.updated_at):
            self.seen, self.since = (batch.id, batch.updated_at), now
            return False
        return now - self.since >= self.stale_s


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def batch_name(path: Path, store: Store) -> str:
    """A readable, unique name: the file's stem and the time."""
    return unique_name(f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}", store)


def unique_name(base: str, store: Store) -> str:
    """``base``, or ``base-2``, ``base-3``... : the first no batch of ``store`` has."""
    name, n = base, 1
    while store.name_taken(name):
        n += 1
        name = f"{base}-{n}"
    return name


def load_file(
    store: Store,
    catalog: Catalog,
    path: Path,
    options: PlanOptions,
    endpoint: Endpoint,
    *,
    digest: str,
    key: str | None = None,
) -> Plan:
    """Store ``path`` (whose ``file_digest`` is ``digest``: the caller has looked for its batch
    with it already) as a new batch bound for ``endpoint``, its URL kept without secrets;
    ``key``: its batch_key (see open_file_batch)."""
    from batchrun.store import redact_url  # noqa: PLC0415 - the store is open by now

    return create_batch(
        store,
        catalog,
        path,
        options,
        digest=digest,
        base_url=redact_url(endpoint.base_url),
        simulated=endpoint.simulated,
        settings={"default_max_tokens": options.default_max_tokens},
        key=key,
    )


def create_batch(
    store: Store,
    catalog: Catalog,
    path: Path,
    options: PlanOptions,
    *,
    digest: str,
    base_url: str,
    simulated: bool,
    settings: dict[str, Any],
    key: str | None = None,
) -> Plan:
    """Read ``path`` and store it as a new batch with one request per job and model; with
    ``key``, the batch holds it (``_KeyTaken`` when another batch holds it already)."""
    read = ReadOptions(
        models=list(options.models) or None, default_max_tokens=options.default_max_tokens
    )
    if options.strict:
        _refuse_if_invalid(path, read_jobs(path, catalog, read))
    batch_id = uuid.uuid4().hex[:12]
    created = store.create_batch(
        {
            "id": batch_id,
            "name": options.name or batch_name(path, store),
            "source_path": str(path),
            "source_sha256": digest,
            "models": list(options.models),
            "status": BatchStatus.LOADING,  # until every line is stored: never resumed as whole
            "simulated": simulated,
            "base_url": base_url,
            "settings": settings,
            "jobs_total": 0,
            "lines_invalid": 0,
            "open_key": key,
        }
    )
    if not created:
        raise _KeyTaken(key)
    try:
        requests, errors, error_count = _store_lines(
            store, batch_id, read_jobs(path, catalog, read), options.models
        )
    except BaseException:  # Ctrl-C, SIGTERM, a failure: a part of the file is never continued
        store.set_batch(batch_id, status=BatchStatus.CANCELED)  # and gives up its key
        raise
    store.set_batch(batch_id, status=BatchStatus.RUNNING)
    return Plan(
        batch=store.find_batch(batch_id),
        requests=requests,
        line_errors=errors,
        line_error_count=error_count,
    )


def _store_lines(
    store: Store, batch_id: str, lines: Iterable[JobSpec | LineError], models: Sequence[str]
) -> tuple[int, list[LineError], int]:
    specs: list[JobSpec] = []
    errors: list[LineError] = []
    first_errors: list[LineError] = []
    requests = error_count = 0
    touch_at = time.monotonic() + TOUCH_EVERY_S
    for line in lines:
        if time.monotonic() >= touch_at:  # alive: processes waiting for this batch keep waiting
            store.set_batch(batch_id)
            touch_at = time.monotonic() + TOUCH_EVERY_S
        if isinstance(line, LineError):
            errors.append(line)
            error_count += 1
            if len(first_errors) < 50:
                first_errors.append(line)
        else:
            specs.append(line)
        if len(specs) >= CHUNK or len(errors) >= CHUNK:
            requests += store.add_jobs(batch_id, specs, models)
            store.add_line_errors(batch_id, errors)
            specs, errors = [], []
            interrupts.raise_if_dropped()  # a SIGTERM Python dropped still stops the load
    requests += store.add_jobs(batch_id, specs, models)
    store.add_line_errors(batch_id, errors)
    interrupts.raise_if_dropped()
    return requests, first_errors, error_count


def _refuse_if_invalid(path: Path, lines: Iterable[JobSpec | LineError]) -> None:
    count = 0
    first: LineError | None = None
    for line in lines:
        if isinstance(line, LineError):
            count += 1
            first = first or line
    if first is not None:
        raise StrictModeError(str(path), count, str(first))

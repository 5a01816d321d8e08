"""From a job file to a stored batch: every valid line fanned out to its models as requests.

The file is read in one streaming pass and stored in chunks, so a 1,000,000-line file never sits
in memory. With ``strict``, a first pass checks every line and nothing is stored (or sent) when
any line is invalid.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchrun.catalog import Catalog
from batchrun.exceptions import StrictModeError
from batchrun.jobs import JobSpec, LineError, ReadOptions, read_jobs
from batchrun.status import BatchStatus

if TYPE_CHECKING:
    from batchrun.api.endpoint import Endpoint
    from batchrun.store import BatchInfo, Store

CHUNK = 2000


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
) -> Plan:
    """Store ``path`` (whose ``file_digest`` is ``digest``: the caller has looked for its batch
    with it already) as a new batch bound for ``endpoint``, its URL kept without secrets."""
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
) -> Plan:
    """Read ``path`` and store it as a new batch with one request per job and model."""
    read = ReadOptions(
        models=list(options.models) or None, default_max_tokens=options.default_max_tokens
    )
    if options.strict:
        _refuse_if_invalid(path, read_jobs(path, catalog, read))
    batch_id = uuid.uuid4().hex[:12]
    store.create_batch(
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
        }
    )
    try:
        requests, errors, error_count = _store_lines(
            store, batch_id, read_jobs(path, catalog, read), options.models
        )
    except BaseException:  # Ctrl-C, SIGTERM, a failure: a part of the file is never continued
        store.set_batch(batch_id, status=BatchStatus.CANCELED)
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
    for line in lines:
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
    requests += store.add_jobs(batch_id, specs, models)
    store.add_line_errors(batch_id, errors)
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

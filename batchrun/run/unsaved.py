"""Answers a run paid for but could not commit: written to a file where there is room, and
imported back into their database (``batchrun import FILE``, and ``run``/``resume`` on their own).

Where the file goes: the first of these directories that takes all of it (``directories``):

    1. the database's directory (a SQLite file): where the next run looks first
    2. the working directory (the default place of the database too)
    3. the user's home directory (often another disk than a project's data)
    4. the temporary directory ($TMPDIR, else /tmp; often in memory, gone after a reboot)

It is written under a hidden temporary name, flushed, fsynced and then renamed (and its directory
fsynced): a file named ``batchrun-unsaved-<batch>-<time>-<pid>.jsonl`` is always whole. Each line
is one ``Outcome`` as JSON: the request, its attempts (what was sent, when, how it ended) and its
result row.

Importing records each outcome of a request that is still pending as the run would have
committed it, so the request is not sent (nor paid for) again. A request that finished meanwhile
is left as it is, and attempts the database already has (by number) are not added again, so a
file imported twice adds nothing. Once imported the file is renamed ``….jsonl.imported``, so it
is not picked up again.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from batchrun.exceptions import BatchNotFoundError, StoreError, UnsavedFileError
from batchrun.run.space import format_size, free_bytes
from batchrun.status import RequestStatus
from batchrun.store import AttemptRecord, Outcome, Store, WorkItem

PREFIX = "batchrun-unsaved-"
SUFFIX = ".jsonl"
IMPORTED = ".imported"
_SLACK = 256 * 1024  # room left on a disk after the file: the filesystem's own blocks, others
_CHUNK = 500  # outcomes looked up and recorded at a time


@dataclass(frozen=True, kw_only=True)
class SavedFile:
    """Where ``save`` wrote the outcomes (None: nowhere) and why each directory before it
    refused them."""

    path: Path | None
    count: int
    refused: list[tuple[Path, str]]


@dataclass(kw_only=True)
class Imported:
    """What importing one file did."""

    path: Path
    recorded: int = 0  # outcomes written to the database
    already: int = 0  # requests that were finished meanwhile (or imported before): left alone
    bad_lines: list[int] = field(default_factory=list)  # lines that are not a whole outcome
    renamed: Path | None = None  # where the file is now (None: it could not be renamed)


def directories(
    store_directory: Path | None, cwd: Path, home: Path | None, tmp: Path
) -> list[Path]:
    """The directories an unsaved file may go to, in the order tried, each once."""
    found: list[Path] = []
    for directory in (store_directory, cwd, home, tmp):
        if directory is None:
            continue
        resolved = directory.expanduser().resolve()
        if resolved not in found:
            found.append(resolved)
    return found


def save(outcomes: Sequence[Outcome], batch_id: str, places: Sequence[Path]) -> SavedFile:
    """Write ``outcomes`` to a new file in the first of ``places`` with room for all of them."""
    data = b"".join(orjson.dumps(outcome) + b"\n" for outcome in outcomes)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{PREFIX}{batch_id}-{stamp}-{os.getpid()}{SUFFIX}"
    refused: list[tuple[Path, str]] = []
    for directory in places:
        try:
            free = free_bytes(directory)
            if free < len(data) + _SLACK:
                refused.append((directory, f"only {format_size(free)} free"))
                continue
            path = _write_whole(directory / name, data)
        except OSError as exc:
            refused.append((directory, exc.strerror or str(exc)))
            continue
        return SavedFile(path=path, count=len(outcomes), refused=refused)
    return SavedFile(path=None, count=len(outcomes), refused=refused)


def find(store: Store, places: Iterable[Path]) -> list[Path]:
    """The unsaved files in ``places`` whose outcomes are of a batch of this database."""
    found: list[Path] = []
    for directory in places:
        try:
            candidates = sorted(directory.glob(f"{PREFIX}*{SUFFIX}"))
        except OSError:
            continue
        found.extend(path for path in candidates if _batch_here(store, path))
    return found


def read(path: Path) -> tuple[list[Outcome], list[int]]:
    """The outcomes in an unsaved file, and the numbers of its lines that are not one."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise UnsavedFileError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    outcomes: list[Outcome] = []
    bad: list[int] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            outcomes.append(_outcome(orjson.loads(line)))
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
            bad.append(number)
    if bad and not outcomes:
        raise UnsavedFileError(
            f"{path}: not a file of unsaved results (line {bad[0]} is not one); batchrun "
            "import takes the batchrun-unsaved-*.jsonl files that run and resume write"
        )
    return outcomes, bad


def import_file(store: Store, path: Path) -> Imported:
    """Record the outcomes of an unsaved file in ``store`` (see the module's docstring)."""
    outcomes, bad = read(path)
    done = Imported(path=path, bad_lines=bad)
    try:
        for group in _groups(store, path, outcomes):
            kept = _still_to_record(store, path, group)
            done.already += len(group) - len(kept)
            store.record(kept)
            done.recorded += len(kept)
    except StoreError as exc:
        raise StoreError(
            f"{path} could not be imported ({exc}); the file is kept as it was: free some space "
            "or fix the database, then run the command again"
        ) from exc
    done.renamed = _mark_imported(path)
    return done


def _batch_here(store: Store, path: Path) -> bool:
    """Whether the file's first outcome is of a batch of this database."""
    try:
        with path.open("rb") as handle:
            first = orjson.loads(handle.readline())
        batch_id = str(first["batch_id"])
        return store.find_batch(batch_id).id == batch_id
    except (OSError, orjson.JSONDecodeError, TypeError, KeyError, BatchNotFoundError):
        return False


def _groups(store: Store, path: Path, outcomes: list[Outcome]) -> list[list[Outcome]]:
    """The outcomes by batch and model, in chunks, each request once; every batch must be in
    this database."""
    by_key: dict[tuple[str, str], dict[int, Outcome]] = defaultdict(dict)
    for outcome in outcomes:
        by_key[(outcome.batch_id, outcome.model)].setdefault(outcome.request_id, outcome)
    for batch_id in {key[0] for key in by_key}:
        try:
            store.find_batch(batch_id)
        except BatchNotFoundError as exc:
            raise UnsavedFileError(
                f"{path}: its results are of batch {batch_id}, which is not in this database; "
                "give the database the run used with --db"
            ) from exc
    groups: list[list[Outcome]] = []
    for group in by_key.values():
        listed = list(group.values())
        groups.extend(listed[i : i + _CHUNK] for i in range(0, len(listed), _CHUNK))
    return groups


def _still_to_record(store: Store, path: Path, group: list[Outcome]) -> list[Outcome]:
    """The outcomes of ``group`` (one batch and model) whose requests are still pending, each
    with only the attempts the database does not have yet."""
    first = group[0]
    ids = [o.request_id for o in group]
    pending = {
        item.request_id: item
        for item in store.pending(first.batch_id, first.model, 0, len(ids), only=ids)
    }
    kept: list[Outcome] = []
    for outcome in group:
        item = pending.get(outcome.request_id)
        if item is None:
            continue  # finished meanwhile, or imported before
        _check_same_request(path, outcome, item)
        outcome.attempts = [a for a in outcome.attempts if a.number > item.attempts]
        if outcome.attempts or outcome.status != RequestStatus.PENDING:
            kept.append(outcome)
    return kept


def _check_same_request(path: Path, outcome: Outcome, item: WorkItem) -> None:
    if item.custom_id != outcome.custom_id:
        raise UnsavedFileError(
            f"{path}: request {outcome.request_id} is {outcome.custom_id!r} in the file but "
            f"{item.custom_id!r} in this database, so the file is of another database; give "
            "the one the run used with --db"
        )


def _outcome(row: dict[str, Any]) -> Outcome:
    attempts = [AttemptRecord(**attempt) for attempt in row.pop("attempts")]
    outcome = Outcome(**row, attempts=attempts)
    if not isinstance(outcome.request_id, int) or not isinstance(outcome.batch_id, str):
        raise TypeError("not an outcome")
    return outcome


def _write_whole(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that the name only ever shows the whole file."""
    part = path.with_name(f".{path.name}.part")
    try:
        with part.open("xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(part, path)
    except OSError:
        part.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def _fsync_directory(directory: Path) -> None:
    """Make the file's name itself durable (a rename lives in its directory)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the file's data is on disk already
    finally:
        os.close(descriptor)


def _mark_imported(path: Path) -> Path | None:
    """Rename an imported file so that it is not imported again; None when it cannot be."""
    if path.name.endswith(IMPORTED):
        return path  # imported again on purpose: its name already says so
    target = path.with_name(path.name + IMPORTED)
    try:
        os.replace(path, target)
    except OSError:
        return None
    return target

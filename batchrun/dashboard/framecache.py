"""Finished batches' requests frames kept on disk as Parquet, so a fresh dashboard server reads a
million results in a fraction of a second instead of scanning the store again; and their
requests per model and status (a small JSON file), so a fresh server's Overview does not count a
million requests either.

One file per batch, version (its status, last change and this module's format) and kind, in a
directory next to a SQLite store (``<file>.frames``) or, for any other database, in the user's
cache directory. A file is written atomically; one that is stale, unreadable or of another
format is ignored (and replaced when the figures are next read from the store).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from batchrun.store import redact_url

FORMAT = 1  # bump when the requests frame's columns change: older files are then ignored
_SQLITE = "sqlite:///"
T = TypeVar("T")
Counts = dict[str, dict[str, int]]  # requests per model and status


def cache_dir(url: str) -> Path:
    """Where the frames of the store at ``url`` are kept."""
    if url.startswith(_SQLITE) and ":memory:" not in url:
        store = Path(url.removeprefix(_SQLITE).split("?", 1)[0])
        return store.with_name(store.name + ".frames")
    key = hashlib.sha256(redact_url(url).encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "batchrun" / "frames" / key


def file_for(
    directory: Path, batch_id: str, version: tuple[Any, ...], kind: str = "parquet"
) -> Path:
    """The file of one batch at one version: its frame (``parquet``) or its ``counts.json``."""
    stamp = hashlib.sha256(repr((FORMAT, *version)).encode()).hexdigest()[:16]
    return directory / f"{_safe(batch_id)}.{stamp}.{kind}"


def _safe(batch_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in batch_id)


def cached(
    directory: Path, batch_id: str, version: tuple[Any, ...], read: Callable[[], pl.DataFrame]
) -> pl.DataFrame:
    """The batch's frame from its file when there is a good one, else ``read()``, then kept."""
    path = file_for(directory, batch_id, version)
    return _kept(
        path, read, pl.read_parquet, lambda f, out: f.write_parquet(out, compression="lz4")
    )


def cached_counts(
    directory: Path, batch_id: str, version: tuple[Any, ...], read: Callable[[], Counts]
) -> Counts:
    """The batch's requests per model and status from its file when there is a good one, else
    ``read()``, then kept."""
    path = file_for(directory, batch_id, version, "counts.json")
    return _kept(
        path, read, _load_counts, lambda counts, out: out.write(json.dumps(counts).encode())
    )


def _load_counts(path: Path) -> Counts:
    loaded = json.loads(path.read_bytes())
    if not isinstance(loaded, dict) or not all(isinstance(by, dict) for by in loaded.values()):
        raise TypeError(f"{path}: not requests per model and status")
    return {str(m): {str(s): int(n) for s, n in by.items()} for m, by in loaded.items()}


def _kept(
    path: Path,
    read: Callable[[], T],
    load: Callable[[Path], T],
    write: Callable[[T, Any], None],
) -> T:
    """``load(path)`` when the file is good, else ``read()``, written to ``path`` for the next
    server."""
    try:
        return load(path)
    except (OSError, ValueError, TypeError, pl.exceptions.PolarsError):  # missing, cut, not ours
        pass
    value = read()
    _save(path, value, write)
    return value


def _save(path: Path, value: T, write: Callable[[T, Any], None]) -> None:
    """Write the file atomically and drop the batch's older versions of it; a failure (a
    read-only directory, a full disk) only costs the next server a read of the store."""
    temporary: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as out:
            temporary = Path(out.name)
            write(value, out)
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        return
    name, _, kind = path.name.split(".", 2)
    for older in path.parent.glob(f"{name}.*.{kind}"):
        if older != path:
            older.unlink(missing_ok=True)

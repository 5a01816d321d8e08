"""Finished batches' requests frames kept on disk as Parquet, so a fresh dashboard server reads a
million results in a fraction of a second instead of scanning the store again.

One file per batch and version (its status, last change and this module's format), in a
directory next to a SQLite store (``<file>.frames``) or, for any other database, in the user's
cache directory. A file is written atomically; one that is stale, unreadable or of another
format is ignored (and replaced when the frame is next read from the store).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from batchrun.store import redact_url

FORMAT = 1  # bump when the requests frame's columns change: older files are then ignored
_SQLITE = "sqlite:///"


def cache_dir(url: str) -> Path:
    """Where the frames of the store at ``url`` are kept."""
    if url.startswith(_SQLITE) and ":memory:" not in url:
        store = Path(url.removeprefix(_SQLITE).split("?", 1)[0])
        return store.with_name(store.name + ".frames")
    key = hashlib.sha256(redact_url(url).encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "batchrun" / "frames" / key


def file_for(directory: Path, batch_id: str, version: tuple[Any, ...]) -> Path:
    """The file of one batch at one version."""
    stamp = hashlib.sha256(repr((FORMAT, *version)).encode()).hexdigest()[:16]
    return directory / f"{_safe(batch_id)}.{stamp}.parquet"


def _safe(batch_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in batch_id)


def cached(
    directory: Path, batch_id: str, version: tuple[Any, ...], read: Callable[[], pl.DataFrame]
) -> pl.DataFrame:
    """The batch's frame from its file when there is a good one, else ``read()``, then kept."""
    path = file_for(directory, batch_id, version)
    frame = _load(path)
    if frame is not None:
        return frame
    frame = read()
    _save(path, frame)
    return frame


def _load(path: Path) -> pl.DataFrame | None:
    try:
        return pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError):  # missing, truncated or not Parquet: reread
        return None


def _save(path: Path, frame: pl.DataFrame) -> None:
    """Write the file atomically and drop the batch's older versions; a failure (a read-only
    directory, a full disk) only costs the next server a read of the store."""
    temporary: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as out:
            temporary = Path(out.name)
            frame.write_parquet(out, compression="lz4")
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        return
    for older in path.parent.glob(path.name.split(".", 1)[0] + ".*.parquet"):
        if older != path:
            older.unlink(missing_ok=True)

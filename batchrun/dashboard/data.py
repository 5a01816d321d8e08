"""What the pages read, cached: the store per URL and the requests frame per batch selection.

Frames are cached for a few seconds (``TTL``), so a page reflects a running batch when it
refreshes, and moving between pages does not reread a million rows. A finished batch's frame is
also kept on disk (``framecache``), so a fresh server does not reread it either.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import polars as pl
import streamlit as st

from batchrun import analytics
from batchrun.dashboard import framecache
from batchrun.grading.report import grades_frame
from batchrun.store import Store, sqlite_file_missing
from batchrun.teams.claims import worker_rows
from batchrun.teams.vitals import worker_figures

T = TypeVar("T")
TTL = 5.0  # seconds a running batch's figures are reused before the store is read again
RUNNING = ("running", "loading")  # a batch in these states may change at any moment
KEEP = 3600.0  # seconds a finished batch's frame stays in memory unused


@dataclass(frozen=True, kw_only=True, slots=True)
class Source:
    """The database the dashboard reads: its URL and what to call it on screen."""

    url: str
    label: str

    def missing(self) -> bool:
        """A SQLite file that does not exist yet (no batch was ever run with it)."""
        return sqlite_file_missing(self.url)


@st.cache_resource(show_spinner=False)
def store(url: str) -> Store:
    """One Store (engine and connection pool) per database for the whole server."""
    return Store(url)


@st.cache_data(ttl=TTL, show_spinner=False)
def batches(url: str) -> list[dict[str, Any]]:
    """Every batch, newest first, as plain dicts (what st.cache_data can copy)."""
    return [b.as_dict() for b in store(url).list_batches()]


def derived(
    url: str,
    batch_ids: tuple[str, ...] | None,
    what: Hashable,
    compute: Callable[[pl.DataFrame], T],
) -> T:
    """``compute(requests(url, batch_ids))``, worked out once per version of those batches (and
    again every ``TTL`` seconds while one runs): a page's figures over a million results cost
    its first visit, not every one. ``what`` names the computation and all it depends on besides
    the frame (a choice on the page, say); the result is shared, never to be changed."""
    chosen = [b for b in batches(url) if batch_ids is None or b["id"] in batch_ids]
    versions = tuple((b["id"], _version(b)) for b in chosen)
    return cast("T", _derived(url, batch_ids, versions, what, compute))


@st.cache_resource(ttl=KEEP, max_entries=256, show_spinner=False)
def _derived(
    url: str,
    batch_ids: tuple[str, ...] | None,
    versions: tuple[Any, ...],
    what: Hashable,
    _compute: Callable[[pl.DataFrame], Any],  # not hashed (the leading _): ``what`` names it
) -> Any:
    del versions  # only part of the cache key
    return _compute(requests(url, batch_ids))


def requests(url: str, batch_ids: tuple[str, ...] | None = None) -> pl.DataFrame:
    """The requests frame (analytics.requests_frame) of some batches, or of all.

    Read and kept per batch: a finished batch is read once (until it changes), a running one at
    most every ``TTL`` seconds, so a page over a million results is computed from memory.
    """
    chosen = [b for b in batches(url) if batch_ids is None or b["id"] in batch_ids]
    return _joined(url, tuple((b["id"], _version(b)) for b in chosen))


@st.cache_resource(ttl=KEEP, max_entries=16, show_spinner=False)
def _joined(url: str, versions: tuple[tuple[str, tuple[Any, ...]], ...]) -> pl.DataFrame:
    # Kept, so a page rerun gets the very same frame: ``memo`` knows it by its identity.
    frames = [_batch_requests(url, batch_id, version) for batch_id, version in versions]
    return pl.concat(frames) if frames else analytics.requests_frame([], [], [])


def sums(url: str, batch_ids: tuple[str, ...] | None = None) -> pl.DataFrame:
    """The sums frame (analytics.sums_frame) of some batches, or of all: the store's
    aggregates and each batch's requests per status, a few hundred rows whatever the results.
    The same object until those batches change (every ``TTL`` seconds while one runs), so
    ``memo`` keeps what is computed from it."""
    chosen = [b for b in batches(url) if batch_ids is None or b["id"] in batch_ids]
    return _sums(url, tuple((b["id"], _version(b)) for b in chosen))


@st.cache_resource(ttl=KEEP, max_entries=16, show_spinner=False)
def _sums(url: str, versions: tuple[tuple[str, tuple[Any, ...]], ...]) -> pl.DataFrame:
    ids = [batch_id for batch_id, _ in versions]
    chosen = [b for b in batches(url) if b["id"] in ids]
    counts = {b["id"]: _finished_progress(url, b) for b in chosen}
    return analytics.sums_frame(store(url).aggregate_rows(ids), counts, chosen)


# A weak reference to the frame: a kept figure never keeps a million-row frame alive (a running
# batch's frame is replaced every TTL seconds).
_MEMO: OrderedDict[tuple[Any, ...], tuple[weakref.ref[pl.DataFrame], Any]] = OrderedDict()
_MEMO_LOCK = threading.Lock()
MEMO_ENTRIES = 128  # computed figures kept (each a few rows)


def memo(compute: Callable[..., T], frame: pl.DataFrame, *args: Hashable) -> T:
    """``compute(frame, *args)``, worked out once per frame: a frame from ``requests`` (or from
    ``only_models``) is the same object on every rerun until its batches change, so a page's
    figures over a million results are computed on its first visit only."""
    key = (id(frame), compute.__module__, compute.__qualname__, args)
    with _MEMO_LOCK:
        kept = _MEMO.get(key)
        if kept is not None and kept[0]() is frame:  # the same frame, not one at a reused id
            _MEMO.move_to_end(key)
            return cast("T", kept[1])
    value = compute(frame, *args)
    with _MEMO_LOCK:
        _MEMO[key] = (weakref.ref(frame), value)
        while len(_MEMO) > MEMO_ENTRIES:
            _MEMO.popitem(last=False)
    return value


def only_models(frame: pl.DataFrame, models: tuple[str, ...]) -> pl.DataFrame:
    """The frame's rows of these models (the frame itself when that is all of them); through
    ``memo``, the same object on every rerun."""
    if set(models) >= set(frame.get_column("model").unique().to_list()):
        return frame
    return frame.filter(pl.col("model").is_in(list(models)))


@st.cache_resource(ttl=KEEP, max_entries=64, show_spinner="Reading results...")
def _batch_requests(url: str, batch_id: str, version: tuple[Any, ...]) -> pl.DataFrame:
    # cache_resource, not cache_data: a frame is never changed in place, and copying a million
    # rows on every read would cost more than the page itself.
    batch = store(url).find_batch(batch_id).as_dict()

    def read() -> pl.DataFrame:
        return analytics.requests_frame(*store(url).metric_rows([batch_id]), [batch])

    if batch["status"] in RUNNING or _version(batch) != version:
        return read()  # still changing: not worth a file
    return framecache.cached(framecache.cache_dir(url), batch_id, version, read)


def _version(batch: dict[str, Any]) -> tuple[Any, ...]:
    """Changes when the batch's figures may have: every TTL seconds while it runs."""
    if batch["status"] in RUNNING:
        return (batch["status"], int(time.time() // TTL))
    return (batch["status"], batch["updated_at"])


@st.cache_resource(ttl=TTL, show_spinner=False)
def grades(url: str, batch_ids: tuple[str, ...]) -> pl.DataFrame:
    """The grades of some batches' answers (grading.report.grades_frame), every grader."""
    rows = [row for batch_id in batch_ids for row in store(url).grade_rows(batch_id)]
    return grades_frame(rows)


@st.cache_data(ttl=TTL, show_spinner=False)
def ratings(url: str, batch_id: str) -> list[dict[str, Any]]:
    """A batch's ratings and comments (for its downloads)."""
    return store(url).ratings.of_batch(batch_id)


@st.cache_data(ttl=TTL, show_spinner=False)
def workers(url: str) -> list[dict[str, Any]]:
    """The registered workers (teams on a shared store): heartbeat, claims held, rate, stalls."""
    return worker_figures(worker_rows(store(url)), time.time())


@st.cache_data(ttl=TTL, show_spinner=False)
def progress(url: str, batch_id: str) -> dict[str, dict[str, int]]:
    """Requests per model and status of one batch."""
    return store(url).status_counts(batch_id)


def _finished_progress(url: str, batch: dict[str, Any]) -> framecache.Counts:
    """``progress``, for a finished batch from its file beside the frames (counting a quarter
    of a million requests was most of a fresh server's first Overview); a running one's from
    the store."""
    if batch["status"] in RUNNING:
        return progress(url, batch["id"])
    return framecache.cached_counts(
        framecache.cache_dir(url),
        batch["id"],
        _version(batch),
        lambda: store(url).status_counts(batch["id"]),
    )


@st.cache_data(ttl=TTL, show_spinner=False)
def find_jobs(url: str, batch_id: str, text: str) -> list[dict[str, Any]]:
    """Jobs of a batch matching a search on custom_id or request text."""
    return store(url).find_jobs(batch_id, text)


@st.cache_data(ttl=TTL, show_spinner=False)
def answers(url: str, batch_id: str, custom_id: str) -> list[dict[str, Any]]:
    """Each model's answer (or failure) for one job."""
    return store(url).job_answers(batch_id, custom_id)

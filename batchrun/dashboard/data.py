"""What the pages read, cached: the store per URL and the requests frame per batch selection.

Frames are cached for a few seconds (``TTL``), so a page reflects a running batch when it
refreshes, and moving between pages does not reread a million rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import polars as pl
import streamlit as st

from batchrun import analytics
from batchrun.grading.report import grades_frame
from batchrun.store import Store, sqlite_file_missing
from batchrun.teams.claims import worker_rows
from batchrun.teams.vitals import worker_figures

TTL = 5.0  # seconds a running batch's figures are reused before the store is read again
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


def requests(url: str, batch_ids: tuple[str, ...] | None = None) -> pl.DataFrame:
    """The requests frame (analytics.requests_frame) of some batches, or of all.

    Read and kept per batch: a finished batch is read once (until it changes), a running one at
    most every ``TTL`` seconds, so a page over a million results is computed from memory.
    """
    chosen = [b for b in batches(url) if batch_ids is None or b["id"] in batch_ids]
    frames = [_batch_requests(url, b["id"], _version(b)) for b in chosen]
    return pl.concat(frames) if frames else analytics.requests_frame([], [], [])


@st.cache_resource(ttl=KEEP, max_entries=64, show_spinner="Reading results...")
def _batch_requests(url: str, batch_id: str, version: tuple[Any, ...]) -> pl.DataFrame:
    # cache_resource, not cache_data: a frame is never changed in place, and copying a million
    # rows on every read would cost more than the page itself.
    del version  # only part of the cache key
    batch = store(url).find_batch(batch_id)
    return analytics.requests_frame(*store(url).metric_rows([batch_id]), [batch.as_dict()])


def _version(batch: dict[str, Any]) -> tuple[Any, ...]:
    """Changes when the batch's figures may have: every TTL seconds while it runs."""
    if batch["status"] in ("running", "loading"):
        return (batch["status"], int(time.time() // TTL))
    return (batch["status"], batch["updated_at"])


@st.cache_resource(ttl=TTL, show_spinner=False)
def grades(url: str, batch_ids: tuple[str, ...]) -> pl.DataFrame:
    """The grades of some batches' answers (grading.report.grades_frame), every grader."""
    rows = [row for batch_id in batch_ids for row in store(url).grade_rows(batch_id)]
    return grades_frame(rows)


@st.cache_data(ttl=TTL, show_spinner=False)
def workers(url: str) -> list[dict[str, Any]]:
    """The registered workers (teams on a shared store): heartbeat, claims held, rate, stalls."""
    return worker_figures(worker_rows(store(url)), time.time())


@st.cache_data(ttl=TTL, show_spinner=False)
def progress(url: str, batch_id: str) -> dict[str, dict[str, int]]:
    """Requests per model and status of one batch."""
    return store(url).status_counts(batch_id)


@st.cache_data(ttl=TTL, show_spinner=False)
def find_jobs(url: str, batch_id: str, text: str) -> list[dict[str, Any]]:
    """Jobs of a batch matching a search on custom_id or request text."""
    return store(url).find_jobs(batch_id, text)


@st.cache_data(ttl=TTL, show_spinner=False)
def answers(url: str, batch_id: str, custom_id: str) -> list[dict[str, Any]]:
    """Each model's answer (or failure) for one job."""
    return store(url).job_answers(batch_id, custom_id)

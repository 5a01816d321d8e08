"""What the Outputs grid reads beyond ``data``: one page of answers, the jobs whose answers
differ, and a search over prompts and answers; cached like ``data``'s reads."""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from batchrun.dashboard import grid
from batchrun.dashboard.data import TTL, store


@st.cache_data(ttl=TTL, show_spinner=False)
def page_answers(url: str, batch_id: str, custom_ids: tuple[str, ...]) -> list[dict[str, Any]]:
    """Each model's request and answer for one page of jobs."""
    return store(url).results.grid_answers(batch_id, custom_ids)


@st.cache_data(ttl=TTL, show_spinner=False)
def differing(url: str, batch_id: str) -> list[str]:
    """The jobs of a batch whose answers are not all the same."""
    return store(url).results.differing_jobs(batch_id)


@st.cache_data(ttl=TTL, show_spinner="Searching prompts and answers...")
def search(url: str, batch_id: str, query: str, regex: bool) -> list[str]:
    """The custom_ids of jobs whose custom_id, prompt (params) or any answer holds ``query``.

    Raises ``grid.BadPattern`` for a regex that is not one. Read in pages, each searched by
    polars: the answers never sit in memory all at once."""
    if regex and (why := grid.pattern_error(query)) is not None:
        raise grid.BadPattern(why)
    results = store(url).results
    found: set[str] = set()
    schema = {"custom_id": pl.String, "text": pl.String}
    for pages in (results.prompt_text_pages(batch_id), results.answer_text_pages(batch_id)):
        for rows in pages:
            frame = pl.DataFrame(rows, schema=schema, orient="row")
            ids = frame.select(pl.col("custom_id").alias("text"), "custom_id")
            found.update(grid.matching(frame, query, regex).to_list())
            found.update(grid.matching(ids, query, regex).to_list())
    return sorted(found)

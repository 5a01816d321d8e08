"""The Outputs grid's logic, apart from drawing: which jobs a filter and a search keep, one page
of them, how an answer is cut and pretty-printed, and a diff of two answers.

Everything over a whole batch is polars over the frames ``data`` already keeps (requests,
grades) or one grouped SQL read (``griddata``); answers' text is read only for the page shown.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import polars as pl

from batchrun import analytics
from batchrun.grading.report import disagreements

PREVIEW = 280  # characters of an answer shown in its cell before "more"
PAGE_SIZES = (10, 25, 50, 100)

# The filters, as the page names them; a job must meet every one chosen.
FAILED = "a grade failed"
PASSED = "every grade passed"
ERRORED = "a model errored"
DISAGREE = "models disagree"
DIFFER = "answers differ"
FILTERS = (FAILED, PASSED, ERRORED, DISAGREE, DIFFER)


class BadPattern(ValueError):
    """A search the user typed as a regular expression that is not one."""


def pattern_error(pattern: str) -> str | None:
    """Why ``pattern`` is not a regular expression polars can search with; None when it is."""
    try:
        pl.Series([""]).str.contains(pattern)
    except pl.exceptions.PolarsError as exc:
        first = str(exc).strip().splitlines()
        return first[-1] if first else "not a regular expression"
    return None


def matching(frame: pl.DataFrame, query: str, regex: bool) -> pl.Series:
    """The custom_ids of rows (custom_id, text) whose text holds ``query``: as text
    (case-insensitive) or as a regular expression (polars' syntax)."""
    if regex:
        found = pl.col("text").str.contains(query)
    else:
        found = pl.col("text").str.to_lowercase().str.contains(query.lower(), literal=True)
    return frame.filter(found.fill_null(False)).get_column("custom_id").unique()


def jobs(
    requests: pl.DataFrame,
    grades: pl.DataFrame,
    chosen: Collection[str] = (),
    differing: Sequence[str] = (),
    searched: Sequence[str] | None = None,
) -> pl.DataFrame:
    """The jobs (custom_id, failed_models, answered_models) that meet every chosen filter and the
    search (None: no search), in custom_id order."""
    table = analytics.job_spread(requests).select("custom_id", "failed_models", "answered_models")
    judged = grades.filter(pl.col("passed").is_not_null())
    if FAILED in chosen:
        table = table.filter(pl.col("custom_id").is_in(_ids(judged.filter(~pl.col("passed")))))
    if PASSED in chosen:
        verdicts = judged.group_by("custom_id").agg(pl.col("passed").all().alias("all_passed"))
        table = table.filter(pl.col("custom_id").is_in(_ids(verdicts.filter("all_passed"))))
    if ERRORED in chosen:
        table = table.filter(pl.col("failed_models") > 0)
    if DISAGREE in chosen:
        table = table.filter(pl.col("custom_id").is_in(_ids(disagreements(grades))))
    if DIFFER in chosen:
        table = table.filter(pl.col("custom_id").is_in(list(differing)))
    if searched is not None:
        table = table.filter(pl.col("custom_id").is_in(list(searched)))
    return table


def _ids(frame: pl.DataFrame) -> list[str]:
    return frame.get_column("custom_id").unique().to_list()


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the grid: its number (from 1), how many there are, and its custom_ids."""

    number: int
    count: int
    custom_ids: list[str]


def page_of(table: pl.DataFrame, number: int, size: int) -> Page:
    """Page ``number`` (clamped to those there are) of ``size`` jobs."""
    count = max(1, -(-table.height // size))
    number = min(max(1, number), count)
    ids = table.get_column("custom_id").slice((number - 1) * size, size).to_list()
    return Page(number=number, count=count, custom_ids=ids)


def pretty(text: str) -> tuple[str, bool]:
    """An answer as shown: a JSON object or array pretty-printed (and True), else as written."""
    stripped = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*\n(.*)\n```", stripped, re.DOTALL)
    body = fenced.group(1) if fenced else stripped
    if body[:1] in ("{", "["):
        try:
            return json.dumps(json.loads(body), indent=2, ensure_ascii=False), True
        except ValueError:
            pass
    return text, False


def preview(text: str, limit: int = PREVIEW) -> tuple[str, bool]:
    """The start of an answer for its cell, and whether it was cut."""
    if len(text) <= limit:
        return text, False
    return text[:limit].rstrip() + " …", True


def diff(first: str, second: str, first_name: str, second_name: str) -> str:
    """A unified diff of two answers, line by line, as plain text ("" when they are the same)."""
    lines = difflib.unified_diff(
        first.splitlines(), second.splitlines(), first_name, second_name, lineterm=""
    )
    return "\n".join(lines)


def prompt_text(params: dict[str, object]) -> str:
    """A job's prompt as one plain text: the system prompt, then each message by role."""
    parts = []
    system = params.get("system")
    if system:
        parts.append(f"[system]\n{_content(system)}")
    messages = params.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict):
            parts.append(f"[{message.get('role', '?')}]\n{_content(message.get('content', ''))}")
    return "\n\n".join(parts)


def _content(content: object) -> str:
    if isinstance(content, str):
        return content
    blocks = content if isinstance(content, list) else []
    return "\n\n".join(
        str(b.get("text", "")) if b.get("type") == "text" else f"[{b.get('type', 'block')}]"
        for b in blocks
        if isinstance(b, dict)
    )

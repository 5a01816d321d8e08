"""Outputs side by side: the grid (``gridview``: every job by every model, paged), then one job's
prompt and each model's answer in its own column.

Prompts, answers, thinking, errors and judge reasons are shown as plain text (``st.text``); a
toggle draws the answers' Markdown with images and links as text (``text.rendered_html``)."""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from batchrun import analytics
from batchrun.api.stream import EMPTY_REPLY, THINK_LEAKED
from batchrun.dashboard import data, tables
from batchrun.dashboard.text import literal, rendered_html, shown
from batchrun.dashboard.views import gridview
from batchrun.dashboard.views.common import pick_batch
from batchrun.grading.report import disagreements

SHOWN_JOBS = 500  # jobs offered in the picker after filtering


def render(source: data.Source) -> None:
    """The outputs page: the grid of every job and model, then one job at a time (both shown:
    a tab would hide the one-job view from the browser, as it is the page's end)."""
    st.title("Outputs side by side")
    batch = pick_batch(data.batches(source.url), key="outputs_batch")
    if batch["simulated"]:
        st.warning("Simulated batch: these answers come from batchrun's simulator, not MiniMax.")
    st.subheader("Every job by every model")
    gridview.render(source, batch)
    st.divider()
    st.subheader("One job")
    _one_job(source, batch)


def _one_job(source: data.Source, batch: dict[str, Any]) -> None:
    """One job's prompt, then each model's answer in its own column."""
    custom_ids = _jobs(source, batch)
    if not custom_ids:
        st.info("No job matches. Clear the search or the filters.")
        return
    custom_id = st.selectbox("Job (custom_id)", custom_ids, key="outputs_job")
    answers = data.answers(source.url, batch["id"], custom_id or custom_ids[0])
    if answers:
        _prompt(answers[0]["params"])
    graded = data.grades(source.url, (batch["id"],))
    rendered = st.toggle(
        "Render answers as Markdown",
        key="outputs_rendered",
        help="Off: each answer is shown exactly as the model wrote it. On: its Markdown is "
        "drawn, but images and links are shown as text with their address and never loaded.",
    )
    columns = st.columns(max(1, len(answers)))
    for column, answer in zip(columns, answers, strict=True):
        with column:
            _answer(answer, rendered)
            if answer["request_id"] is not None:  # only answers are graded
                _grades(graded.filter(pl.col("request_id") == answer["request_id"]))


def _jobs(source: data.Source, batch: dict[str, Any]) -> list[str]:
    """The custom_ids to offer: searched, filtered and ordered as the controls say."""
    search = st.text_input("Search custom_id or prompt text", key="outputs_search")
    failed_only = st.checkbox("Only jobs where a model failed", key="outputs_failed")
    by_spread = st.checkbox("Answers that differ most in length first", key="outputs_spread")
    disagree = st.checkbox("Only jobs where the models' grades disagree", key="outputs_disagree")
    spread = data.memo(analytics.job_spread, data.requests(source.url, (batch["id"],)))
    if disagree:
        split = disagreements(data.grades(source.url, (batch["id"],)))
        spread = spread.filter(pl.col("custom_id").is_in(split.get_column("custom_id").to_list()))
    if search:
        found = [j["custom_id"] for j in data.find_jobs(source.url, batch["id"], search)]
        spread = spread.filter(pl.col("custom_id").is_in(found))
    if failed_only:
        spread = spread.filter(pl.col("failed_models") > 0)
    if by_spread:
        spread = spread.sort("length_spread", "custom_id", descending=[True, False])
    st.caption(f"{spread.height:,} jobs match; the first {min(spread.height, SHOWN_JOBS):,} "
               "are offered.")  # fmt: skip
    return spread.get_column("custom_id").head(SHOWN_JOBS).to_list()


def _prompt(params: dict[str, Any]) -> None:
    st.subheader("Prompt")
    system = params.get("system")
    if system:
        st.markdown("**system**")
        st.text(_text_of(system))
    for message in params.get("messages", []):
        st.markdown(f"**{shown(message.get('role', '?'))}**")
        st.text(_text_of(message.get("content", "")))


def _answer(answer: dict[str, Any], rendered: bool) -> None:
    st.subheader(shown(answer["model"]))
    if answer["status"] != "succeeded":
        kind = answer["error_type"] or answer["status"]
        st.error(f"{shown(answer['status'])}: {shown(kind)}")
        if answer["error_message"]:
            st.text(answer["error_message"])
        st.caption(f"attempts: {answer['attempts']}")
        return
    st.caption(
        f"{answer['output_tokens']:,} output tokens · {answer['done_s']:.2f} s · "
        f"{tables.money(answer['cost_nanos'])} · attempts: {answer['attempts']}"
        + (" · simulated" if answer["simulated"] else "")
        + "".join(f" · {_FLAG_NOTES[f]}" for f in (answer.get("flags") or "").split(",") if f)
    )
    if answer["thinking"]:
        with st.expander("Thinking", expanded=False):
            st.text(answer["thinking"])
    if not answer["text"]:
        st.caption("(no text)")
    elif rendered:
        st.html(rendered_html(answer["text"]))
    else:
        st.text(answer["text"])
    for block in answer["message"].get("content") or []:  # MiniMax may send content: null
        if block.get("type") == "tool_use":
            st.markdown(f"**tool call** {literal(str(block.get('name')))}")
            st.json(block.get("input", {}))


_FLAG_NOTES = {
    THINK_LEAKED: "reasoning sent as text in `<think>` (shown under Thinking, not in the answer)",
    EMPTY_REPLY: "empty reply: the model returned no content",
}


def _grades(grades: pl.DataFrame) -> None:
    """Each grader's verdict on one answer, with its reason."""
    for grade in grades.sort("grader").iter_rows(named=True):
        if grade["error"]:
            st.caption(f"grade ({shown(grade['grader'])}): could not grade:")
            st.text(grade["error"])
            continue
        verdict = ":green[passed]" if grade["passed"] else ":red[failed]"
        st.markdown(f"**{verdict}** · {shown(grade['grader'])} · score {grade['score']:.2f}")
        if grade["reason"]:
            st.text(grade["reason"])


def _text_of(content: Any) -> str:
    """Text of a string or a list of content blocks; other blocks are named, not dumped."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif isinstance(block, dict):
            parts.append(f"[{block.get('type', 'block')}]")
    return "\n\n".join(parts)

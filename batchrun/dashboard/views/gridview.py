"""The Outputs grid: jobs as rows, models as columns, one page of jobs at a time.

Each cell: the start of the answer (raw, or rendered through ``text.rendered_html``; JSON
pretty-printed), its verdicts, tokens, latency, TTFT, tps and cost. Under the grid, one viewer
shows the cell chosen in it whole (its prompt and answer, or its error) with the form to rate
it: one popover per cell was a fifth of the page's elements. The filters and the search pick
jobs over the whole batch (polars over the cached frames, a grouped SQL read, a paged search);
the answers' text is read only for the page shown.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from batchrun.dashboard import data, grid, griddata, tables
from batchrun.dashboard.text import literal, rendered_html, shown
from batchrun.dashboard.views.common import sent_between
from batchrun.status import RequestStatus

# The view's state in the address: widget key -> query parameter (app.py has "page",
# common.linked_batch "batch").
URL = {
    "grid_search": "q",
    "grid_regex": "re",
    "grid_filters": "only",
    "grid_size": "per",
    "grid_page": "at",
    "grid_rendered": "md",
    "grid_cell_job": "job",
    "grid_cell_model": "model",
}
SLUGS = {
    grid.FAILED: "failed",
    grid.PASSED: "passed",
    grid.ERRORED: "errored",
    grid.DISAGREE: "disagree",
    grid.DIFFER: "differ",
}


def _from_url() -> None:
    """Once per session: the controls as the address sets them (a link to this very view)."""
    st.session_state.setdefault("grid_size", 25)  # the widget then takes no default of its own
    if st.session_state.get("grid_url_read"):
        return
    st.session_state["grid_url_read"] = True
    asked = st.query_params
    state = st.session_state
    if asked.get("q"):
        state["grid_search"] = asked["q"]
    if asked.get("re") == "1":
        state["grid_regex"] = True
    if asked.get("md") == "1":
        state["grid_rendered"] = True
    if asked.get("only"):
        by_slug = {slug: name for name, slug in SLUGS.items()}
        state["grid_filters"] = [by_slug[s] for s in asked["only"].split(",") if s in by_slug]
    size = asked.get("per", "")
    if size.isdigit() and int(size) in grid.PAGE_SIZES:
        state["grid_size"] = int(size)
    at = asked.get("at", "")
    if at.isdigit() and int(at) >= 1:
        state["grid_page"] = int(at)
    for key in ("grid_cell_job", "grid_cell_model"):  # kept if on the page (``_chosen_cell``)
        if asked.get(URL[key]):
            state[key] = asked[URL[key]]


def _to_url(batch: dict[str, Any]) -> None:
    """The controls written back to the address (defaults left out), with the batch's name."""
    state = st.session_state
    wanted = {
        "batch": batch["name"],
        "q": state.get("grid_search") or "",
        "re": "1" if state.get("grid_regex") else "",
        "md": "1" if state.get("grid_rendered") else "",
        "only": ",".join(SLUGS[f] for f in state.get("grid_filters") or []),
        "per": "" if state.get("grid_size", 25) == 25 else str(state.get("grid_size")),
        "at": "" if state.get("grid_page", 1) == 1 else str(state.get("grid_page")),
        **_cell_in_url(),
    }
    for name, value in wanted.items():
        if value and st.query_params.get(name) != value:
            st.query_params[name] = value
        elif not value and name in st.query_params:
            del st.query_params[name]


def render(source: data.Source, batch: dict[str, Any]) -> None:
    """The grid of one batch."""
    _from_url()
    try:
        _grid(source, batch)
    finally:
        _to_url(batch)


RANGE_HELP = (
    "The grid shows the jobs with a request sent on these days, and those not sent yet; each "
    "such job with every model's answer."
)


def _grid(source: data.Source, batch: dict[str, Any]) -> None:
    requests = data.requests(source.url, (batch["id"],))
    graded = data.grades(source.url, (batch["id"],))
    models = sorted(requests.get_column("model").unique().to_list())
    sent = sent_between(requests, key="grid_range", help=RANGE_HELP)
    table = _chosen_jobs(source, batch, sent, graded)
    if table is None:
        return
    size_column, page_column, caption_column = st.columns([1, 1, 3])
    size = size_column.selectbox("Jobs per page", grid.PAGE_SIZES, key="grid_size")
    count = max(1, -(-table.height // size))
    if st.session_state.get("grid_page", 1) > count:  # fewer pages now (a filter, the URL)
        st.session_state["grid_page"] = count
    number = page_column.number_input(
        f"Page (of {count:,})", min_value=1, max_value=count, step=1, key="grid_page"
    )
    page = grid.page_of(table, int(number), size)
    caption_column.caption(
        f"{table.height:,} jobs match · page {page.number:,} of {page.count:,} · "
        f"{len(models)} models"
    )
    if not page.custom_ids:
        st.info("No job matches. Clear the search or the filters.")
        return
    rendered = st.toggle(
        "Render the grid's answers as Markdown",
        key="grid_rendered",
        help="Off: answers as the model wrote them. On: Markdown drawn, with images and links "
        "shown as text with their address, never loaded.",
    )
    answers = griddata.page_answers(source.url, batch["id"], tuple(page.custom_ids))
    figures = _figures(requests, answers)
    ids = [a["request_id"] for a in answers]
    graded = graded.filter(pl.col("request_id").is_in(ids))  # once, not per cell
    rater = _Rater(source.url, batch["id"], [a["request_id"] for a in answers])
    _draw(page.custom_ids, models, answers, figures, graded, rendered, rater)
    _whole(page.custom_ids, models, answers, figures, rendered, rater)
    _diff(page.custom_ids, models, answers)


def _chosen_jobs(
    source: data.Source, batch: dict[str, Any], requests: pl.DataFrame, graded: pl.DataFrame
) -> pl.DataFrame | None:
    """The filters and the search; None (with a message) when the search is not valid."""
    search_column, regex_column = st.columns([4, 1])
    query = search_column.text_input(
        "Search prompts and answers (and custom_id)", key="grid_search"
    )
    regex = regex_column.toggle("Regular expression", key="grid_regex")
    chosen = st.multiselect("Only jobs where", grid.FILTERS, key="grid_filters")
    searched = None
    if query:
        try:
            searched = griddata.search(source.url, batch["id"], query, regex)
        except grid.BadPattern as exc:
            st.error("The search is not a regular expression (turn off “Regular expression” to "
                     f"search for the text as typed): {literal(str(exc))}")  # fmt: skip
            return None
    differing = griddata.differing(source.url, batch["id"]) if grid.DIFFER in chosen else []
    return grid.jobs(requests, graded, chosen, differing, searched)


def _figures(requests: pl.DataFrame, answers: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per request on the page: tokens, latency, TTFT, tps and cost, from the cached frame."""
    ids = [a["request_id"] for a in answers]
    rows = requests.filter(pl.col("request_id").is_in(ids)).select(
        "request_id", "output_tokens", "latency_s", "ttft_s", "output_tps", "cost_nanos"
    )
    return {row["request_id"]: row for row in rows.iter_rows(named=True)}


def _draw(  # noqa: PLR0917 (the page's parts, each named)
    custom_ids: list[str],
    models: list[str],
    answers: list[dict[str, Any]],
    figures: dict[int, dict[str, Any]],
    graded: pl.DataFrame,
    rendered: bool,
    rater: _Rater,
) -> None:
    cells = {(a["custom_id"], a["model"]): a for a in answers}
    prompts = {a["custom_id"]: a["params"] for a in answers}
    widths = [2] + [3] * len(models)
    header = st.columns(widths)
    header[0].markdown("**Job**")
    for column, model in zip(header[1:], models, strict=True):
        column.markdown(f"**{shown(model)}**")
    for custom_id in custom_ids:
        # A bordered box per job, not a divider between jobs: a box is a layout block, a
        # divider one more element for the browser to draw (25 on a page of 25 jobs).
        row = st.container(border=True).columns(widths)
        with row[0]:
            st.markdown(shown(custom_id))
            st.text(grid.preview(grid.prompt_text(prompts.get(custom_id) or {}))[0])
        for column, model in zip(row[1:], models, strict=True):
            with column:
                answer = cells.get((custom_id, model))
                if answer is None:
                    st.caption("not asked")
                    continue
                _cell(answer, figures.get(answer["request_id"], {}), graded, rendered)
                rater.comment(answer["request_id"])


def _cell(
    answer: dict[str, Any], figures: dict[str, Any], graded: pl.DataFrame, rendered: bool
) -> None:
    if answer["status"] != RequestStatus.SUCCEEDED:
        _error_head(answer)
        if answer["error_message"]:
            st.text(grid.preview(answer["error_message"])[0])
        return
    verdicts = graded.filter(pl.col("request_id") == answer["request_id"]).sort("grader")
    marks = [
        (":orange[could not grade]" if g["error"] else
         ":green[passed]" if g["passed"] else ":red[failed]") + f" {shown(g['grader'])}"
        for g in verdicts.iter_rows(named=True)
    ]  # fmt: skip
    if marks:
        st.markdown(" · ".join(marks))
    st.caption(_figure_line(figures))
    _answer_text(answer, rendered, whole=False)


def _error_head(answer: dict[str, Any]) -> None:
    """A failed answer's status and kind of error, in red (the cell's, and the viewer's)."""
    kind = answer["error_type"] or answer["status"]
    st.markdown(f":red[**{shown(answer['status'])}**] · {shown(kind)}")


def _answer_text(answer: dict[str, Any], rendered: bool, *, whole: bool) -> None:
    """An answer's text: pretty-printed when JSON, its Markdown drawn when ``rendered`` (never
    loading an image or a link), cut to a preview unless ``whole``."""
    text, is_json = grid.pretty(answer["text"] or "")
    if not text:
        st.caption("(no text)")
        return
    shown_text = text if whole else grid.preview(text)[0]
    if rendered and not is_json:
        st.html(rendered_html(shown_text))
        return
    if is_json:
        st.caption("JSON, pretty-printed")
    st.text(shown_text)


def _whole(  # noqa: PLR0917 (the page's parts, each named)
    custom_ids: list[str],
    models: list[str],
    answers: list[dict[str, Any]],
    figures: dict[int, dict[str, Any]],
    rendered: bool,
    rater: _Rater,
) -> None:
    """One cell of the page, chosen by job and model, whole: its prompt beside its answer (or
    error), as plain text or with the grid's Markdown drawn; then the form to rate it."""
    st.divider()
    st.subheader("Whole answer")
    st.caption(
        f"The grid's cells show the first {grid.PREVIEW} characters (cut with …). Choose a job "
        "and a model of this page to read its prompt and answer whole, and to rate or comment "
        "the answer."
    )
    job_column, model_column = st.columns(2)
    _keep_choice("grid_cell_job", custom_ids)
    _keep_choice("grid_cell_model", models)
    custom_id = job_column.selectbox("Job", custom_ids, key="grid_cell_job") or custom_ids[0]
    model = model_column.selectbox("Model", models, key="grid_cell_model") or models[0]
    st.session_state["grid_cell_first"] = (custom_ids[0], models[0])  # left out of the address
    cells = {(a["custom_id"], a["model"]): a for a in answers}
    answer = cells.get((custom_id, model))
    if answer is None:
        st.caption(f"{shown(model)} was not asked this job.")
        return
    prompt_column, answer_column = st.columns(2)
    with prompt_column:
        st.markdown("**Prompt**")
        st.text(grid.prompt_text(answer["params"] or {}))
    with answer_column:
        st.markdown(f"**{shown(model)}**")
        if answer["status"] != RequestStatus.SUCCEEDED:
            _error_head(answer)
            st.text(answer["error_message"] or "(no error message)")
            return
        st.caption(_figure_line(figures.get(answer["request_id"], {})))
        _answer_text(answer, rendered, whole=True)
    st.markdown("**Rate or comment this answer** (a rating counts as the *human* grade)")
    rater.form(answer["request_id"])


def _keep_choice(key: str, options: list[str]) -> None:
    """Forget a chosen job or model that is not on this page (another page, a filter, the
    address): the selectbox then starts at the first."""
    if st.session_state.get(key) not in options:
        st.session_state.pop(key, None)


def _cell_in_url() -> dict[str, str]:
    """The whole-answer viewer's job and model for the address; each left out at its default
    (the page's first)."""
    state = st.session_state
    first = state.get("grid_cell_first") or (None, None)
    job, model = state.get("grid_cell_job"), state.get("grid_cell_model")
    return {
        "job": job if job and job != first[0] else "",
        "model": model if model and model != first[1] else "",
    }


RATINGS = {"no rating": None, "good": 1, "bad": -1}


class _Rater:
    """Rating and commenting the answers of one page (stored in ``ratings``, and as the
    "human" grade)."""

    def __init__(self, url: str, batch_id: str, request_ids: list[int]) -> None:
        self.url = url
        self.batch_id = batch_id
        self.rated = data.store(url).ratings.of(request_ids)

    def comment(self, request_id: int) -> None:
        """An answer's comment, in its cell (its rating shows as the "human" verdict)."""
        rated = self.rated.get(request_id)
        if rated and rated["comment"]:
            st.caption("comment:")
            st.text(rated["comment"])

    def form(self, request_id: int) -> None:
        """A form to change one answer's rating and comment."""
        rated = self.rated.get(request_id)
        names = list(RATINGS)
        now = next((n for n, v in RATINGS.items() if rated and v == rated["rating"]), names[0])
        with st.form(key=f"grid_rate_{request_id}", border=False):
            choice = st.radio(
                "Rating", names, index=names.index(now), horizontal=True,
                key=f"grid_rating_{request_id}",
            )  # fmt: skip
            comment = st.text_area(
                "Comment", value=rated["comment"] if rated else "", key=f"grid_comment_{request_id}"
            )
            if st.form_submit_button("Save"):
                data.store(self.url).ratings.rate(
                    self.batch_id, request_id, RATINGS[choice or names[0]], comment
                )
                data.grades.clear()  # the rating is the "human" grade: show it now
                st.rerun()


def _figure_line(figures: dict[str, Any]) -> str:
    def number(key: str, unit: str, digits: int) -> str:
        value = figures.get(key)
        return ("-" if value is None else f"{value:,.{digits}f}") + unit

    return " · ".join(
        (
            number("output_tokens", " tok", 0),
            number("latency_s", " s", 2),
            "TTFT " + number("ttft_s", " s", 2),
            number("output_tps", " tok/s", 0),
            tables.money(figures.get("cost_nanos")),
        )
    )


def _diff(custom_ids: list[str], models: list[str], answers: list[dict[str, Any]]) -> None:
    """A unified diff (difflib) of two models' answers to one job of the page, as plain text."""
    if len(models) < 2:
        return
    st.divider()
    st.subheader("Diff of two answers")
    job_column, first_column, second_column = st.columns(3)
    custom_id = job_column.selectbox("Job", custom_ids, key="grid_diff_job")
    first = first_column.selectbox("Model", models, index=0, key="grid_diff_a")
    second = second_column.selectbox("Against", models, index=1, key="grid_diff_b")
    texts = {a["model"]: a["text"] for a in answers if a["custom_id"] == custom_id}
    if texts.get(first) is None or texts.get(second) is None:
        st.info("One of these models has no answer to this job.")
        return
    shown_diff = grid.diff(texts[first] or "", texts[second] or "", first, second)
    if not shown_diff:
        st.caption("The two answers are the same text.")
    else:
        st.text(shown_diff)

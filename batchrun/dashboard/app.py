"""The dashboard's entry point: which database, which page, and a clear word when there is
nothing to show yet.

Live: while a batch the page shows is running, the page is a fragment that reruns by itself
every ``data.TTL`` seconds (its figures come from data.py's caches, which read a running batch
again at most that often); once none is running, one full run draws it without the timer, and
nothing reruns until the person does something.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import streamlit as st

from batchrun.config import read_environment
from batchrun.dashboard import data
from batchrun.dashboard.text import literal
from batchrun.dashboard.views import batch, common, compare, outputs, overview, spend
from batchrun.exceptions import StoreError
from batchrun.store import database_url, redact_url

Page = Callable[[data.Source], None]

PAGES: dict[str, tuple[str, Page]] = {
    "overview": ("Overview", overview.render),
    "compare": ("Compare models", compare.render),
    "outputs": ("Outputs side by side", outputs.render),
    "spend": ("Spend", spend.render),
    "batch": ("Batch detail", batch.render),
}

FIRST_BATCH = """\
**No batches in {label} yet.** Run a first batch, then reload this page:

```
batchrun run jobs/demo.jsonl --models MiniMax-M2.7,MiniMax-M2.7-highspeed,MiniMax-M3
```

Without an API key, `batchrun run` answers with its built-in MiniMax simulator (the results are
labelled simulated). With `MINIMAX_API_KEY` set it calls MiniMax. To read another database,
start the dashboard with `batchrun dashboard --db PATH-OR-URL`.
"""


def source_from(argv: Sequence[str]) -> data.Source:
    """The database: ``--db`` after ``--`` on the streamlit command line, else BATCHRUN_DB, else
    ./batchrun.db."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--db", default=None)
    known, _ = parser.parse_known_args(list(argv))
    url = database_url(known.db or read_environment().db)
    return data.Source(url=url, label=redact_url(url))


def choose_page() -> str:
    """The page picked in the sidebar; ``?page=`` in the address opens one directly.

    The address is read once per session, into the radio's state: a default (``index``) that
    followed the address made the radio a new widget after each move, back on that default, so
    every second click in the sidebar was lost."""
    slugs = list(PAGES)
    if "nav_page" not in st.session_state:
        asked = st.query_params.get("page", "overview")
        st.session_state["nav_page"] = asked if asked in slugs else slugs[0]
    chosen = st.sidebar.radio(
        "Page", slugs, key="nav_page", format_func=lambda slug: PAGES[slug][0]
    )
    st.query_params["page"] = chosen
    return chosen


def main(argv: Sequence[str] | None = None) -> None:
    """Render the dashboard."""
    st.set_page_config(page_title="batchrun", page_icon=":bar_chart:", layout="wide")
    source = source_from(sys.argv[1:] if argv is None else argv)
    slug = choose_page()
    st.sidebar.caption(f"Database: {literal(source.label)}")
    if source.missing():
        st.title(PAGES[slug][0])
        st.info(FIRST_BATCH.format(label=literal(source.label)))
        return
    try:
        if not data.batches(source.url):
            st.title(PAGES[slug][0])
            st.info(FIRST_BATCH.format(label=literal(source.label)))
            return
        live = common.shows_running(data.batches(source.url))
        every = data.TTL if live else None
        st.fragment(run_every=every, key="page")(_page)(slug, source, live)
    except StoreError as exc:
        st.error(f"Could not read the database: {literal(str(exc))}")


def _page(slug: str, source: data.Source, live: bool) -> None:
    """The page; when whether it shows a running batch changed, one full run, which sets the
    page's timer again (or stops it)."""
    PAGES[slug][1](source)
    if common.shows_running(data.batches(source.url)) != live:
        st.rerun()


if __name__ == "__main__":  # `streamlit run` executes this file as __main__
    main()

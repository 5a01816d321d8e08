"""Where a warm dashboard page's time goes in the browser: for each page (opened once, then timed
on its second visit), the seconds until its key figures are drawn (as bench/dashboard_speed.py),
the server's CPU, what came over the websocket (messages, bytes, the largest), how many elements,
charts and tables the page holds, and Chromium's own CPU split (CDP Performance metrics: script,
layout, style, tasks) meanwhile.

    python bench/dashboard_profile.py --db STORE [--pages overview,compare]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from dashboard_speed import KEY_FIGURES, PAGES, TIMEOUT_MS, served, tree_cpu
from playwright.sync_api import Page, WebSocket
from procstat import load

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/browser.py, from a checkout
from tests.browser import browser_page

COUNTS = """() => ({
    elements: document.querySelectorAll('[data-testid="stElementContainer"]').length,
    charts: document.querySelectorAll('.vega-embed').length,
    tables: document.querySelectorAll('[data-testid="stDataFrame"], [data-testid="stTable"]')
        .length,
})"""
CDP = ("ScriptDuration", "LayoutDuration", "RecalcStyleDuration", "TaskDuration")


class Wire:
    """Bytes and messages the browser received over Streamlit's websocket."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.times: list[float] = []

    def attach(self, socket: WebSocket) -> None:
        socket.on("framereceived", self._received)

    def _received(self, payload: str | bytes) -> None:
        self.sizes.append(len(payload))
        self.times.append(time.perf_counter())


def visit(page: Page, address: str, slug: str, pid: int, wire: Wire) -> dict[str, Any]:
    """One timed visit of a page, with what the browser received and did meanwhile."""
    session = page.context.new_cdp_session(page)
    session.send("Performance.enable")
    before = _metrics(session.send("Performance.getMetrics"))
    wire.sizes.clear()
    wire.times.clear()
    cpu = tree_cpu(pid)
    started = time.perf_counter()
    page.goto(f"{address}/?page={slug}", wait_until="commit")
    marks = []
    for selector in KEY_FIGURES[slug]:
        page.locator(selector).first.wait_for(state="visible", timeout=TIMEOUT_MS)
        marks.append(round(time.perf_counter() - started, 2))
    shown = time.perf_counter() - started
    server = tree_cpu(pid) - cpu
    after = _metrics(session.send("Performance.getMetrics"))
    page.wait_for_function(
        "!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT_MS
    )
    done = time.perf_counter() - started
    session.detach()
    return {
        "page": slug,
        "shown s": round(shown, 2),
        "each key figure s": marks,
        "run done s": round(done, 2),
        "server cpu s": round(server, 2),
        "ws messages": len(wire.sizes),
        "first, last message s": [round(wire.times[i] - started, 2) for i in (0, -1)]
        if wire.times
        else [],
        "ws kB": round(sum(wire.sizes) / 1000, 1),
        "largest kB": round(max(wire.sizes, default=0) / 1000, 1),
        **page.evaluate(COUNTS),
        **{f"browser {k.removesuffix('Duration')} s": round(after[k] - before[k], 2) for k in CDP},
    }


def _metrics(answer: dict[str, Any]) -> dict[str, float]:
    return {m["name"]: float(m["value"]) for m in answer["metrics"]}


def main(argv: list[str] | None = None) -> None:
    """Open each page once, then profile its second visit; print one line per page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="SQLite store path")
    parser.add_argument("--pages", default=",".join(PAGES), help="comma-separated pages")
    args = parser.parse_args(argv)
    slugs = args.pages.split(",")
    wire = Wire()
    with served(Path(args.db)) as (address, pid), browser_page() as page:
        page.on("websocket", wire.attach)
        for slug in slugs:  # the first visit of each: fills the server's caches
            visit(page, address, slug, pid, wire)
        for slug in slugs:
            print(visit(page, address, slug, pid, wire), flush=True)
    print(load())


if __name__ == "__main__":
    os.environ.pop("MINIMAX_API_KEY", None)
    main()

"""End to end: `batchrun dashboard` serving a store made by real runs, read in headless Chromium."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from batchrun.pricing import usd
from tests.browser import (
    CHROMIUM,
    PAGES,
    SHOTS,
    _scroll_to,
    browser_page,
    dashboard,
    demo_commands,
    late_scripts,
    show,
)
from tests.dashboardfixtures import MODELS, cache_figures, hostile_store, hostile_texts, seeded_copy
from tests.helpers import db_rows

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="Chromium is not installed (apt-get install chromium); CI installs it",
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seeded_copy(tmp_path_factory, "browser")


@pytest.mark.slow  # a Streamlit server and Chromium, ~20-30 s: make test-slow
def test_the_dashboard_renders_every_page_in_a_browser(seeded: Path, tmp_path: Path) -> None:
    with dashboard(seeded) as address, browser_page() as page:
        shown = {slug: show(page, address, slug, expect) for slug, expect in PAGES.items()}
        page.screenshot(path=str(tmp_path / "batch.png"), full_page=True)
        quality = show(page, address, "compare&batch=graded", "Quality against cost and speed")
        page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    compare = shown["compare"]
    for model in MODELS:
        assert model in compare
    assert "latency p50" in compare  # the scorecard (the full table is drawn on a canvas)
    assert "What these numbers mean" in compare
    # The caching table is HTML (not a canvas): its labels and each model's figures, as computed
    # from the store's rows, are on the page.
    assert "Prompt caching" in compare
    for label in ("cache hit rate", "cached requests", "cache write cost", "cache saving"):
        assert label in compare, label
    for model, figures in cache_figures(seeded, "demo").items():
        for label in ("cache hit rate", "cache saving"):
            assert figures[label] in compare, (model, label, figures[label])
        assert figures["cache saving"].startswith("$")
    assert "Spend" in shown["overview"]
    assert "$" in shown["overview"]
    assert "Simulated data" in shown["overview"]
    assert "Prompt" in shown["outputs"]
    assert "of $5.0000" in shown["spend"]
    [(saved,)] = db_rows(  # the headline is over real results (issue 18): the run with a key
        seeded, "SELECT sum(uncached_cost_nanos - cost_nanos) FROM results WHERE NOT simulated"
    )
    assert f"Cache saving\n\n{usd(int(str(saved)))}" in shown["spend"]  # a metric: label, value
    assert "Cache hit rate" in shown["spend"]
    assert "36 of 36 requests match" in shown["batch"]
    assert "graded (completed, simulated)" in quality  # ?batch= chose it
    assert "Grader" in quality
    for name in ("batch.png", "compare.png"):
        image = (tmp_path / name).read_bytes()
        assert image.startswith(PNG)
        assert len(image) > 20_000  # a drawn page, not a blank one


class Listener:
    """An HTTP server on a free loopback port that counts every request it gets: where the
    hostile text points, so that any fetch the dashboard's page makes of it is seen."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            do_POST = do_HEAD = do_GET

            def log_message(self, format: str, *args: object) -> None:
                del format, args

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Listener:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# Each page over the hostile store, and a text it shows once it has arrived.
HOSTILE_PAGES = {
    "overview": "requests finished",
    "compare": "Quality against cost and speed",
    "outputs": "[click](javascript:alert(1))",
    "spend": "The estimate is the one shown before",
    "batch": "Invalid lines in the file",
}


@pytest.mark.slow  # about 35 s: two runs to make the store, then six page loads
def test_hostile_text_is_shown_as_typed_and_fetches_nothing(tmp_path: Path) -> None:
    with Listener() as listener:
        hostile = hostile_texts(listener.origin)
        db = hostile_store(tmp_path, listener.origin)
        with dashboard(db) as address, browser_page() as page:
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            shown = {slug: show(page, address, slug, expect)
                     for slug, expect in HOSTILE_PAGES.items()}  # fmt: skip
            # The rendered view draws the answer's Markdown, its image and link as text.
            show(page, address, "outputs", HOSTILE_PAGES["outputs"])
            page.get_by_text("Render answers as Markdown").click()
            page.get_by_text("[image: x (").first.wait_for(timeout=30_000)
            page.wait_for_timeout(1000)  # what the page would fetch, it fetches by now
            rendered = page.inner_text("body")
            images = page.eval_on_selector_all("img", "found => found.map(i => i.src)")
            links = page.eval_on_selector_all("a[href]", "found => found.map(a => a.href)")
        time.sleep(0.5)  # a fetch still on its way reaches the listener by now
        hits = list(listener.hits)
    assert hits == [], hits  # the viewer's browser fetched nothing the store named
    elsewhere = [url for url in requested
                 if not url.startswith((address, "data:", "blob:"))]  # fmt: skip
    assert elsewhere == [], elsewhere  # nor anything from any other origin
    assert not [src for src in images if listener.origin in src]
    assert not [href for href in links if listener.origin in href or "javascript:" in href]
    outputs = shown["outputs"]
    for name in ("answer", "error", "reason", "system", "prompt_first",
                 "prompt_second", "error_type"):  # fmt: skip
        assert hostile[name].split("\n")[0] in outputs, name
    assert f"{hostile['prompt_first']}\n{hostile['prompt_second']}" in outputs  # line kept
    assert hostile["model"] in outputs
    assert hostile["batch"] in shown["overview"]  # the running batch's progress
    assert hostile["batch"] in shown["spend"]  # its budget cap
    assert hostile["model"] in shown["batch"]  # the header's models
    assert "**bold**" not in rendered.split("Render answers")[-1]  # drawn as bold
    assert f"[image: x ({listener.origin}/leak?a)]" in rendered
    assert f"<img src={listener.origin}/leak2>" in rendered  # raw HTML shown as text
    left = subprocess.run(["pgrep", "-f", str(db)], capture_output=True, text=True, check=False)
    assert left.stdout == "", f"a dashboard process is left: {left.stdout}"


@pytest.mark.slow  # a second Streamlit and browser, ~20 s; AppTest checks the scorecard
def test_compare_shows_the_scorecard_and_model_names_in_full(seeded: Path) -> None:
    with dashboard(seeded) as address, browser_page() as page:
        compare = show(page, address, "compare", PAGES["compare"])
        # Vega draws Streamlit's charts as SVG: each axis label, legend entry and title a text.
        drawn: list[str] = page.eval_on_selector_all(
            ".vega-embed svg text", "texts => texts.map(t => t.textContent)"
        )  # the cost charts: the bars
        show(page, address, "compare&charts=distributions", "Distributions")
        _scroll_to(page, "Distributions")  # the boxes are drawn once in view
        drawn += page.eval_on_selector_all(
            ".vega-embed svg text", "texts => texts.map(t => t.textContent)"
        )  # the boxes
    # The scorecard is a plain table, above the full one: its labels and figures are on the page.
    assert "Scorecard" in compare
    for label in ("success rate", "latency p50", "TTFT p50", "output tps p50",
                  "cost / 1k requests", "pass rate", "cache saving"):  # fmt: skip
        assert label in compare, label
    assert "(n=12)" in compare  # the demo batch: 12 answers a model, the count beside the median
    assert "Full table: every figure" in compare
    # Chart labels carry the whole name (Streamlit's theme cut it at 100 px): none end in "…".
    # On the latency, TTFT and TTFT (text) boxes and the cost bars (this store has no tps).
    assert drawn.count("MiniMax-M2.7-highspeed") >= 4, sorted(set(drawn))
    assert not [text for text in drawn if text.endswith("…")], sorted(set(drawn))


@pytest.mark.slow  # a third Streamlit and browser, ~20 s; AppTest checks the spend page
def test_the_spend_chart_and_a_batch_stopped_at_its_cap_are_seen(tmp_path: Path) -> None:
    from tests.test_dashboard_spend import AT_CAP, capped_store, pending

    db = capped_store(tmp_path)
    left = pending(db, AT_CAP)
    # The resume command is a code block, whose script Streamlit loads lazily: served 3 s late
    # here, as on a busy CI (where `show` once read the page before it was drawn).
    late = "StreamlitSyntaxHighlighter"
    with (
        dashboard(db) as address,
        browser_page() as page,
        late_scripts(page, late, delay_s=3.0) as delayed,
    ):
        spend = show(page, address, "spend", "stopped at its cap")
        charts = page.locator(".vega-embed").count()
        drawn = page.locator(".vega-embed canvas, .vega-embed svg").count()
        page.screenshot(path=str(tmp_path / "spend.png"), full_page=True)
        overview = show(page, address, "overview", "stopped at its cap")
    assert delayed, f"no {late} script was asked for: Streamlit renamed it? (nothing was delayed)"
    assert charts >= 1
    assert drawn >= 1
    assert f"synthetic-0: stopped at its cap: {left:,} requests pending" in spend
    assert "batchrun resume synthetic-0 --max-cost USD" in spend
    assert "over its cap" in spend  # the overrun, in an error box
    assert "never drawn as $0" in spend
    assert "Unpriced results (not in Spend)" in spend
    assert f"synthetic-0: stopped at its cap: {left:,} requests pending" in overview
    assert (tmp_path / "spend.png").read_bytes().startswith(PNG)


def test_the_screenshots_are_of_the_store_make_demo_builds() -> None:
    commands = demo_commands()
    assert [c[:2] for c in commands] == [
        ["run", "jobs/demo.jsonl"],
        ["run", "jobs/cache-demo.jsonl"],
        ["run", "jobs/graded-sim.jsonl"],
        ["grade", "graded-demo"],
    ]
    assert all("MiniMax-M2.7,MiniMax-M2.7-highspeed,MiniMax-M3" in c for c in commands[:3])
    assert {name for name, *_ in SHOTS} >= {"outputs", "compare", "spend"}

"""End to end: `batchrun dashboard` serving a store made by real runs, read in headless Chromium."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batchrun.pricing import usd
from tests.browser import CHROMIUM, PAGES, browser_page, dashboard, show
from tests.dashboardfixtures import MODELS, cache_figures, seed_store
from tests.helpers import db_rows

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="Chromium is not installed (apt-get install chromium); CI installs it",
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_store(tmp_path_factory.mktemp("browser"))


def test_the_dashboard_renders_every_page_in_a_browser(seeded: Path, tmp_path: Path) -> None:
    with dashboard(seeded) as address, browser_page() as page:
        shown = {slug: show(page, address, slug, expect) for slug, expect in PAGES.items()}
        page.screenshot(path=str(tmp_path / "batch.png"), full_page=True)
        quality = show(page, address, "compare&batch=graded", "Quality against cost and speed")
        page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    compare = shown["compare"]
    for model in MODELS:
        assert model in compare
    assert "Latency" in compare  # a chart title (the table itself is drawn on a canvas)
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

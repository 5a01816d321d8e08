"""The dashboard in a real headless browser: serve it with `batchrun dashboard`, open a page in
Debian's Chromium through Playwright, read what it shows and take a screenshot.

Also the tool that makes README's screenshots, from a store seeded by real runs:

    python -m tests.browser docs/screenshots
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Each page, and the text of its last element (for the seeded store): once that shows, the
# whole page has arrived.
PAGES = {
    "overview": "Results of a model without a price",
    "compare": "Each model one point",
    "outputs": "MiniMax-M3",
    "spend": "The estimate is the one shown before",
    "batch": "Invalid lines in the file",
}
# Extra screenshots: (file name, address query, text to wait for and scroll to).
VIEWS = (("quality", "compare&batch=graded", "Quality against cost and speed"),)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def dashboard(db: Path, timeout: float = 60.0) -> Iterator[str]:
    """`batchrun dashboard --db DB` on a free port; yields its address, stops it afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "batchrun.cli", "dashboard", "--db", str(db),
               "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(address, server, timeout)
        yield address
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        if server.stdout is not None:
            server.stdout.close()


def _wait_healthy(address: str, server: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = server.stdout.read().decode() if server.stdout else ""
            raise RuntimeError(f"the dashboard exited with {server.returncode}:\n{output}")
        try:
            with urllib.request.urlopen(f"{address}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"the dashboard at {address} did not answer within {timeout:.0f}s")


@contextmanager
def browser_page(width: int = 1500, height: int = 1100) -> Iterator[Page]:
    """A page of headless Chromium (Debian's package)."""
    if CHROMIUM is None:
        raise RuntimeError("Chromium is not installed: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def show(page: Page, address: str, slug: str, expect: str, timeout_ms: float = 60_000) -> str:
    """Open one dashboard page, wait until it shows ``expect`` and has finished running; return
    its visible text."""
    page.goto(f"{address}/?page={slug}", wait_until="domcontentloaded")
    page.get_by_text(expect, exact=False).first.wait_for(timeout=timeout_ms)
    # Streamlit shows a "Running..." widget while the script runs; charts draw after that.
    page.wait_for_function(
        "!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms
    )
    if page.locator(".vega-embed").count():
        page.locator(".vega-embed canvas, .vega-embed svg").first.wait_for(timeout=timeout_ms)
    page.wait_for_timeout(800)  # let the last charts paint before a screenshot
    return page.inner_text("body")


def screenshots(out: Path) -> list[Path]:
    """A PNG of every page over a freshly seeded store."""
    from tests.dashboardfixtures import seed_store

    out.mkdir(parents=True, exist_ok=True)
    made = []
    with tempfile.TemporaryDirectory() as work:
        db = seed_store(Path(work), time_scale=1.0)
        with dashboard(db) as address, browser_page() as page:
            for slug, expect in PAGES.items():
                show(page, address, slug, expect)
                path = out / f"{slug}.png"
                page.screenshot(path=str(path), full_page=True)
                made.append(path)
            for name, query, expect in VIEWS:
                show(page, address, query, expect)
                page.get_by_text(expect).first.scroll_into_view_if_needed()
                page.wait_for_timeout(500)
                path = out / f"{name}.png"
                page.screenshot(path=str(path))
                made.append(path)
    return made


if __name__ == "__main__":
    os.environ.pop("MINIMAX_API_KEY", None)
    for made_path in screenshots(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")):
        print(made_path)

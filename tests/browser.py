"""The dashboard in a real headless browser: serve it with `batchrun dashboard`, open a page in
Debian's Chromium through Playwright, read what it shows and take a screenshot.

Also the tool that makes README's screenshots, from the demo store (the commands of the
Makefile's ``demo`` target, run into a temporary directory):

    python -m tests.browser docs/screenshots
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import streamlit
from playwright.sync_api import Page, Route, sync_playwright

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
ROOT = Path(__file__).resolve().parent.parent
# README's screenshots of the demo store: (file name, address query, the text to wait for, and
# whether to scroll it to the top for a shot of the window rather than of the whole page).
SHOTS = (
    ("overview", "overview", "Results of a model without a price", False),
    ("outputs", "outputs", "Every job by every model", True),
    ("compare", "compare", "Scorecard", True),
    ("spend", "spend", "Simulated cost over time (not billed)", True),
    ("batch", "batch", "requests match", False),
    ("quality", "compare&batch=graded-demo", "Quality against cost and speed", True),
)


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
    # Elements whose code Streamlit loads lazily (st.code, st.progress, ...) are a grey skeleton
    # until their script has come: in a fresh browser on a busy machine, for seconds after the
    # page ran (CI once read the Spend page before its `batchrun resume` code block was drawn).
    page.wait_for_function(
        "!document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=timeout_ms
    )
    if page.locator(".vega-embed").count():
        page.locator(".vega-embed canvas, .vega-embed svg").first.wait_for(timeout=timeout_ms)
    page.wait_for_timeout(800)  # let the last charts paint before a screenshot
    return page.inner_text("body")


STATIC_JS = Path(streamlit.__file__).parent / "static" / "static" / "js"


@contextmanager
def late_scripts(page: Page, name: str, delay_s: float) -> Iterator[list[str]]:
    """Serve the page's lazily loaded Streamlit script ``name`` (a file name's start) ``delay_s``
    late, as a busy machine does, from a loopback server of this process, for the block's length;
    yields the scripts it served late (so a test can see the name still matches one)."""

    class Late(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(delay_s)
            body = (STATIC_JS / Path(self.path).name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Late)
    server.daemon_threads = True
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    late = f"http://127.0.0.1:{server.server_address[1]}"

    served: list[str] = []

    def send_late(route: Route) -> None:
        served.append(Path(route.request.url).name)
        route.continue_(url=f"{late}/{served[-1]}")

    page.route(f"**/{name}*.js", send_late)
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        serving.join(timeout=10)


# Streamlit draws the charts, tables and widgets below the fold once scrolled to (a grey
# skeleton until then): true once every chart and table in the window has its canvas (or svg)
# and no skeleton is left in it.
DRAWN_IN_VIEW = """() => {
    const inView = e => {
        const box = e.getBoundingClientRect();
        return box.height > 0 && box.bottom > 0 && box.top < innerHeight;
    };
    const drawn = [...document.querySelectorAll('.vega-embed, [data-testid="stDataFrame"]')]
        .filter(inView).every(e => e.querySelector('canvas, svg'));
    const waiting = [...document.querySelectorAll('[data-testid="stSkeleton"], .stSkeleton')]
        .some(inView);
    return drawn && !waiting;
}"""

# True while the heading is in the window (a page that ran again scrolls back up).
IN_VIEW = """heading => {
    const found = [...document.querySelectorAll('h1, h2, h3')]
        .find(e => e.innerText.trim() === heading);
    const top = found ? found.getBoundingClientRect().top : -1;
    return top >= 0 && top < innerHeight / 2;
}"""


def _scroll_to(page: Page, heading: str, tries: int = 5) -> None:
    """Scroll ``heading`` to the top of the window, and wait until what is in view is drawn and
    stays so for four seconds (a page may run once more after it first finished, redrawing)."""
    for _ in range(tries):
        page.get_by_text(heading, exact=True).first.evaluate(
            "element => element.scrollIntoView({block: 'start'})"
        )
        page.wait_for_function(DRAWN_IN_VIEW, timeout=60_000)
        steady = True
        for _ in range(2):
            page.wait_for_timeout(2000)
            steady = steady and page.evaluate(DRAWN_IN_VIEW) and page.evaluate(IN_VIEW, heading)
        if steady:
            return
    raise TimeoutError(f"the part of the page under {heading!r} was not drawn")


def demo_commands(makefile: Path = ROOT / "Makefile") -> list[list[str]]:
    """The batchrun commands of the Makefile's ``demo`` target, each as its arguments."""
    text = makefile.read_text(encoding="utf-8")
    models = re.search(r"^DEMO_MODELS = (.+)$", text, re.MULTILINE)
    recipe = text.split("\ndemo:", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    lines = [line.strip() for line in recipe if line.strip().startswith("$(BIN)/batchrun ")]
    if models is None or not lines:
        raise RuntimeError(f"{makefile}: no demo target with DEMO_MODELS and batchrun commands")
    return [
        shlex.split(line.replace("$(DEMO_MODELS)", models.group(1).strip()))[1:] for line in lines
    ]


def demo_store(work: Path) -> Path:
    """The store ``make demo`` builds, built in ``work`` (its job files copied there)."""
    from tests.dashboardfixtures import run_cli

    shutil.copytree(ROOT / "jobs", work / "jobs")
    db = work / "batchrun.db"
    for args in demo_commands():
        run_cli(work, *args, "--db", str(db), *(["--yes"] if args[0] == "run" else []))
    return db


def screenshots(out: Path, db: Path | None = None) -> list[Path]:
    """README's screenshots (``SHOTS``) over ``db``, by default a freshly built demo store."""
    out.mkdir(parents=True, exist_ok=True)
    made = []
    with tempfile.TemporaryDirectory() as work:
        db = db or demo_store(Path(work))
        with dashboard(db) as address, browser_page() as page:
            for name, query, expect, scroll in SHOTS:
                show(page, address, query, expect)
                if scroll:
                    _scroll_to(page, expect)
                path = out / f"{name}.png"
                page.screenshot(path=str(path), full_page=not scroll)
                made.append(path)
    return made


if __name__ == "__main__":
    os.environ.pop("MINIMAX_API_KEY", None)
    for made_path in screenshots(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")):
        print(made_path)

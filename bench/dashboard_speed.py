"""The dashboard at scale, as a person waits for it: each page opened in Chromium (Debian's, driven
by Playwright) over a store of N results (default 1,000,000), timed from navigation until its key
figures are drawn (a metric's value, a table, a chart's canvas), with the dashboard server's CPU.

    python bench/dashboard_speed.py [--results 1000000] [--db /tmp/batchrun-synthetic.db]
                                    [--rounds 1] [--out bench/results/dashboard_speed.md] [--force]

Three ways a page is opened by a fresh navigation (a new browser session):
  cold, nothing on disk: a fresh `batchrun dashboard` server, this page first, the frame cache
      next to the store emptied;
  cold: a fresh server, this page first, the frame cache kept from an earlier server;
  warm: one server that has shown every page once; this page opened again (and, as "after
      Overview", each page the first time after Overview was shown);
and one within a session, as a person moves around:
  switch: on that warm server, in the page already open, this page's name clicked in the
      sidebar; timed until its key figures are drawn by this run (not the last page's, which
      Streamlit keeps on screen, greyed, until they are replaced).
The store is made by bench/synthetic_store.py when the file does not exist yet.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from outfile import add_out, check_new, write_table
from playwright.sync_api import Page
from procstat import cpu_seconds, load, machine
from synthetic_store import build

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/browser.py, from a checkout
from batchrun.dashboard.app import PAGES as TITLES  # the sidebar's names are the page titles
from batchrun.dashboard.framecache import cache_dir
from batchrun.store import database_url
from tests.browser import _wait_healthy, browser_page, free_port

PAGES = ("overview", "compare", "outputs", "spend", "batch")
CHART = ".vega-embed canvas, .vega-embed svg"
# What must be drawn before a page counts as shown: its headline figures and its chart or table.
KEY_FIGURES: dict[str, tuple[str, ...]] = {
    "overview": ('[data-testid="stMetricValue"]', CHART),
    "compare": ('[data-testid="stTable"] td', CHART),
    "outputs": ("text=jobs match", "text=Diff of two answers"),
    "spend": ('[data-testid="stMetricValue"]', CHART),
    "batch": ("text=requests match", '[data-testid="stDataFrame"] canvas'),
}
TIMEOUT_MS = 300_000
# An element drawn by the script's current run: Streamlit marks the last run's "stale".
FRESH = '[data-testid="stElementContainer"][data-stale="false"]'
Timing = tuple[float, float]  # seconds until drawn, server CPU seconds meanwhile


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and all its descendants (batchrun dashboard runs streamlit as a
    child)."""
    total = 0.0
    for member in _tree(pid):
        with suppress(OSError):  # it exited meanwhile
            total += cpu_seconds(member)
    return total


def _tree(pid: int) -> Iterator[int]:
    yield pid
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            yield from _tree(int(child))


def open_page(page: Page, address: str, slug: str, pid: int) -> Timing:
    """Navigate to one page; seconds until its key figures are drawn, and the server's CPU."""
    return timed(page, f"{address}/?page={slug}", KEY_FIGURES[slug], pid)


def timed(page: Page, url: str, selectors: tuple[str, ...], pid: int) -> Timing:
    """Navigate to ``url``; seconds until every selector's first match is visible, and the CPU
    of the server ``pid`` meanwhile (bench/dashboard_floor.py times a bare page with it)."""
    cpu = tree_cpu(pid)
    started = time.perf_counter()
    page.goto(url, wait_until="commit")
    for selector in selectors:
        page.locator(selector).first.wait_for(state="visible", timeout=TIMEOUT_MS)
    return time.perf_counter() - started, tree_cpu(pid) - cpu


def fresh(selector: str) -> str:
    """``selector`` (a CSS list or a ``text=`` selector) matched only inside elements of the
    current run."""
    if selector.startswith("text="):
        return f"{FRESH} >> {selector}"
    return ", ".join(f"{FRESH} {part.strip()}" for part in selector.split(","))


def switch(page: Page, slug: str, pid: int) -> Timing:
    """In the open page, click this page's name in the sidebar, as a person does; seconds until
    its title and key figures are drawn by the new run, and the server's CPU meanwhile."""
    title = TITLES[slug][0]
    cpu = tree_cpu(pid)
    started = time.perf_counter()
    page.get_by_test_id("stSidebar").get_by_text(title, exact=True).click()
    page.locator(f"{FRESH} h1", has_text=title).first.wait_for(timeout=TIMEOUT_MS)
    for selector in KEY_FIGURES[slug]:
        page.locator(fresh(selector)).first.wait_for(state="visible", timeout=TIMEOUT_MS)
    return time.perf_counter() - started, tree_cpu(pid) - cpu


@contextmanager
def served(db: Path) -> Iterator[tuple[str, int]]:
    """A fresh `batchrun dashboard` on the store; its address and process id."""
    port = free_port()
    command = [sys.executable, "-m", "batchrun.cli", "dashboard", "--db", str(db),
               "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(address, server, 120)
        yield address, server.pid
    finally:
        for member in reversed(list(_tree(server.pid))):  # streamlit too, whatever SIGTERM does
            with suppress(OSError):
                os.kill(member, 15)
        server.wait(timeout=30)


def cold(db: Path, slug: str, page: Page, *, empty_cache: bool) -> Timing:
    """A fresh server, this page its first."""
    if empty_cache:
        shutil.rmtree(cache_dir(database_url(str(db))), ignore_errors=True)
    with served(db) as (address, pid):
        return open_page(page, address, slug, pid)


Warm = tuple[dict[str, Timing], dict[str, Timing], dict[str, Timing]]


def warm(db: Path, page: Page) -> Warm:
    """One server: each page once after Overview, then each page again, then each page
    switched to in that one open page (from the last one: the first switch leaves Batch detail
    for Overview)."""
    with served(db) as (address, pid):
        first = {slug: open_page(page, address, slug, pid) for slug in PAGES}
        again = {slug: open_page(page, address, slug, pid) for slug in PAGES}
        switched = {slug: switch(page, slug, pid) for slug in PAGES}
    return first, again, switched


WAYS = ("bare", "cold", "first", "warm", "switch")  # the table's columns, in order


def measure(db: Path, rounds: int, *, cold_too: bool = True) -> dict[str, dict[str, list[Timing]]]:
    """Every page every way (the two cold ways unless not ``cold_too``), ``rounds`` times:
    {way: {page: [timing per round]}}."""
    ways: dict[str, dict[str, list[Timing]]] = {w: {s: [] for s in PAGES} for w in WAYS}
    with browser_page() as page:
        for _ in range(rounds):
            for slug in PAGES if cold_too else ():
                ways["bare"][slug].append(cold(db, slug, page, empty_cache=True))
                ways["cold"][slug].append(cold(db, slug, page, empty_cache=False))
            first, again, switched = warm(db, page)
            for slug in PAGES:
                ways["first"][slug].append(first[slug])
                ways["warm"][slug].append(again[slug])
                ways["switch"][slug].append(switched[slug])
    return ways


def _cell(timings: list[Timing]) -> str:
    if not timings:
        return "-"  # not measured (--no-cold)
    seconds = statistics.median(t[0] for t in timings)
    cpu = statistics.median(t[1] for t in timings)
    return f"{seconds:.2f} ({cpu:.1f})"


def report(results: int, rounds: int, ways: dict[str, dict[str, list[Timing]]]) -> str:
    """The markdown table: median seconds until drawn (server CPU seconds) per page and way."""
    rows = [
        f"| {slug} | {' | '.join(_cell(ways[w][slug]) for w in ways)} |"
        if slug != "overview"
        else f"| overview | {_cell(ways['bare'][slug])} | {_cell(ways['cold'][slug])} | "
        f"(first page) | {_cell(ways['warm'][slug])} | {_cell(ways['switch'][slug])} |"
        for slug in PAGES
    ]
    return (
        "\n".join(
            [
                f"{results:,} results; {machine()}; {load()} when done; median of {rounds} "
                "round(s). Seconds from navigation (switch: from the click on the page's name "
                "in the sidebar of the open page) until the page's key figures are drawn in "
                "Chromium (server CPU seconds meanwhile). Targets: cold first page <= 3 s, warm "
                "<= 1 s.",
                "",
                "| page | cold, no frame cache | cold | after Overview | warm (again) | switch |",
                "|---|---:|---:|---:|---:|---:|",
                *rows,
            ]
        )
        + "\n"
    )


def requests_in(db: Path) -> int:
    """The number of requests in the store."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        count: int = connection.execute("SELECT count(*) FROM requests").fetchone()[0]
    return count


def main(argv: list[str] | None = None) -> None:
    """Parse the options, build the store when missing, time the pages, write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=1_000_000, help="requests in a new store")
    parser.add_argument("--db", default="/tmp/batchrun-synthetic.db", help="SQLite store path")
    parser.add_argument("--rounds", type=int, default=1, help="times each page is timed")
    add_out(parser, Path("bench/results/dashboard_speed.md"))
    parser.add_argument(
        "--no-cold",
        action="store_true",
        help="skip the two cold columns (a fresh server per page, and the frame cache emptied: "
        "slow, and it writes the cache again); time only one warm server",
    )
    args = parser.parse_args(argv)
    out, db = args.out, Path(args.db)
    check_new(out, force=args.force)
    if not db.exists():
        print(f"building {args.results:,} requests in {db} ...", flush=True)
        build(database_url(str(db)), args.results)
    table = report(
        requests_in(db), args.rounds, measure(db, args.rounds, cold_too=not args.no_cold)
    )
    write_table(out, table, force=args.force)


if __name__ == "__main__":
    os.environ.pop("MINIMAX_API_KEY", None)
    main()

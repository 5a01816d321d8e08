"""bench/dashboard_speed.py as README runs it: from the repo root, as a script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    """`python bench/dashboard_speed.py ARGS` from the repository root."""
    command = [sys.executable, "bench/dashboard_speed.py", *args]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def in_bench(script: str) -> subprocess.CompletedProcess[str]:
    """``python -c SCRIPT`` in bench/, where the script imports dashboard_speed as the bench
    scripts import each other."""
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT / "bench",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_runs_from_the_repo_root() -> None:
    done = bench("--help")
    assert done.returncode == 0, done.stderr
    for option in ("--results", "--db", "--rounds", "--out", "--force", "--no-cold"):
        assert option in done.stdout


def test_an_existing_table_is_never_replaced_without_force(tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    out.write_text("earlier figures\n")
    done = bench("--out", str(out), "--db", str(tmp_path / "none.db"))
    assert done.returncode != 0
    assert "--force" in done.stderr
    assert out.read_text() == "earlier figures\n"
    assert not (tmp_path / "none.db").exists()  # it stopped before building a store


def test_the_table_has_a_switch_column_and_dashes_what_was_not_measured() -> None:
    """--no-cold leaves the cold columns empty: "-", never a figure; switch is the last."""
    script = (
        "import dashboard_speed as d\n"
        "ways = {w: {s: [] for s in d.PAGES} for w in d.WAYS}\n"
        "for s in d.PAGES:\n"
        "    ways['first'][s].append((2.0, 0.5))\n"
        "    ways['warm'][s].append((1.5, 0.25))\n"
        "    ways['switch'][s].append((0.75, 0.125))\n"
        "print(d.report(10, 1, ways))\n"
    )
    done = in_bench(script)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| page |"))
    assert header.split("|")[-2].strip() == "switch"
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in lines[4:] if "|" in line}
    assert [c.strip() for c in rows["spend"]] == [
        "-",
        "-",
        "2.00 (0.5)",
        "1.50 (0.2)",
        "0.75 (0.1)",
    ]
    assert [c.strip() for c in rows["overview"]] == [
        "-", "-", "(first page)", "1.50 (0.2)", "0.75 (0.1)",
    ]  # fmt: skip


def test_a_switch_waits_for_figures_of_the_new_run_only() -> None:
    """The old page's figures stay on screen, greyed (stale), until replaced: every selector the
    switch waits for is limited to elements of the current run."""
    script = (
        "import dashboard_speed as d\n"
        "for s in d.PAGES:\n"
        "    for sel in d.KEY_FIGURES[s]:\n"
        "        print(d.fresh(sel))\n"
    )
    done = in_bench(script)
    assert done.returncode == 0, done.stderr
    for line in done.stdout.splitlines():
        for part in line.split(" >> ")[0].split(", "):
            assert part.startswith('[data-testid="stElementContainer"][data-stale="false"]')

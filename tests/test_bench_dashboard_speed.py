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


def test_help_runs_from_the_repo_root() -> None:
    done = bench("--help")
    assert done.returncode == 0, done.stderr
    for option in ("--results", "--db", "--rounds", "--out", "--force"):
        assert option in done.stdout


def test_an_existing_table_is_never_replaced_without_force(tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    out.write_text("earlier figures\n")
    done = bench("--out", str(out), "--db", str(tmp_path / "none.db"))
    assert done.returncode != 0
    assert "--force" in done.stderr
    assert out.read_text() == "earlier figures\n"
    assert not (tmp_path / "none.db").exists()  # it stopped before building a store

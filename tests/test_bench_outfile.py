"""bench/outfile.py: a benchmark's table never goes over an existing file unless --force says
so, and every benchmark script that writes one takes both --out and --force."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import outfile  # noqa: E402 - bench/ is not a package: its scripts import each other by name


def test_a_table_is_written_whole_and_an_existing_one_kept(tmp_path: Path) -> None:
    out = tmp_path / "new" / "table.md"
    outfile.write_table(out, ["| a |", "|---|"], force=False)
    assert out.read_text() == "| a |\n|---|\n"
    with pytest.raises(SystemExit, match="exists: choose another --out, or add --force"):
        outfile.write_table(out, ["other"], force=False)
    assert out.read_text() == "| a |\n|---|\n"
    outfile.write_table(out, "replaced\n", force=True)
    assert out.read_text() == "replaced\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["table.md"]  # no partial file left


def test_out_and_force_are_arguments() -> None:
    parser = argparse.ArgumentParser()
    outfile.add_out(parser, Path("bench/results/x.md"))
    args = parser.parse_args(["--force"])
    assert args.out == Path("bench/results/x.md")
    assert args.force


SCRIPTS = sorted(p.name for p in (ROOT / "bench").glob("*.py") if "--out" in p.read_text())


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_with_an_out_file_keeps_an_existing_one(script: str) -> None:
    source = (ROOT / "bench" / script).read_text()
    assert "add_out(parser" in source, f"{script}: give it --out and --force with outfile.add_out"
    assert ".write_text(" not in source, f"{script}: write its table with outfile.write_table"

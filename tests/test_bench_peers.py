"""bench/peers.py's own logic: the table's rows, the targets' ratios, and an --out it keeps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import peers  # noqa: E402 - bench/ is not a package: its scripts import each other by name


def _figures(cpu: float, wall: float, *, asked: int = 100, tokens: int = 50_000) -> peers.Figures:
    return peers.Figures(
        asked=asked,
        cpu=cpu,
        wall=wall,
        rss_mb=100,
        answered=asked,
        completed=asked,
        limited=0,
        output_tokens=tokens,
        load="load 1.00/1.00",
    )


def test_the_targets_compare_batchrun_per_answer_with_the_best_peer_and_the_bare_sdk() -> None:
    results: dict[str, list[peers.Figures] | str] = {
        "batchrun": [_figures(1.0, 2.0)],
        "bare-sdk": [_figures(4.0, 8.0)],
        "curator-anthropic": [_figures(2.0, 4.0)],
        "litellm": [_figures(50.0, 100.0, asked=10)],  # fewer answers: compared per answer
        "curator-litellm": "could not install (pip install): no matching distribution",
    }
    lines = peers.targets(results)
    assert "Curator, anthropic backend" in lines[0]
    assert "= 0.50 (target <= 0.5)" in lines[0]
    assert "= 2.00 (target >= 1.5)" in lines[1]
    assert "batchrun / bare SDK = 0.25" in lines[2]


def test_a_skipped_peer_has_its_reason_in_the_table_and_a_double_answer_is_flagged() -> None:
    skipped = peers.row("curator-litellm", "could not install: no network")
    assert "skipped: could not install: no network" in skipped
    assert skipped.count("|") == 12  # as many cells as the header
    twice = _figures(1.0, 1.0)
    twice = peers.Figures(**{**twice.__dict__, "completed": 101})
    assert "| no: 100 ended, 101 completed |" in peers.row("batchrun", [twice])
    assert "| yes |" in peers.row("batchrun", [_figures(1.0, 1.0)])


def test_an_existing_table_is_kept_without_force(tmp_path: Path) -> None:
    out = tmp_path / "peers.md"
    out.write_text("an earlier table\n")
    done = subprocess.run(
        [sys.executable, str(BENCH / "peers.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode != 0
    assert "add --force" in done.stderr
    assert out.read_text() == "an earlier table\n"


@pytest.mark.parametrize("peer", ["batchrun", "bare-sdk", "curator-anthropic", "litellm"])
def test_every_peer_has_a_label(peer: str) -> None:
    assert peer in peers.LABELS

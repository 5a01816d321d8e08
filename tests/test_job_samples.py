"""The sample job files in jobs/ are valid: users copy them."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.catalog import load_catalog
from batchrun.jobs import JobSpec, ReadOptions, read_jobs

SAMPLES = sorted((Path(__file__).parent.parent / "jobs").glob("*.jsonl"))


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_has_no_invalid_line(path: Path) -> None:
    lines = list(read_jobs(path, load_catalog(), ReadOptions()))
    assert lines
    assert all(isinstance(line, JobSpec) for line in lines), [str(x) for x in lines]
    assert all(not line.invalid_for for line in lines if isinstance(line, JobSpec))


def test_the_samples_cover_both_formats_system_turns_and_tools() -> None:
    names = {path.name for path in SAMPLES}
    assert {"demo.jsonl", "batch-format.jsonl", "shorthand.jsonl", "multi-turn.jsonl"} <= names
    assert "tools.jsonl" in names

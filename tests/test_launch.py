"""Before a run (run/launch.py): each model's limits, and their split between the processes of
``run --processes N``."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.catalog import load_catalog
from batchrun.exceptions import ConfigError
from batchrun.run.launch import LimitOptions, split_limits

M27, M3 = "MiniMax-M2.7", "MiniMax-M3"


def test_limits_are_divided_between_the_processes() -> None:
    catalog = load_catalog()
    options = LimitOptions(rpm={}, tpm={}, concurrency={"*": 9}, account_rpm=900)
    share = split_limits(catalog, [M27, M3], options, 3)
    assert share.rpm == {M27: 166, M3: 66}
    assert share.concurrency == {M27: 3, M3: 3}
    assert share.account_rpm == 300
    assert share.account_tpm is None


def test_catalog_pools_cannot_be_divided(tmp_path: Path) -> None:
    pooled = tmp_path / "catalog.toml"
    pooled.write_text(f'[pools.shared]\nmodels = ["{M27}", "{M3}"]\nrpm = 500\n')
    options = LimitOptions(rpm={}, tpm={}, concurrency={})
    with pytest.raises(ConfigError, match="account-rpm"):
        split_limits(load_catalog(pooled), [M27, M3], options, 2)


def test_every_process_keeps_at_least_one_request_a_minute() -> None:
    options = LimitOptions(rpm={M3: 2}, tpm={}, concurrency={M3: 1})
    share = split_limits(load_catalog(), [M3], options, 3)
    assert share.rpm == {M3: 1}  # never 0: each process must be able to send
    assert share.concurrency == {M3: 1}

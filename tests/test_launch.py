"""Before a run (run/launch.py): each model's limits, and their split between the processes of
``run --processes N``."""

from __future__ import annotations

from pathlib import Path

from batchrun.catalog import load_catalog
from batchrun.run.launch import LimitOptions, limit_settings, split_limits

M27, M3 = "MiniMax-M2.7", "MiniMax-M3"


def test_limits_are_divided_between_the_processes() -> None:
    catalog = load_catalog()
    options = LimitOptions(rpm={}, tpm={}, concurrency={"*": 9}, account_rpm=900)
    share = split_limits(catalog, [M27, M3], options, 3)
    assert share.rpm == {M27: 166, M3: 66}
    assert share.concurrency == {M27: 3, M3: 3}
    assert share.account_rpm == 300
    assert share.account_tpm is None


def test_catalog_pools_are_divided_between_the_processes(tmp_path: Path) -> None:
    pooled = tmp_path / "catalog.toml"
    pooled.write_text(f'[pools.shared]\nmodels = ["{M27}", "{M3}"]\nrpm = 500\ntpm = 90\n')
    catalog = load_catalog(pooled)
    options = LimitOptions(rpm={}, tpm={}, concurrency={})
    share = split_limits(catalog, [M27, M3], options, 2)
    assert share.pool_part == 2
    again = split_limits(catalog, [M27, M3], share, 3)  # a child's own split is never asked for,
    assert again.pool_part == 6  # but it would still divide what it was given
    limits = limit_settings(catalog, [M27, M3], share)  # what each process paces by
    (pool,) = limits[M27].pools
    assert (pool.rpm, pool.tpm) == (250, 45)
    assert limits[M3].pools == (pool,)
    assert pool.source.endswith("1/2 of it in each process")
    (whole,) = limit_settings(catalog, [M27, M3], options)[M27].pools
    assert (whole.rpm, whole.tpm) == (500, 90)  # one process: the catalog's figures


def test_every_process_keeps_at_least_one_request_a_minute() -> None:
    options = LimitOptions(rpm={M3: 2}, tpm={}, concurrency={M3: 1})
    share = split_limits(load_catalog(), [M3], options, 3)
    assert share.rpm == {M3: 1}  # never 0: each process must be able to send
    assert share.concurrency == {M3: 1}

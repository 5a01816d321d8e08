"""Migrations 0013 and 0015 keep their own copies of the tables and the backfills they need: a
later revision that changes ``results`` (and so batchrun.store's tables and aggregates) must not
change what upgrading through them does. (Their backfills are checked against the store's own
sums in tests/test_aggregates.py, on SQLite and PostgreSQL.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

VERSIONS = Path(__file__).resolve().parent.parent / "migrations" / "versions"
# What a migration may import from batchrun: the helpers that make a half-done upgrade complete.
ALLOWED = {"batchrun.store.guarded"}


def batchrun_imports(path: Path) -> set[str]:
    """Every batchrun module the file imports (``from batchrun.store import x`` counts as
    ``batchrun.store.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "batchrun"}


@pytest.mark.parametrize("revision", ["0013", "0015"])  # the two that backfill the aggregates
def test_a_backfilling_migration_uses_no_table_definitions_of_the_current_store(
    revision: str,
) -> None:
    (path,) = VERSIONS.glob(f"{revision}_*.py")
    assert batchrun_imports(path) <= ALLOWED


def test_the_check_sees_an_import_of_the_store_aggregates(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("from batchrun.store import aggregates, guarded\n", encoding="utf-8")
    assert batchrun_imports(path) - ALLOWED == {"batchrun.store.aggregates"}

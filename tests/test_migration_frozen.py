"""Migration 0013 keeps its own copy of the tables and the backfill it needs: a later revision
that changes ``results`` (and so batchrun.store's tables and aggregates) must not change what
upgrading through 0013 does. (Its backfill is checked against the store's own sums in
tests/test_aggregates.py, on SQLite and PostgreSQL.)"""

from __future__ import annotations

import ast
from pathlib import Path

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


def test_migration_0013_uses_no_table_definitions_of_the_current_store() -> None:
    (path,) = VERSIONS.glob("0013_*.py")
    assert batchrun_imports(path) <= ALLOWED


def test_the_check_sees_an_import_of_the_store_aggregates(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("from batchrun.store import aggregates, guarded\n", encoding="utf-8")
    assert batchrun_imports(path) - ALLOWED == {"batchrun.store.aggregates"}

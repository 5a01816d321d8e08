"""Schema operations for migrations that skip what an interrupted migration already made.

An older batchrun ran its migrations on SQLite with every statement committed on its own, so a
process killed mid-migration left some of a revision's tables, indexes or columns in place with
``alembic_version`` still naming the revision before (or empty, or missing). Now every upgrade
is one transaction (``migrate.py``), so a later revision cannot be left half-done; the older
ones are completed instead, by running them again with each step skipped when its object is
there. What
was skipped is kept in the migration's ``config.attributes["found"]``: the store then checks the
whole schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op


def create_table(name: str, *parts: Any) -> None:
    """``op.create_table`` unless the table is there (CREATE TABLE is all or nothing)."""
    if _inspector().has_table(name):
        _found(f"table {name}")
        return
    op.create_table(name, *parts)


def create_index(name: str, table: str, columns: Sequence[str]) -> None:
    """``op.create_index`` unless an index of that name is there."""
    if _has_index(table, name):
        _found(f"index {name}")
        return
    op.create_index(name, table, list(columns), unique=False)


def drop_index(name: str, table: str) -> None:
    """``op.drop_index`` if the index is there (an interrupted run may have dropped it)."""
    if not _has_index(table, name):
        _found(f"index {name} (already dropped)")
        return
    op.drop_index(name, table_name=table)


def add_column(table: str, column: sa.Column[Any]) -> None:
    """``op.add_column`` unless the column is there."""
    if column.name in {found["name"] for found in _inspector().get_columns(table)}:
        _found(f"column {table}.{column.name}")
        return
    op.add_column(table, column)


def _has_index(table: str, name: str) -> bool:
    return any(index["name"] == name for index in _inspector().get_indexes(table))


def _inspector() -> sa.Inspector:
    # A new inspector each time: one caches what it read, and each step changes the schema.
    return sa.inspect(op.get_bind())


def _found(what: str) -> None:
    config = op.get_context().config
    if config is not None:
        config.attributes.setdefault("found", []).append(what)

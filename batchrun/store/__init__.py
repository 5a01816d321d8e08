"""The store: the only package that talks SQL (SQLAlchemy and Alembic).

store.py    the ``Store`` facade every other package uses
tables.py   SQLAlchemy tables; ``migrations/`` (Alembic) evolves them
"""

from batchrun.store.store import (
    AttemptRecord,
    BatchInfo,
    Outcome,
    Store,
    WorkItem,
    alembic_config,
    database_url,
    redact_url,
)

__all__ = [
    "AttemptRecord",
    "BatchInfo",
    "Outcome",
    "Store",
    "WorkItem",
    "alembic_config",
    "database_url",
    "redact_url",
]

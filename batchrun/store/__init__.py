"""The store: the only package that talks SQL (SQLAlchemy and Alembic).

store.py     the ``Store`` facade every other package uses
database.py  the engine, guarded connections (errors as StoreError), URLs
migrate.py   Alembic's configuration and the migration on open (one transaction, locked)
guarded.py   the steps of migrations 0001-0006, which complete what an older batchrun left
rows.py      the dataclasses the store hands out and takes
batches.py, jobs.py, work.py, results.py, grades.py, claims.py, limits.py
             one class per noun, holding its SQL
tables.py    SQLAlchemy tables; ``migrations/`` (Alembic) evolves them
"""

from batchrun.store.database import database_url, redact_url, sqlite_file_missing
from batchrun.store.migrate import alembic_config
from batchrun.store.rows import AttemptRecord, BatchInfo, CostUpdate, Outcome, WorkItem
from batchrun.store.store import Store

__all__ = [
    "AttemptRecord",
    "BatchInfo",
    "CostUpdate",
    "Outcome",
    "Store",
    "WorkItem",
    "alembic_config",
    "database_url",
    "redact_url",
    "sqlite_file_missing",
]

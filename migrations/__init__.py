"""Alembic migrations of the store, shipped in the wheel as ``batchrun.migrations``."""

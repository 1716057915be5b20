"""Alembic environment and versions of the store schema (run programmatically by `planner.store.database`)."""

"""Alembic migrations: every schema change, from the first table on."""

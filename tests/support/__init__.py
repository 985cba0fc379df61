"""Test-support helpers for the alembic-fleet test suite (throwaway PostgreSQL clusters)."""

"""The operations behind the alembic_* modules: upgrade, downgrade, stamp, verify, status and drift."""

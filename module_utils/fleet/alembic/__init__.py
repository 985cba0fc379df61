"""Alembic in process: the run, the revision graph, target grammar and a revision file's source."""

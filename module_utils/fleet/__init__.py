"""alembic-fleet's shared code, a package per domain in one-way layers (docs/development.md, Architecture):
core <- state <- alembic <- schema <- review <- backup <- ops <- report."""

"""Errors, connection targets and helpers, database connections, the module runner and progress lines."""

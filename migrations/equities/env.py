"""Alembic environment for the equities migration project.

Works from any working directory.  Where the migrations run, in order:

Online mode
  1. ``config.attributes["connection"]``: a live SQLAlchemy ``Connection``
     supplied by the caller (Alembic cookbook, "Sharing a Connection").  It is
     used as-is: no engine is created and the connection is never committed or
     closed here; the caller owns its transaction and lifetime.
  2. Otherwise a URL (see below); a throw-away engine with ``NullPool`` is
     created for the run and disposed afterwards.

Offline mode (``--sql``)
  SQL is rendered for the URL's dialect with literal binds.

URL precedence: ``config.attributes["url"]``, then ``$DATABASE_URL``, then
``sqlalchemy.url`` from alembic.ini.

Logging is configured from the ini file only when there is one and
``config.attributes.get("configure_logger", True)`` is true.
"""

from __future__ import annotations

import os
import sys
from logging.config import fileConfig
from pathlib import Path
from typing import Any

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import NullPool

# Make the models module importable even when this environment is loaded
# through a Config that did not apply prepend_sys_path.
_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import equities_models  # noqa: E402

config = context.config

if config.config_file_name is not None and config.attributes.get(
    "configure_logger", True
):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = equities_models.Base.metadata


def _resolve_url() -> str | URL:
    """Return the database URL: attributes["url"], $DATABASE_URL, ini."""
    candidates: tuple[tuple[str, Any], ...] = (
        ('config.attributes["url"]', config.attributes.get("url")),
        ("DATABASE_URL", os.environ.get("DATABASE_URL")),
        ("sqlalchemy.url", config.get_main_option("sqlalchemy.url")),
    )
    for source, value in candidates:
        if value is None:
            continue
        if isinstance(value, URL):
            return value
        if isinstance(value, str):
            if value.strip():
                return value.strip()
            continue
        raise TypeError(
            f"{source} must be a string or sqlalchemy.engine.URL, "
            f"not {type(value).__name__}"
        )
    raise RuntimeError(
        'No database URL: set config.attributes["url"], $DATABASE_URL '
        "or sqlalchemy.url in alembic.ini"
    )


def _common_options(dialect_name: str) -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        "compare_type": True,
        # SQLite cannot ALTER most things; autogenerate batch operations.
        "render_as_batch": dialect_name == "sqlite",
    }


def run_migrations_offline() -> None:
    """Render the migrations as SQL for the resolved URL's dialect."""
    url = _resolve_url()
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_common_options(make_url(url).get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_with_connection(connection: Connection) -> None:
    context.configure(
        connection=connection, **_common_options(connection.dialect.name)
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations against a shared connection or a fresh engine."""
    shared = config.attributes.get("connection")
    if shared is not None:
        if not isinstance(shared, Connection):
            raise TypeError(
                'config.attributes["connection"] must be a '
                "sqlalchemy.engine.Connection, "
                f"not {type(shared).__name__}"
            )
        if shared.closed:
            raise RuntimeError('config.attributes["connection"] is closed')
        _run_with_connection(shared)
        return

    engine = create_engine(_resolve_url(), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            _run_with_connection(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

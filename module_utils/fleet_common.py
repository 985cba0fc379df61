# -*- coding: utf-8 -*-
# Shared, dependency-free pieces of alembic-fleet's modules: the one exception
# root, the connection/project argument specs, URL handling and the private
# PGPASSFILE. Nothing here imports Alembic, SQLAlchemy or psycopg2, so modules
# that do not need them (backup) start fast.
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit


class FleetError(Exception):
    """An expected failure: its message is one sentence saying what to do."""


# Connection options shared by every module that talks to a database.
CONNECTION_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "url": dict(type="str", required=True),
    "password": dict(type="str", no_log=True),
    "connect_timeout": dict(type="int", default=10),
}

# Options that locate an Alembic project.
PROJECT_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "config": dict(type="path", required=True, aliases=["alembic_ini"]),
    "project_dir": dict(type="path"),
    "ini_section": dict(type="str", default="alembic"),
}

DIALECTS = ("postgresql", "sqlite")
# libpq connection parameters a URL may carry: transport and identification only.
SAFE_QUERY_OPTIONS = frozenset(
    (
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslcrl",
        "sslcompression",
        "gssencmode",
        "target_session_attrs",
        "application_name",
        "connect_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "channel_binding",
        "krbsrvname",
        "client_encoding",
        "host",
        "port",
    )
)


def argument_spec(*specs: dict[str, dict[str, Any]], **extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Merge shared specs and a module's own options into one argument spec."""
    merged: dict[str, dict[str, Any]] = {}
    for spec in specs:
        merged.update({name: dict(option) for name, option in spec.items()})
    merged.update(extra)
    return merged


@dataclass(frozen=True)
class DbTarget:
    """Where a database lives, with the password kept apart from the URL."""

    url: str  # SQLAlchemy URL, never containing a password
    dialect: str
    driver: str | None
    host: str | None
    port: int | None
    user: str | None
    dbname: str  # PostgreSQL database name, or the SQLite file path
    password: str | None = field(default=None, repr=False)
    connect_timeout: int = 10

    @property
    def label(self) -> str:
        """A password-free description for messages and reports."""
        if self.dialect == "sqlite":
            return "sqlite:%s" % self.dbname
        return "%s@%s:%s/%s" % (self.user or "", self.host or "localhost", self.port or 5432, self.dbname)


def parse_target(url: str, password: str | None, connect_timeout: int = 10) -> DbTarget:
    """Validate a password-free SQLAlchemy URL and split it into its parts."""
    text = (url or "").strip()
    if not text:
        raise FleetError("url is empty: give a SQLAlchemy URL such as postgresql://user@host:5432/dbname or sqlite:////path/to/file.db.")
    try:
        parts = urlsplit(text)
    except ValueError:
        raise FleetError("url is not a valid URL: use postgresql://user@host:5432/dbname or sqlite:////path/to/file.db.") from None
    scheme = parts.scheme.lower()
    dialect, _, driver = scheme.partition("+")
    if dialect == "postgres":
        dialect = "postgresql"
        text = "postgresql" + text[len("postgres") :]
        parts = urlsplit(text)
    if dialect not in DIALECTS:
        raise FleetError("url uses the unsupported dialect '%s': alembic-fleet drives postgresql:// and sqlite:/// databases." % (dialect or "(none)"))
    query = parts.query.lower()
    if parts.password is not None or "password=" in query or "passfile=" in query:
        raise FleetError(
            "url contains a password: remove it from the URL and pass it in the no_log 'password' option (e.g. from an environment variable or ansible-vault)."
        )
    if dialect == "sqlite":
        # sqlite:///relative.db -> path 'relative.db'; sqlite:////abs.db -> '/abs.db'
        path = unquote(text.split(":///", 1)[1]) if ":///" in text else ""
        path = path.split("?", 1)[0]
        if not path or path == ":memory:":
            raise FleetError("url names no SQLite file: use sqlite:////absolute/path/to/file.db.")
        path = os.path.abspath(os.path.expanduser(path))
        return DbTarget(
            url="sqlite:///%s" % path,
            dialect="sqlite",
            driver=driver or None,
            host=None,
            port=None,
            user=None,
            dbname=path,
            password=None,
            connect_timeout=connect_timeout,
        )
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise FleetError("url names no database: use postgresql://user@host:5432/dbname.")
    try:
        port = parts.port
    except ValueError:
        raise FleetError("url has an invalid port: use postgresql://user@host:5432/dbname.") from None
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() not in SAFE_QUERY_OPTIONS:
            raise FleetError(
                "url sets '%s=%s' in its query, which alembic-fleet does not pass to the server (it could change how migrations and the ledger run): "
                "allowed are %s; set session options on the role or database instead (ALTER ROLE ... SET)."
                % (key, value, ", ".join(sorted(SAFE_QUERY_OPTIONS)))
            )
    if not driver:
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; we ship psycopg2.
        driver = "psycopg2"
        text = "postgresql+psycopg2" + text[len(parts.scheme) :]
    return DbTarget(
        url=text,
        dialect="postgresql",
        driver=driver,
        host=parts.hostname,
        port=port or 5432,
        user=unquote(parts.username) if parts.username else None,
        dbname=dbname,
        password=password or None,
        connect_timeout=connect_timeout,
    )


def plain_table_name(value: str, option: str) -> str:
    """A table name that can go into SQL as is: letters, digits and '_'."""
    if not value or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
        raise FleetError("%s '%s' is not a plain table name: use letters, digits and '_'." % (option, value))
    return value


def scrub(text: str, *secrets: str | None) -> str:
    """Remove secrets from a message before it can reach any output."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    return text


def _passfile_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


@contextlib.contextmanager
def private_passfile(password: str | None) -> Iterator[str | None]:
    """A 0600 PGPASSFILE in a 0700 directory, removed on exit.

    libpq reads the password from it, so it never reaches argv or a
    PGPASSWORD variable. Yields None when there is no password.
    """
    if not password:
        yield None
        return
    if "\n" in password or "\r" in password:
        raise FleetError("the password contains a line break, which libpq's password file cannot hold: change the password.")
    directory = tempfile.mkdtemp(prefix="fleet-pgpass-")
    try:
        os.chmod(directory, 0o700)
        path = os.path.join(directory, "pgpass")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("*:*:*:*:%s\n" % _passfile_escape(password))
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def environment(overrides: dict[str, str | None]) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for a block, then restore them."""
    saved = {name: os.environ.get(name) for name in overrides}
    try:
        for name, value in overrides.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

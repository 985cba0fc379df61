# -*- coding: utf-8 -*-
# Connecting to a target database with SQLAlchemy: one engine per module run,
# the password only ever in memory, and every driver error turned into one
# sentence that says what to fix (never containing the password).
from __future__ import annotations

import os
import traceback
from typing import Any

from ansible.module_utils.fleet.core.common import DbTarget, FleetError, scrub

SQLALCHEMY_IMPORT_ERROR: str | None
try:
    import sqlalchemy as sa
    from sqlalchemy.engine import URL, Connection, Engine, make_url
    from sqlalchemy.pool import NullPool
except ImportError:  # pragma: no cover - reported by the module
    SQLALCHEMY_IMPORT_ERROR = traceback.format_exc()
else:
    SQLALCHEMY_IMPORT_ERROR = None

APPLICATION_NAME = "alembic-fleet"
_INSUFFICIENT_PRIVILEGE = "42501"


def sqlalchemy_url(target: DbTarget, dbname: str | None = None) -> URL:
    """The URL with the password attached in memory only."""
    url = make_url(target.url)
    if target.dialect == "postgresql":
        if url.drivername == "postgresql" or url.drivername == "postgres":
            url = url.set(drivername="postgresql+psycopg2")
        if target.password:
            url = url.set(password=target.password)
        if dbname is not None:
            url = url.set(database=dbname)
    return url


def create_engine(target: DbTarget, dbname: str | None = None) -> Engine:
    if target.dialect == "postgresql":
        connect_args = {"connect_timeout": target.connect_timeout, "application_name": APPLICATION_NAME}
        return sa.create_engine(sqlalchemy_url(target, dbname), poolclass=NullPool, connect_args=connect_args)
    engine = sa.create_engine(sqlalchemy_url(target), poolclass=NullPool, connect_args={"timeout": float(target.connect_timeout)})
    _make_sqlite_transactional(engine)
    return engine


def _make_sqlite_transactional(engine: Engine) -> None:
    # pysqlite commits DDL implicitly; take over BEGIN so that a migration run
    # is one transaction on SQLite too (SQLAlchemy's documented recipe).
    @sa.event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _explicit_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")


def error_detail(exc: BaseException, target: DbTarget) -> str:
    """The driver's own message for an error: one line, the password scrubbed."""
    original = getattr(exc, "orig", None) or exc
    return scrub(" ".join(str(original).split()), target.password)


def sqlite_path_problem(path: str) -> str | None:
    """Why SQLite cannot open the database file at path (SQLite itself only says "unable to open database file")."""
    directory = os.path.dirname(path) or "."
    if os.path.isdir(path):
        return "SQLite database path %s is a directory, not a file: point url at the database file (sqlite:////path/to/file.db)." % path
    if not os.path.isdir(directory):
        return "SQLite database %s cannot be opened: its directory %s does not exist; create it, or set create_database: true." % (path, directory)
    if not os.access(directory, os.W_OK | os.X_OK):
        return "SQLite database %s cannot be opened: its directory %s is not writable by this user (SQLite writes its journal there); fix the permissions." % (
            path,
            directory,
        )
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        return "SQLite database %s cannot be opened: the file is not readable and writable by this user; fix its permissions." % path
    return None


def explain_connect_error(target: DbTarget, exc: BaseException) -> FleetError:
    """One readable sentence for a failed connection."""
    detail = error_detail(exc, target)
    lowered = detail.lower()
    where = target.label
    if target.dialect == "sqlite":
        problem = sqlite_path_problem(target.dbname) if "unable to open" in lowered else None
        return FleetError(problem or "cannot open SQLite database %s: %s" % (target.dbname, detail))
    if not target.password and ("no password supplied" in lowered or "password authentication failed" in lowered):
        return _no_password(target)
    if "password authentication failed" in lowered or "no password supplied" in lowered or ("role" in lowered and "does not exist" in lowered):
        return FleetError(
            "authentication failed for user '%s' at %s: check the password given for this database (it is not shown) and that the role exists."
            % (target.user or "", where)
        )
    if "database" in lowered and "does not exist" in lowered:
        return DatabaseMissing(target)
    if any(
        marker in lowered
        for marker in ("could not connect", "connection refused", "could not translate host", "timeout expired", "no route to host", "connection to server")
    ):
        return FleetError(
            "cannot reach PostgreSQL at %s:%s (%s): check host and port in the inventory, the network, and that the server is running."
            % (target.host or "localhost", target.port or 5432, _first_clause(detail))
        )
    return FleetError("cannot connect to %s: %s" % (where, detail))


def _no_password(target: DbTarget) -> FleetError:
    # The server's "authentication failed" would send the operator to check a password that was never sent.
    if target.password_empty:
        return FleetError(
            "the password for %s is empty and the server asks for one: set the password option (in the inventory, the database entry's password; "
            "if it looks up an environment variable, export that variable before the run)." % target.label
        )
    return FleetError(
        "no password was given for %s and the server asks for one: set the password option (in the inventory, the database entry's password)." % target.label
    )


def _first_clause(detail: str) -> str:
    text = detail.split(" Is the server running", 1)[0]
    return text[:200].rstrip(" .")


class DatabaseMissing(FleetError):
    def __init__(self, target: DbTarget) -> None:
        if target.dialect == "sqlite":
            message = "SQLite database file %s does not exist: create it, or set create_database: true to let the module create it." % target.dbname
        else:
            message = "database '%s' does not exist on %s:%s: create it first, or set create_database: true to let the module create it." % (
                target.dbname,
                target.host or "localhost",
                target.port or 5432,
            )
        super().__init__(message)


def database_exists(target: DbTarget) -> bool:
    """Whether the database is there, creating nothing (also not a SQLite file)."""
    if target.dialect == "sqlite":
        return os.path.exists(target.dbname)
    engine = create_engine(target)
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as exc:
        error = explain_connect_error(target, exc)
        if isinstance(error, DatabaseMissing):
            return False
        raise error from None
    finally:
        engine.dispose()
    return True


def create_database(target: DbTarget, maintenance_db: str = "postgres") -> None:
    """Create the database (PostgreSQL) or its file's directory (SQLite)."""
    if target.dialect == "sqlite":
        _create_private_sqlite_file(target.dbname)
        sqlite_engine = create_engine(target)
        try:
            with sqlite_engine.connect():
                pass
        finally:
            sqlite_engine.dispose()
        return
    engine = create_engine(target, dbname=maintenance_db).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            preparer = conn.dialect.identifier_preparer
            conn.exec_driver_sql("CREATE DATABASE %s" % preparer.quote_identifier(target.dbname))
    except sa.exc.DBAPIError as exc:
        raise FleetError(
            "could not create database '%s' on %s:%s (%s): create it by hand or grant the user CREATEDB."
            % (target.dbname, target.host or "localhost", target.port or 5432, error_detail(exc, target))
        ) from None
    finally:
        engine.dispose()


def drop_database(conn: Connection, name: str) -> None:
    """Drop a database of ours (scratch, replaced), ending the sessions left on it.

    `WITH (FORCE)` ends our own sessions, but refuses the whole drop when one it may not end is there: an
    autovacuum worker that just started on the new database, or another role's session. A plain DROP then
    stops the autovacuum worker itself and waits up to 5 s for other sessions to leave (PostgreSQL's own wait).
    `conn` is in autocommit.
    """
    quoted = conn.dialect.identifier_preparer.quote_identifier(name)
    try:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % quoted)
        return
    except sa.exc.DBAPIError as exc:
        if getattr(getattr(exc, "orig", None), "pgcode", None) != _INSUFFICIENT_PRIVILEGE:
            raise
    conn.exec_driver_sql("DROP DATABASE IF EXISTS %s" % quoted)


def _create_private_sqlite_file(path: str) -> None:
    """An empty SQLite file only its owner can read (0600), in a new directory as 0700.

    SQLite itself would create it with the umask (usually 0644: readable by
    every local user); its journal files copy the database file's mode.
    """
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # makedirs' mode is masked by the umask
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # created meanwhile (another run): leave its mode alone
    except OSError as exc:
        raise FleetError("cannot create the SQLite database file %s (%s): check the directory and its permissions." % (path, exc.strerror or exc)) from None
    os.close(fd)


def connect(engine: Engine, target: DbTarget) -> Connection:
    try:
        return engine.connect()
    except sa.exc.DBAPIError as exc:
        raise explain_connect_error(target, exc) from None

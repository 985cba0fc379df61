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
import time
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
    # The password option was there but empty: what an inventory's lookup of an unset environment variable gives.
    password_empty: bool = field(default=False, repr=False)
    # libpq options of the URL's query besides host and port (sslmode, sslrootcert, ...), in URL order.
    options: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        """A password-free description for messages and reports."""
        if self.dialect == "sqlite":
            return "sqlite:%s" % self.dbname
        return "%s@%s:%s/%s" % (self.user or "", self.host or "localhost", self.port or 5432, self.dbname)


# Options every libpq client of ours sets itself (the module's own values win over the URL's, as with SQLAlchemy).
_OWN_OPTIONS = frozenset(("application_name", "connect_timeout"))


def libpq_params(target: DbTarget, dbname: str | None = None, application_name: str | None = None) -> dict[str, str]:
    """The one connection description of a PostgreSQL target, for every client (never the password)."""
    params = {"host": target.host or "localhost", "port": str(target.port or 5432), "dbname": dbname or target.dbname}
    if target.user:
        params["user"] = target.user
    params.update((key, value) for key, value in target.options if key not in _OWN_OPTIONS)
    params["connect_timeout"] = str(target.connect_timeout)
    if application_name:
        params["application_name"] = application_name
    return params


def conninfo(params: dict[str, str]) -> str:
    """A libpq conninfo string: each value quoted, so '=', spaces and quotes in names stay data."""
    return " ".join("%s='%s'" % (key, value.replace("\\", "\\\\").replace("'", "\\'")) for key, value in params.items())


def check_seconds(option: str, value: float | None, fix: str) -> None:
    """Refuse a negative (or NaN) number of seconds: clamped to 0 or handed to libpq it would wait in a way nobody
    asked for, without a word."""
    if value is not None and not value >= 0:
        raise FleetError("%s is %s: %s; nothing was touched." % (option, value, fix))


def parse_target(url: str, password: str | None, connect_timeout: int = 10) -> DbTarget:
    """Validate a password-free SQLAlchemy URL and split it into its parts."""
    check_seconds("connect_timeout", connect_timeout, "give 1 or more seconds to wait for the server (default 10)")
    if isinstance(url, (list, tuple, dict)) or str(url or "").lstrip().startswith(("[", "{")):
        # Ansible turns a list or dict given for a str option into its repr: say what is wrong, not "unsupported dialect".
        raise FleetError("url is a %s, not one URL: give a single string such as postgresql://user@host:5432/dbname." % _kind_of(url))
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
    options: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() not in SAFE_QUERY_OPTIONS:
            raise FleetError(
                "url sets '%s=%s' in its query, which alembic-fleet does not pass to the server (it could change how migrations and the ledger run): "
                "allowed are %s; set session options on the role or database instead (ALTER ROLE ... SET)."
                % (key, value, ", ".join(sorted(SAFE_QUERY_OPTIONS)))
            )
        options.append((key.lower(), value))
    host, port = _query_host_port(parts.hostname, port, options)
    if not driver:
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; we ship psycopg2.
        driver = "psycopg2"
        text = "postgresql+psycopg2" + text[len(parts.scheme) :]
    return DbTarget(
        url=text,
        dialect="postgresql",
        driver=driver,
        host=host,
        port=port or 5432,
        user=unquote(parts.username) if parts.username else None,
        dbname=dbname,
        password=password or None,
        connect_timeout=connect_timeout,
        password_empty=password is not None and not password,
        options=tuple((key, value) for key, value in options if key not in ("host", "port")),
    )


def _kind_of(value: Any) -> str:
    text = str(value).lstrip()
    if isinstance(value, dict) or text.startswith("{"):
        return "mapping"
    return "list"


def _query_host_port(host: str | None, port: int | None, options: list[tuple[str, str]]) -> tuple[str | None, int | None]:
    """host and port from the URL's authority or its ?host= (a unix-socket directory) / ?port=, never both."""
    given = dict(options)
    if "host" in given:
        if host:
            raise FleetError("url names the host twice (%s and ?host=%s): keep one of them." % (host, given["host"]))
        host = given["host"] or None
    if "port" in given:
        if port:
            raise FleetError("url names the port twice (%d and ?port=%s): keep one of them." % (port, given["port"]))
        if not given["port"].isdigit():
            raise FleetError("url has an invalid ?port=%s: give one port number." % given["port"])
        port = int(given["port"])
    return host, port


def url_secrets(url: Any) -> list[str]:
    """The passwords a URL carries (as written and decoded): what must never be echoed, even in a refusal."""
    text = url.strip() if isinstance(url, str) else ""
    if "://" not in text:
        return []
    rest = text.split("://", 1)[1]
    authority, _, query = rest.partition("?")
    found: list[str] = []
    if "@" in authority:
        # The last '@' before the query ends the user info: a password may hold '@', '/' or ':'.
        userinfo = authority.rpartition("@")[0]
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key.strip().lower() in ("password", "passfile"):
            found.append(value)
    decoded = [unquote(value) for value in found] + [unquote(value.replace("+", " ")) for value in found]
    return sorted({value for value in found + decoded if value})


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


PASSFILE_PREFIX = "fleet-pgpass-"
# A password file of an older version (no pid in its name) is swept once it is this old: no run lasts that long.
LEGACY_PASSFILE_SECONDS = 3600


@contextlib.contextmanager
def private_passfile(password: str | None) -> Iterator[str | None]:
    """A PGPASSFILE that exists only in memory (Linux), closed on exit.

    libpq reads the password from it, so it never reaches argv or a
    PGPASSWORD variable; and as an anonymous memory file it never reaches a
    disk, so even a SIGKILL leaves nothing behind. The path names this
    process's descriptor, so this process and its children (pg_dump,
    pg_restore) can open it. Yields None when there is no password. Without
    memfd_create, a 0600 file in a 0700 directory named after this process,
    which sweep_stale_passfiles removes once the process is gone.
    """
    if not password:
        yield None
        return
    if "\n" in password or "\r" in password:
        raise FleetError("the password contains a line break, which libpq's password file cannot hold: change the password.")
    content = ("*:*:*:*:%s\n" % _passfile_escape(password)).encode()
    fd = _memory_file(content)
    if fd is None:
        with _disk_passfile(content) as path:
            yield path
        return
    try:
        yield "/proc/%d/fd/%d" % (os.getpid(), fd)
    finally:
        os.close(fd)


def _memory_file(content: bytes) -> int | None:
    """An anonymous 0600 in-memory file holding content (its descriptor), or None where there is none."""
    create = getattr(os, "memfd_create", None)
    if create is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        fd: int = create("fleet-pgpass", getattr(os, "MFD_CLOEXEC", 1))
    except OSError:
        return None
    try:
        os.fchmod(fd, 0o600)  # libpq ignores a password file others could read
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def _disk_passfile(content: bytes) -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="%s%d-" % (PASSFILE_PREFIX, os.getpid()))
    try:
        os.chmod(directory, 0o700)
        path = os.path.join(directory, "pgpass")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (of any user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_passfiles(directory: str | None = None, now: float | None = None) -> list[str]:
    """Remove the password-file directories that killed processes left in the temp directory; returns them.

    Only this user's: a directory named after a pid that no longer runs, or
    (an older version's, no pid in the name) one older than an hour.
    """
    root = directory or tempfile.gettempdir()
    moment = time.time() if now is None else now
    removed: list[str] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(PASSFILE_PREFIX) and _stale_passfile_dir(entry, moment):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def _stale_passfile_dir(entry: os.DirEntry[str], now: float) -> bool:
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    if not entry.is_dir(follow_symlinks=False) or info.st_uid != os.getuid():
        return False
    match = re.match(r"^%s(\d+)-" % PASSFILE_PREFIX, entry.name)
    if match:
        return not process_alive(int(match.group(1)))
    return now - info.st_mtime > LEGACY_PASSFILE_SECONDS


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


# Where a team's Alembic project declares the packages its env.py, models and revisions import (docs/your-project.md).
DECLARE_PACKAGES = (
    "list the package in a requirements.txt beside the project's alembic.ini (scripts/bootstrap installs it; add it to"
    " the execution environment's requirements too), or install it into that Python."
)

# -*- coding: utf-8 -*-
# Verified backups: PostgreSQL with pg_dump's custom format (argument lists,
# the URL's whole connection description as one quoted conninfo, the password
# only in an in-memory PGPASSFILE, lock waits bounded), SQLite with the online
# backup API.
# Each is written to a temp file beside its destination, checked (pg_restore
# --list / PRAGMA integrity_check), hashed, then moved into place as 0600 in
# 0700 directories with a JSON manifest next to it. The manifest also holds the
# exact row counts of the largest tables, taken in the dump's own snapshot
# (PostgreSQL: an exported snapshot pg_dump imports; SQLite: the copy itself),
# which a restore drill compares with the restored copy. Temporary files carry
# the writing process's pid in their name (.<file>.pid<N>.<random>.partial):
# the next run, retention and status know which ones a killed run left.
from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ansible.module_utils.fleet.backup.catalog import MANIFEST_SUFFIX, backup_directory, backup_filename
from ansible.module_utils.fleet.backup.retention import NEWEST, apply_retention, partial_files, plan_retention, stale_partials
from ansible.module_utils.fleet.core.common import (
    DbTarget,
    FleetError,
    conninfo,
    libpq_params,
    plain_table_name,
    private_passfile,
    scrub,
)
from ansible.module_utils.fleet.core.db import explain_connect_error
from ansible.module_utils.fleet.core.options import DEFAULT_VERSION_TABLE, Connection, given
from ansible.module_utils.fleet.core.progress import Progress, human_bytes
from ansible.module_utils.fleet.core.progress import from_environment as progress_from_environment

MANIFEST_FORMAT = 1  # 'tables' (row counts) was added later and is optional: older manifests lack it
DEFAULT_COUNT_TABLES = 10
DEFAULT_LOCK_WAIT_TIMEOUT = 5.0  # seconds, the role's default lock_timeout
SQLITE_PAGES_PER_STEP = 4096  # pages the online backup copies between two progress reports (16 MB of 4 kB pages)
PROGRESS_POLL = 1.0  # seconds between two looks at the growing dump, only while progress is asked for


def _make_private_dirs(path: str) -> None:
    """Create missing directories as 0700, and tighten the ones we own."""
    missing = []
    current = path
    while not os.path.isdir(current):
        missing.append(current)
        current = os.path.dirname(current)
    for directory in reversed(missing):
        os.mkdir(directory, 0o700)
    os.chmod(path, 0o700)


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- PostgreSQL ------------------------------------------------------------------
def find_pg_binary(name: str, server_major: int | None, bin_dir: str | None) -> str:
    candidates: list[str] = []
    if bin_dir:
        # An explicit directory is a promise: never fall back to another binary behind the operator's back.
        explicit = os.path.join(bin_dir, name)
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise FleetError("pg_bin_dir %s has no executable %s: point it at the PostgreSQL client's bin directory, or leave it unset." % (bin_dir, name))
        return explicit
    if server_major:
        candidates.append("/usr/lib/postgresql/%d/bin/%s" % (server_major, name))
    candidates.extend(sorted(glob.glob("/usr/lib/postgresql/*/bin/%s" % name), key=_version_key, reverse=True))
    on_path = shutil.which(name)
    if on_path:
        candidates.append(on_path)
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FleetError("%s was not found: install the PostgreSQL client (postgresql-client-%s) or set pg_bin_dir." % (name, server_major or "N"))


def _version_key(path: str) -> tuple[int, ...]:
    match = re.search(r"/postgresql/(\d+)/", path)
    return (int(match.group(1)),) if match else (0,)


def tool_major(binary: str) -> int:
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", output)
    return int(match.group(1)) if match else 0


def pg_environment(target: DbTarget, passfile: str | None, app_name: str = "alembic-fleet-backup") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE", "DATABASE_URL")}
    env["PGAPPNAME"] = app_name
    env["PGCONNECT_TIMEOUT"] = str(target.connect_timeout)
    if passfile:
        env["PGPASSFILE"] = passfile
    return env


def pg_connect(target: DbTarget, app_name: str = "alembic-fleet-backup") -> Any:
    """A psycopg2 connection (password in memory only), and a readable failure when unreachable."""
    import psycopg2  # only the backup of PostgreSQL needs it

    kwargs: dict[str, Any] = libpq_params(target, application_name=app_name)
    if target.password:
        kwargs["password"] = target.password
    try:
        return psycopg2.connect(**kwargs)
    except psycopg2.Error as exc:
        raise explain_connect_error(target, exc) from None


def server_facts(target: DbTarget, app_name: str = "alembic-fleet-backup") -> tuple[str, int]:
    """Server version (text, major), and a readable failure when unreachable."""
    conn = pg_connect(target, app_name)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            text = str(cur.fetchone()[0])
            cur.execute("SHOW server_version_num")
            major = int(cur.fetchone()[0]) // 10000
    finally:
        conn.close()
    return text, major


# The largest tables whose data pg_dump writes: ordinary tables (and partitions) the user may read, not
# temporary, not an extension's own; by total size (heap, indexes, TOAST), ties by name.
LARGEST_TABLES_SQL = (
    "SELECT n.nspname, c.relname, pg_total_relation_size(c.oid) "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind = 'r' AND c.relpersistence <> 't' "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND has_table_privilege(c.oid, 'SELECT') "
    "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') "
    "ORDER BY 3 DESC, 1, 2 LIMIT %s"
)


def _count_pg_tables(target: DbTarget, snapshot: str, limit: int, lock_wait: float = 0) -> list[dict[str, Any]]:
    """Exact row counts of the `limit` largest tables, in the exported snapshot the dump also reads."""
    import psycopg2
    from psycopg2 import sql

    conn = pg_connect(target)
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        tables: list[dict[str, Any]] = []
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
            if lock_wait:  # a count waits behind an ACCESS EXCLUSIVE lock like pg_dump: no longer than it
                cur.execute("SET LOCAL lock_timeout = %s", ("%dms" % round(lock_wait * 1000),))
            cur.execute(LARGEST_TABLES_SQL, (limit,))
            for schema, table, size in cur.fetchall():
                try:
                    cur.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))
                except psycopg2.Error as exc:
                    if exc.pgcode == LOCK_NOT_AVAILABLE:
                        raise _lock_wait_error(target, lock_wait, "%s.%s" % (_ident(schema), _ident(table))) from None
                    raise
                tables.append({"schema": schema, "table": table, "rows": int(cur.fetchone()[0]), "bytes": int(size)})
        conn.rollback()  # read only; ends the transaction and its table locks now, not when pg_dump is done
    finally:
        conn.close()
    return tables


def _dump_postgresql(target: DbTarget, temp_path: str, compress_level: int, bin_dir: str | None, server: tuple[str, int], policy: DumpPolicy) -> dict[str, Any]:
    """pg_dump the target in custom format into temp_path, and read it back with pg_restore --list.

    server: (version, major) from server_facts; policy: row counts, lock wait, where to read the revision. The counts
    and the revision come from the dump's own exported snapshot. Returns the manifest's facts (format, versions, TOC
    entries, pg_dump seconds, tables, revision). Raises FleetError for a pg_dump older than the server, a lock wait
    given up, a lost connection, a failed or killed pg_dump, or a dump that does not read back."""
    import psycopg2  # only the backup of PostgreSQL needs it

    count_tables, lock_wait = policy.count_tables, policy.lock_wait_timeout

    server_version, server_major = server
    pg_dump = find_pg_binary("pg_dump", server_major, bin_dir)
    pg_restore = find_pg_binary("pg_restore", server_major, os.path.dirname(pg_dump))
    dump_major = tool_major(pg_dump)
    if dump_major and dump_major < server_major:
        raise FleetError(
            "%s is version %d but the server is %d: install postgresql-client-%d or point pg_bin_dir at a newer pg_dump."
            % (pg_dump, dump_major, server_major, server_major)
        )
    argv = [
        pg_dump,
        "--format=custom",
        "--compress=%d" % compress_level,
        "--file=%s" % temp_path,
        "--no-password",
        # One conninfo: a socket directory, sslmode and the other URL options reach pg_dump, and a database
        # name holding '=' stays a name. It holds no password.
        "--dbname=%s" % conninfo(libpq_params(target, application_name="alembic-fleet-backup")),
    ]
    if lock_wait:
        argv.append("--lock-wait-timeout=%dms" % round(lock_wait * 1000))
    tables: list[dict[str, Any]] | None = None
    revision: str | None = None
    # Row counts and dump from one snapshot: a REPEATABLE READ transaction exports it and stays open (touching
    # no table) until pg_dump is done; pg_dump (--snapshot) and a second transaction that counts import it. The
    # exporter holds no table locks while it waits for pg_dump, so no lock wait can hide behind that wait.
    # The revision, when not given, is read in that same snapshot too: the one the dump holds. (Its ACCESS SHARE
    # lock on the version table is one pg_dump takes on every table anyway.)
    exporter = pg_connect(target) if count_tables > 0 or policy.version_table else None
    try:
        snapshot = None
        if exporter is not None:
            exporter.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with exporter.cursor() as cur:
                cur.execute("SELECT pg_export_snapshot()")
                snapshot = str(cur.fetchone()[0])
                if policy.version_table:
                    revision = _read_pg_revision(cur, policy.version_table, lock_wait)
            argv.append("--snapshot=%s" % snapshot)
        with private_passfile(target.password) as passfile:
            dump_started = time.monotonic()
            dump = subprocess.Popen(
                argv, env=pg_environment(target, passfile), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
            try:
                if snapshot is not None and count_tables > 0:
                    policy.progress.update("counting the rows of the %d largest tables while pg_dump runs" % count_tables, force=True)
                    tables = _count_pg_tables(target, snapshot, count_tables, lock_wait)  # a full scan of each, beside pg_dump's own
                stderr = _wait_for_dump(dump, temp_path, policy.progress)
            except BaseException:
                dump.kill()
                dump.communicate()
                raise
            dump_seconds = round(time.monotonic() - dump_started, 3)
    except psycopg2.Error as exc:
        if getattr(exc, "pgcode", None) == LOCK_NOT_AVAILABLE:
            raise _lock_wait_error(target, lock_wait, policy.version_table) from None
        if getattr(exc, "pgcode", None) is None:  # the server went away (crash, restart): nothing about the counts
            raise FleetError(
                "the connection to %s was lost during the backup (%s); no backup was written: check that the server is up, then take the backup again."
                % (target.label, scrub(" ".join(str(exc).split())[:300], target.password))
            ) from None
        raise FleetError(
            "counting the rows of the largest tables of %s for the manifest failed (%s); "
            "no backup was written. Set count_tables to 0 to back up without counts." % (target.label, scrub(" ".join(str(exc).split())[:300], target.password))
        ) from None
    finally:
        if exporter is not None:
            exporter.close()
    if dump.returncode != 0:
        locked = _lock_wait_table(stderr)
        if locked is not None:
            raise _lock_wait_error(target, lock_wait, locked)
        if dump.returncode < 0:  # killed (by an operator, the OOM killer, a dying session): it said nothing
            raise FleetError(
                "pg_dump of %s was killed by signal %d before it finished; no backup was written: take the backup again." % (target.label, -dump.returncode)
            )
        raise FleetError(
            "pg_dump of %s failed (exit %d): %s; no backup was written."
            % (target.label, dump.returncode, scrub(" ".join(stderr.split())[:400], target.password))
        )
    policy.progress.update("pg_dump done, %s written; reading it back with pg_restore --list" % human_bytes(_size(temp_path)), force=True)
    listing = subprocess.run([pg_restore, "--list", temp_path], capture_output=True, text=True, check=False)
    if listing.returncode != 0 or "dbname: %s" % target.dbname not in listing.stdout:
        raise FleetError(
            "the dump of %s does not read back with pg_restore --list (%s); no backup was kept."
            % (target.label, " ".join(listing.stderr.split())[:300] or "unexpected table of contents")
        )
    entries = [line for line in listing.stdout.splitlines() if line and not line.startswith(";")]
    facts: dict[str, Any] = {
        "dump_format": "custom",
        "compress_level": compress_level,
        "server_version": server_version,
        "pg_dump": os.path.basename(pg_dump),
        "pg_dump_version": dump_major,
        "toc_entries": len(entries),
        "pg_dump_seconds": dump_seconds,  # of the backup's duration; the rest is ours (checks, checksum, manifest)
    }
    if tables is not None:
        facts["tables"] = tables
    if policy.version_table:
        facts["revision"] = revision
    return facts


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _wait_for_dump(dump: subprocess.Popen[str], temp_path: str, progress: Progress) -> str:
    """pg_dump's stderr once it exits; meanwhile the size of the growing file is the progress (when it is asked for)."""
    if not progress.enabled:
        return dump.communicate()[1]
    while True:
        try:
            return dump.communicate(timeout=PROGRESS_POLL)[1]
        except subprocess.TimeoutExpired:  # communicate() may be called again: nothing read so far is lost
            size = _size(temp_path)
            progress.update("%s dumped" % human_bytes(size), bytes=size)


@dataclass(frozen=True)
class DumpPolicy:
    """How a dump runs besides where it goes: counts to take, how long to wait for a lock, where the revision is."""

    count_tables: int
    lock_wait_timeout: float  # seconds; 0 waits as long as it takes
    version_table: str | None  # read the revision from it; None when the caller gave the revision
    progress: Progress = field(default_factory=lambda: Progress(None))  # what the module's action plugin shows meanwhile


LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of a lock_timeout
_LOCK_STATEMENT = re.compile(r"LOCK TABLE (?:ONLY )?(\S+) IN ACCESS SHARE MODE", re.I)


def _lock_wait_table(stderr: str) -> str | None:
    """The table pg_dump gave up waiting for (its --lock-wait-timeout), from its messages; None for other failures."""
    text = " ".join(stderr.split())
    if "timeout" not in text.lower():
        return None
    match = _LOCK_STATEMENT.search(text)
    return match.group(1) if match else None


def _ident(name: str) -> str:
    """A name as PostgreSQL prints it: quoted only when it must be."""
    return name if re.match(r"^[a-z_][a-z0-9_$]*$", name) else '"%s"' % name.replace('"', '""')


def _read_pg_revision(cur: Any, version_table: str, lock_wait: float) -> str | None:
    """The heads in the version table ('a+b' for several), None when the table is absent or empty."""
    if lock_wait:
        cur.execute("SET LOCAL lock_timeout = %s", ("%dms" % round(lock_wait * 1000),))
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (version_table,))
    if not cur.fetchone()[0]:
        return None
    cur.execute("SELECT version_num FROM %s ORDER BY version_num" % version_table)
    heads = [str(row[0]) for row in cur.fetchall()]
    return "+".join(heads) or None


# Who holds an ACCESS EXCLUSIVE lock (the only mode that blocks pg_dump's ACCESS SHARE) on a table of this
# database, and since when: the oldest transaction first. Another user's query and times are visible only to
# superusers and members of pg_read_all_stats; pid, user, application and the table always are.
BLOCKER_SQL = (
    "SELECT l.relation::regclass::text, a.pid, a.usename, a.application_name, a.state, left(a.query, 200), "
    "to_char(a.xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), extract(epoch from now() - a.xact_start)::int "
    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.granted AND l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND a.pid <> pg_backend_pid() "
    "AND (%(table)s::text IS NULL OR l.relation = to_regclass(%(table)s::text)) "
    "ORDER BY a.xact_start NULLS LAST, l.relation LIMIT 1"
)


@dataclass(frozen=True)
class LockHolder:
    table: str
    pid: int
    user: str | None
    application: str | None
    state: str | None  # None: not visible to the backup's user
    query: str | None
    since: str | None  # UTC, when its transaction began
    seconds: int | None

    def describe(self) -> str:
        who = "pid %d (user %s, application %s)" % (self.pid, self.user or "?", self.application or "-")
        if self.state is None or self.query is None or self.query.startswith("<insufficient privilege>"):
            return "%s, whose query the backup's user may not see (grant it pg_read_all_stats to see it)" % who
        query = " ".join(self.query.split())
        doing = "running '%s'" % query if self.state == "active" else "%s after '%s'" % (self.state, query)
        return "%s %s, in a transaction since %s (%s s)" % (who, doing, self.since, self.seconds)


def find_lock_holder(target: DbTarget, table: str | None) -> LockHolder | None:
    """The session holding an ACCESS EXCLUSIVE lock on table (any table when None); None when there is none now."""
    try:
        conn = pg_connect(target, "alembic-fleet-backup-probe")
    except FleetError:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute(BLOCKER_SQL, {"table": table})
            row = cur.fetchone()
    except Exception:  # the description is a courtesy: never hide the lock failure behind another
        row = None
    finally:
        conn.close()
    return LockHolder(*row) if row is not None else None


def _lock_wait_error(target: DbTarget, lock_wait: float, table: str | None) -> FleetError:
    holder = find_lock_holder(target, table)
    table = table or (holder.table if holder else None)
    what = "table %s" % table if table else "a table"
    held = ("held by %s" % holder.describe()) if holder else "whose holder has let go since"
    return FleetError(
        "the backup of %s gave up after waiting %g s (lock_wait_timeout) for a lock on %s, %s; no backup was written. "
        "Take the backup again once that session is done (or end it), or raise lock_wait_timeout." % (target.label, lock_wait, what, held)
    )


# -- SQLite -----------------------------------------------------------------------
def sqlite_copy(source_uri: str, destination_path: str, timeout: float = 5.0, progress: Progress | None = None) -> None:
    """Copy a SQLite database page by page with the online backup API (raises sqlite3.Error)."""
    source = sqlite3.connect(source_uri, uri=True, timeout=timeout)
    try:
        destination = sqlite3.connect(destination_path, timeout=timeout)
        try:
            if progress is not None and progress.enabled:
                # In chunks, so that the copy can say how far it is; -1 (all at once) otherwise, as before.
                source.backup(destination, pages=SQLITE_PAGES_PER_STEP, progress=_sqlite_progress(progress), sleep=0)
            else:
                source.backup(destination)
        finally:
            destination.close()
    finally:
        source.close()


def _sqlite_progress(progress: Progress) -> Any:
    def report(status: int, remaining: int, total: int) -> None:
        progress.update("%d of %d pages copied" % (total - remaining, total), pages=total - remaining, total_pages=total)

    return report


def _count_sqlite_tables(path: str, limit: int) -> list[dict[str, Any]]:
    """Exact row counts of the `limit` tables with the most rows (every table is counted to rank them)."""
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")]
        counts = [(int(conn.execute('SELECT count(*) FROM "%s"' % name.replace('"', '""')).fetchone()[0]), name) for name in names]
    finally:
        conn.close()
    counts.sort(key=lambda item: (-item[0], item[1]))
    return [{"table": name, "rows": rows} for rows, name in counts[:limit]]


def _copy_sqlite(target: DbTarget, temp_path: str, policy: DumpPolicy) -> dict[str, Any]:
    try:
        sqlite_copy("file:%s?mode=ro" % target.dbname, temp_path, target.connect_timeout, policy.progress)
    except sqlite3.Error as exc:
        raise FleetError("SQLite backup of %s failed: %s; no backup was written." % (target.dbname, exc)) from None
    version = sqlite3.sqlite_version
    check = sqlite3.connect("file:%s?mode=ro" % temp_path, uri=True)
    try:
        verdict = check.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        check.close()
    if verdict != "ok":
        raise FleetError("the SQLite copy of %s fails PRAGMA integrity_check (%s); no backup was kept." % (target.dbname, verdict))
    facts: dict[str, Any] = {"dump_format": "sqlite", "server_version": "SQLite %s" % version}
    if policy.count_tables > 0:
        # Counted in the copy itself: exactly what the backup holds.
        facts["tables"] = _count_sqlite_tables(temp_path, policy.count_tables)
    if policy.version_table:
        facts["revision"] = _read_sqlite_revision(temp_path, policy.version_table)
    return facts


def _read_sqlite_revision(path: str, version_table: str) -> str | None:
    """The heads the copy's version table holds ('a+b' for several), None when it has none."""
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (version_table,)).fetchone() is None:
            return None
        heads = sorted(str(row[0]) for row in conn.execute('SELECT version_num FROM "%s"' % version_table))
    finally:
        conn.close()
    return "+".join(heads) or None


# -- the operation ----------------------------------------------------------------
# db_backup's options besides the connection and revision; alembic_upgrade's `backup` takes the same.
BACKUP_OPTIONS: dict[str, dict[str, Any]] = {
    "backup_root": dict(type="path", required=True),
    "environment": dict(type="str", required=True),
    "host": dict(type="str", required=True),
    "name": dict(type="str", required=True),
    "compress_level": dict(type="int", default=1),
    "pg_bin_dir": dict(type="path"),
    "count_tables": dict(type="int", default=DEFAULT_COUNT_TABLES),
    "lock_wait_timeout": dict(type="float", default=DEFAULT_LOCK_WAIT_TIMEOUT),
    "version_table": dict(type="str", default=DEFAULT_VERSION_TABLE),
    "keep_last": dict(type="int"),
    "keep_days": dict(type="float", default=0),
    "protect": dict(type="list", elements="path", default=[]),
}


@dataclass(frozen=True)
class BackupRequest:
    """db_backup's options (also alembic_upgrade's `backup`), checked: where the backup goes, how it is taken and what
    retention keeps. The connection is not part of it: alembic_upgrade checks its `backup` before it has one."""

    directory: str  # backup_root/environment/host/name
    name: str
    environment: str
    host: str
    compress_level: int = 1
    count_tables: int = DEFAULT_COUNT_TABLES
    lock_wait_timeout: float = DEFAULT_LOCK_WAIT_TIMEOUT  # seconds; 0 waits as long as it takes
    version_table: str = DEFAULT_VERSION_TABLE
    pg_bin_dir: str | None = None
    keep_last: int | None = None  # None or 0: retention keeps them all
    keep_days: float = 0.0
    protect: tuple[str, ...] = ()


def check_backup_options(params: dict[str, Any]) -> BackupRequest:
    """db_backup's input checks, before anything is reached or written, in this order: retention, pg_bin_dir, the
    backup directory, compress_level, count_tables, lock_wait_timeout and version_table. Returns them checked."""
    keep_last = params.get("keep_last")
    if keep_last is not None and keep_last < 0:
        raise FleetError("keep_last %d is not allowed: keep at least 1 backup, or 0 (or unset) to keep them all." % keep_last)
    keep_days = params.get("keep_days")
    if keep_days is not None and keep_days < 0:
        raise FleetError("keep_days %s is not allowed: give 0 or more days." % keep_days)
    pg_bin_dir = given(params, "pg_bin_dir", None)
    if pg_bin_dir:
        find_pg_binary("pg_dump", None, pg_bin_dir)
    if not given(params, "backup_root", "").strip():
        raise FleetError("backup_root is empty: give the directory that holds the backups (e.g. /var/backups/alembic-fleet).")
    level = params.get("compress_level")
    if level is None:
        level = 1
    if not 0 <= level <= 9:
        raise FleetError("compress_level %d is out of range: use 0 (none) to 9 (smallest, slowest); 1 is fast and near the default's size." % level)
    count_tables = params.get("count_tables")
    if count_tables is None:
        count_tables = DEFAULT_COUNT_TABLES
    if count_tables < 0:
        raise FleetError("count_tables %d is not allowed: give how many of the largest tables to count (0 counts none)." % count_tables)
    lock_wait = params.get("lock_wait_timeout")
    if lock_wait is not None and not 0 <= lock_wait < 86400:
        raise FleetError("lock_wait_timeout %s is not allowed: give the seconds a backup may wait for a table lock (0 waits as long as it takes)." % lock_wait)
    version_table = plain_table_name(given(params, "version_table", DEFAULT_VERSION_TABLE), "version_table")
    return BackupRequest(
        directory=backup_directory(params["backup_root"], params["environment"], params["host"], params["name"]),
        name=params["name"],
        environment=params["environment"],
        host=params["host"],
        compress_level=level,
        count_tables=count_tables,
        lock_wait_timeout=DEFAULT_LOCK_WAIT_TIMEOUT if lock_wait is None else float(lock_wait),
        version_table=version_table,
        pg_bin_dir=pg_bin_dir,
        keep_last=keep_last,
        keep_days=float(keep_days or 0),
        protect=tuple(path for path in given(params, "protect", ()) if path),
    )


def backup(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    """db_backup: a checked backup of one database with its manifest, then retention.

    params: url, password, backup_root, environment, host, name, revision (None: read it in the dump's snapshot),
    compress_level, count_tables, lock_wait_timeout, keep_last/keep_days, pg_bin_dir; read once here (Connection,
    BackupRequest). In order: checks every option; in check mode, says where the backup would go and what retention
    would delete, and stops. Otherwise reaches the database (PostgreSQL: its server's version; SQLite: the file must
    exist) before creating anything, creates the private directory, removes partial files dead runs left, writes the
    dump (PostgreSQL) or an online copy (SQLite) to a private temp file, names it by time and revision once known,
    hashes it, moves it into place, writes its manifest, then applies retention. Fills result (path, manifest_path,
    manifest, retention, removed_partials) and returns nothing; raises FleetError with nothing left behind."""
    started = time.monotonic()
    target = Connection.from_params(params).target
    request = check_backup_options(params)
    directory = request.directory
    # None (not given): read it from the database, in the dump's own snapshot; "" is an unversioned database.
    revision_given = params.get("revision")
    policy = DumpPolicy(
        count_tables=request.count_tables,
        lock_wait_timeout=request.lock_wait_timeout,
        version_table=request.version_table if revision_given is None else None,
        progress=Progress(None) if check_mode else progress_from_environment(),
    )
    revision_given = revision_given or None
    now = datetime.now(UTC)
    filename = backup_filename(now, revision_given, target.dialect)
    path = os.path.join(directory, filename)
    result.update(database=target.label, path=path, manifest_path=path + MANIFEST_SUFFIX)
    if check_mode:
        result["changed"] = True
        retention = _retention(request, check_mode, now)
        if retention is not None:
            result["retention"] = retention
        return
    policy.progress.step("backup", "connecting")
    # Reach the database before creating anything, so a bad input leaves no trace.
    if target.dialect == "postgresql":
        server = server_facts(target)
    elif not os.path.isfile(target.dbname):
        raise FleetError("SQLite database file %s does not exist: nothing to back up; check url." % target.dbname)
    try:
        _make_private_dirs(directory)
    except OSError as exc:
        raise FleetError(
            "cannot create the backup directory %s (%s): point backup_root at a writable directory with free space; no backup was written."
            % (directory, exc.strerror or exc)
        ) from None
    removed = remove_stale_partials(directory, now)
    if removed:
        result["removed_partials"] = removed
    temp_path = _private_temp(directory, filename)
    try:
        if target.dialect == "postgresql":
            facts = _dump_postgresql(target, temp_path, request.compress_level, request.pg_bin_dir, server, policy)
        else:
            facts = _copy_sqlite(target, temp_path, policy)
        revision = facts.pop("revision", None) if policy.version_table else revision_given
        filename = backup_filename(now, revision, target.dialect)
        os.chmod(temp_path, 0o600)
        policy.progress.update("computing the SHA-256 of %s" % human_bytes(_size(temp_path)), force=True)
        checksum = sha256_file(temp_path)
        size = os.path.getsize(temp_path)
        path = _place(temp_path, directory, filename)
    except BaseException:
        if os.path.exists(temp_path):
            os.unlink(temp_path)
        raise
    manifest = {
        "format": MANIFEST_FORMAT,
        "tool": "alembic-fleet",
        "name": request.name,
        "environment": request.environment,
        "host": request.host,
        "dialect": target.dialect,
        "database": target.dbname,
        "server": target.label,
        "revision": revision,
        "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration": round(time.monotonic() - started, 3),
        "file": os.path.basename(path),
        "size": size,
        "sha256": checksum,
    }
    manifest.update(facts)
    manifest_path = path + MANIFEST_SUFFIX
    _write_private_json(manifest_path, manifest)
    result.update(changed=True, path=path, manifest_path=manifest_path, manifest=manifest, duration=manifest["duration"])
    retention = _retention(request, check_mode, now)
    if retention is not None:
        result["retention"] = retention


def _private_temp(directory: str, filename: str) -> str:
    """An empty 0600 temp file beside the backup, named after this process (see remove_stale_partials)."""
    fd, temp_path = tempfile.mkstemp(prefix=".%s.pid%d." % (filename, os.getpid()), suffix=".partial", dir=directory)
    os.close(fd)
    os.chmod(temp_path, 0o600)
    return temp_path


def remove_stale_partials(directory: str, now: datetime | None = None) -> list[str]:
    """Delete the .partial files that dead processes (killed backups) left in a backup directory; returns them."""
    removed: list[str] = []
    for path in stale_partials(directory, now):
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise FleetError(
                "cannot delete the left-over partial backup %s (%s): fix the backup directory's permissions." % (path, exc.strerror or exc)
            ) from None
        removed.append(path)
    return removed


def orphan_partials(directory: str, now: datetime | None = None) -> list[dict[str, Any]]:
    """What status reports: the partial backups in a database's backup directory that no live process writes.

    Each {path, pid (None for an older version's), bytes, modified_at (UTC)}.
    """
    stale = set(stale_partials(directory, now))
    return [
        {"path": item.path, "pid": item.pid, "bytes": item.size, "modified_at": item.modified_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
        for item in partial_files(directory)
        if item.path in stale
    ]


def _retention(request: BackupRequest, check_mode: bool, now: datetime) -> dict[str, Any] | None:
    """Prune older backups of this database after a good one (or say what would go)."""
    keep_last = request.keep_last
    if not keep_last:
        return None
    directory, keep_days, protect = request.directory, request.keep_days, list(request.protect)
    if not check_mode:
        plan = plan_retention(directory, keep_last, keep_days, protect, now)
        deleted = apply_retention(plan)
        return {"deleted": deleted, "kept": plan.keep, "deleted_partials": plan.partials}
    # The backup this run would add is the newest and takes one of keep_last's places.
    plan = plan_retention(directory, max(keep_last - 1, 1), keep_days, protect, now)
    would_delete = list(plan.delete)
    if keep_last == 1:
        would_delete.extend(p for p in plan.keep if plan.reasons.get(p) == NEWEST)
    return {"would_delete": would_delete}


def _place(temp_path: str, directory: str, filename: str) -> str:
    """Move the verified file to its name without ever replacing another backup."""
    stem, ext = os.path.splitext(filename)
    for attempt in range(1000):
        path = os.path.join(directory, filename if attempt == 0 else "%s-%d%s" % (stem, attempt, ext))
        try:
            os.link(temp_path, path)  # fails if the name exists: no check-then-replace race
        except FileExistsError:
            continue
        os.unlink(temp_path)
        return path
    raise FleetError("more than 1000 backups named %s in %s: clean up the backup directory." % (filename, directory))


def _write_private_json(path: str, payload: dict[str, Any]) -> None:
    fd, temp_path = tempfile.mkstemp(prefix=".manifest.pid%d." % os.getpid(), suffix=".partial", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.chmod(temp_path, 0o600)
        os.replace(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.unlink(temp_path)
        raise


def verify_backup(path: str) -> dict[str, Any]:
    """Read a backup's manifest and check the file's size and sha256 against it."""
    manifest_path = path + MANIFEST_SUFFIX
    if not os.path.isfile(path):
        raise FleetError("backup %s does not exist: check the path (the ledger names the backup of each run)." % path)
    try:
        with open(manifest_path) as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as exc:
        raise FleetError("backup manifest %s cannot be read (%s): the backup is not usable." % (manifest_path, exc)) from None
    if not isinstance(manifest, dict):
        raise FleetError("backup manifest %s is not a manifest written by db_backup: the backup is not usable." % manifest_path)
    if os.path.getsize(path) != manifest.get("size") or sha256_file(path) != manifest.get("sha256"):
        raise FleetError("backup %s does not match its manifest's checksum: it is damaged; do not restore it." % path)
    return manifest

# -*- coding: utf-8 -*-
# Restoring a backup written by db_backup, so that the original database is
# either replaced by a complete, checked copy or left exactly as it was.
#
# Every input is checked before anything is touched: the file and its
# manifest, the checksum, that it is a backup of this database (name,
# dialect, the checksum the ledger expects) and that the target exists.
# PostgreSQL: pg_restore into a fresh scratch database, with the dump's owners
# and privileges and the original database's own owner, grants and settings
# (what the user may not give back is refused before anything is touched),
# check its revision, carry the ledger's history over, then swap the names
# from the maintenance database. SQLite: the online backup API into a temp
# file beside the target, the same checks and history, then the online backup
# API onto the live file.
# A failure before the swap drops the copy and records a 'failed' ledger row
# in the untouched original.
from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import quote

from ansible.module_utils.common.warnings import warn

from ansible.module_utils.fleet.backup.backup import (
    find_pg_binary,
    pg_environment,
    server_facts,
    sqlite_copy,
    tool_major,
    verify_backup,
)
from ansible.module_utils.fleet.backup.catalog import MANIFEST_SUFFIX, ManifestError, manifest_lacks, read_manifest, side_name
from ansible.module_utils.fleet.core.common import (
    DbTarget,
    FleetError,
    conninfo,
    libpq_params,
    plain_table_name,
    private_passfile,
    scrub,
)
from ansible.module_utils.fleet.core.db import (
    DatabaseMissing,
    connect,
    create_engine,
    drop_database,
    error_detail,
)
from ansible.module_utils.fleet.core.options import DEFAULT_MAINTENANCE_DB, DEFAULT_VERSION_TABLE, Connection, LedgerOptions, LockOptions, given
from ansible.module_utils.fleet.core.progress import Progress
from ansible.module_utils.fleet.core.progress import from_environment as progress_from_environment
from ansible.module_utils.fleet.state.ledger import FAILED, SUCCEEDED, Ledger, RunRecord, undo_description
from ansible.module_utils.fleet.state.lock import RunLock

try:
    import sqlalchemy as sa
except ImportError:  # pragma: no cover - reported by the module
    sa = None  # type: ignore[assignment]

APPLICATION_NAME = "alembic-fleet-restore"
RENAME_WAIT = 5.0  # seconds of retries for ended sessions to go (each ALTER DATABASE RENAME also waits up to 5 s itself)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
T = TypeVar("T")


@dataclass
class Plan:
    """Everything the checks established, before anything is written."""

    target: DbTarget
    path: str
    manifest: dict[str, Any]
    revision: str | None  # as the manifest records it
    expected: set[str]  # the heads the restored copy must be at
    current: list[str]  # the heads of the database now
    ledger: Ledger
    record: RunRecord
    version_table: str
    undo_entry_id: str | None
    pg_restore: str | None = None
    server_major: int | None = None
    entries: list[str] = dataclasses.field(default_factory=list)  # PostgreSQL: the backup's table of contents
    properties: DatabaseProperties | None = None  # PostgreSQL: the original's own, to give to the copy
    maintenance_db: str = DEFAULT_MAINTENANCE_DB  # PostgreSQL: where the copy is created and the names are swapped
    keep_replaced: bool = False  # PostgreSQL: keep the replaced original (renamed) instead of dropping it
    lock_wait: float = 0.0  # seconds to wait for another run's lock
    pg_bin_dir: str | None = None
    jobs: int = 1  # pg_restore --jobs: tables' data, indexes and constraints built in parallel


# -- checks -----------------------------------------------------------------------
def _checked_manifest(path: str) -> dict[str, Any]:
    """The manifest of the backup at path, holding what a restore needs; otherwise a FleetError that says what to do."""
    if not os.path.exists(path):
        raise FleetError("backup file %s does not exist: check path (use the 'path' db_backup returned or the ledger's backup_path)." % path)
    if not os.path.isfile(path):
        raise FleetError("backup path %s is not a file: give the backup file itself, not its directory." % path)
    try:
        manifest = read_manifest(path)
    except ManifestError as exc:
        if exc.missing:
            raise FleetError(
                "backup %s has no manifest (%s is missing): restore only backups written by db_backup, with their manifest beside them."
                % (path, os.path.basename(exc.manifest_path))
            ) from None
        raise FleetError("%s: restore only backups with an intact manifest written by db_backup." % exc) from None
    missing = manifest_lacks(manifest)
    if missing:
        raise FleetError(
            "backup manifest %s lacks %s: it was not written by db_backup; restore only db_backup's backups." % (path + MANIFEST_SUFFIX, ", ".join(missing))
        )
    return manifest


def expected_heads(revision: str | None) -> set[str]:
    """The heads a manifest revision stands for ('' / None: unversioned; 'a+b': two heads)."""
    return {part for part in re.split(r"[+\s,]+", revision or "") if part}


def check_backup(path: str, name: str, target: DbTarget, expected_sha256: str | None) -> dict[str, Any]:
    """Refuse, in one sentence, any backup that must not be restored into this database."""
    manifest = _checked_manifest(path)
    if manifest.get("name") != name:
        raise FleetError(
            "backup %s is a backup of '%s', not of '%s': restore a backup from %s's own backup directory." % (path, manifest.get("name"), name, name)
        )
    if manifest.get("dialect") != target.dialect:
        raise FleetError(
            "backup %s is a %s backup but url points to a %s database: restore it into a %s database of '%s'."
            % (path, manifest.get("dialect"), target.dialect, manifest.get("dialect"), name)
        )
    if expected_sha256:
        wanted = expected_sha256.strip().lower()
        if not _SHA256.match(wanted):
            raise FleetError("expected_sha256 '%s' is not a SHA-256 checksum: give the 64 hex digits the ledger or manifest records." % expected_sha256)
        if str(manifest.get("sha256")).lower() != wanted:
            raise FleetError(
                "backup %s has sha256 %s but expected_sha256 is %s: it is not the backup you meant; check path against the ledger's backup_path."
                % (path, manifest.get("sha256"), wanted)
            )
    verify_backup(path)  # size and sha256 of the file: "damaged; do not restore it"
    return manifest


def _db_detail(exc: BaseException, target: DbTarget) -> str:
    return error_detail(exc, target)[:400].rstrip(" .")


def read_heads(conn: Any, version_table: str) -> list[str]:
    if not sa.inspect(conn).has_table(version_table):
        return []
    rows = conn.execute(sa.select(sa.column("version_num")).select_from(sa.table(version_table)))
    return sorted(str(row[0]) for row in rows)


def _has_entry(conn: Any, ledger: Ledger, entry_id: str) -> bool:
    if not ledger.exists(conn):
        return False
    query = sa.select(ledger.table.c.entry_id).where(ledger.table.c.entry_id == entry_id)
    return conn.execute(query).first() is not None


def _inspect_original(target: DbTarget, ledger: Ledger, version_table: str, undo_entry_id: str | None) -> list[str]:
    """The database's heads now; refuses an undo_entry_id its ledger does not hold. Writes nothing."""
    engine = create_engine(target)
    try:
        conn = connect(engine, target)
        try:
            with conn.begin():
                current = read_heads(conn, version_table)
                if undo_entry_id and not _has_entry(conn, ledger, undo_entry_id):
                    raise FleetError(
                        "undo_entry_id %s is not in the ledger table %s of %s: give the entry_id of the run this restore undoes, or leave undo_entry_id out."
                        % (undo_entry_id, ledger.name, target.label)
                    )
        except sa.exc.DBAPIError as exc:
            raise FleetError("reading %s failed (%s): check the database and version_table." % (target.label, _db_detail(exc, target))) from None
        finally:
            conn.close()
    finally:
        engine.dispose()
    return current


def plan(params: dict[str, Any]) -> Plan:
    """Every check of a restore, before anything is written: the Plan that restore() carries out.

    params: the module's (url, password, path, name, expected_sha256, version_table, ledger_table, maintenance_db,
    pg_bin_dir, undo_entry_id, keep_replaced, lock_wait, record), read once here. Checks, in order: the URL, path,
    version_table and ledger_table; the backup (manifest, name, dialect, checksum); then (PostgreSQL) that the
    maintenance database is another one (before connecting), that the database exists and the maintenance database
    can be reached, that pg_restore is new enough for the dump; (SQLite) that the file exists; then the original's
    heads and the undo_entry_id in its ledger, and (PostgreSQL) the dump's table of contents and that the user may give
    the copy its owners, grants and settings. Returns the Plan; raises FleetError (DatabaseMissing turned into one)
    saying what to do."""
    connection = Connection.from_params(params)
    lock = LockOptions.from_params(params)
    target = connection.target
    path = given(params, "path", "").strip()
    if not path:
        raise FleetError("path is empty: give the backup file to restore (the ledger's backup_path of the run).")
    path = os.path.abspath(os.path.expanduser(params["path"]))
    name = params["name"]
    version_table = plain_table_name(given(params, "version_table", DEFAULT_VERSION_TABLE), "version_table")
    ledger = Ledger(LedgerOptions.from_params(params).table)
    manifest = check_backup(path, name, target, params.get("expected_sha256"))
    record = RunRecord.from_params(params, "restore")
    record = dataclasses.replace(
        record,
        name=record.name or name,
        environment=record.environment or str(manifest.get("environment") or ""),
        host=record.host or str(manifest.get("host") or ""),
        backup_path=record.backup_path or path,
        backup_sha256=record.backup_sha256 or manifest.get("sha256"),
    )
    step = Plan(
        target=target,
        path=path,
        manifest=manifest,
        revision=manifest.get("revision") or None,
        expected=expected_heads(manifest.get("revision")),
        current=[],
        ledger=ledger,
        record=record,
        version_table=version_table,
        undo_entry_id=given(params, "undo_entry_id", None),
        maintenance_db=connection.maintenance_db,
        keep_replaced=bool(params.get("keep_replaced")),
        lock_wait=lock.wait,
        pg_bin_dir=given(params, "pg_bin_dir", None),
        jobs=restore_jobs(params.get("jobs")),
    )
    if target.dialect == "postgresql":
        if step.maintenance_db == target.dbname:  # checked first: no connection needed
            raise FleetError(
                "maintenance_db is the database being restored (%s): a database cannot be renamed from inside itself; use another one, such as postgres."
                % target.dbname
            )
        try:
            _version, step.server_major = server_facts(target, APPLICATION_NAME)
        except DatabaseMissing:
            raise FleetError(
                "database '%s' does not exist on %s:%s: db_restore only replaces an existing database; create it empty (owned by %s) and run the restore again."
                % (target.dbname, target.host or "localhost", target.port or 5432, target.user or "the restoring user")
            ) from None
        engine = create_engine(target, dbname=step.maintenance_db)
        try:
            _connect_maintenance(engine, target, step.maintenance_db).close()
        finally:
            engine.dispose()
        step.pg_restore = pg_restore_for(step.server_major, step.pg_bin_dir, manifest)
    elif not os.path.isfile(target.dbname):
        raise FleetError(
            "SQLite database file %s does not exist: db_restore only replaces an existing database; check url, or copy the backup into place by hand."
            % target.dbname
        )
    step.current = _inspect_original(target, ledger, version_table, step.undo_entry_id)
    if target.dialect == "postgresql":
        step.entries = dump_entries(str(step.pg_restore), path)
        step.properties = check_access(target, step, step.maintenance_db)
    return step


def pg_restore_for(server_major: int | None, pg_bin_dir: str | None, manifest: dict[str, Any] | None) -> str:
    """The pg_restore for a server of this major version (pg_bin_dir first), refused when it is older than the
    pg_dump that wrote the backup (the manifest's pg_dump_version): it could not read the dump."""
    pg_restore = find_pg_binary("pg_restore", server_major, pg_bin_dir)
    written_by = (manifest or {}).get("pg_dump_version")
    tool = tool_major(pg_restore)
    if isinstance(written_by, int) and tool and tool < written_by:
        raise FleetError(
            "%s is version %d but the backup was written by pg_dump %d: install postgresql-client-%d or point pg_bin_dir at a newer pg_restore."
            % (pg_restore, tool, written_by, written_by)
        )
    return pg_restore


# -- the ledger in the original ----------------------------------------------------
def _start_row(target: DbTarget, step: Plan) -> str:
    engine = create_engine(target)
    try:
        with engine.begin() as conn:
            return step.ledger.start(conn, step.record, step.current)
    except sa.exc.DBAPIError as exc:
        raise FleetError("recording the restore in the ledger of %s failed (%s): nothing was restored." % (target.label, _db_detail(exc, target))) from None
    finally:
        engine.dispose()


def _record_failure(target: DbTarget, step: Plan, entry_id: str, reason: str) -> str:
    """Mark the restore row failed in the original; '' or a note when that failed too."""
    engine = create_engine(target)
    try:
        with engine.begin() as conn:
            step.ledger.finish(conn, entry_id, FAILED, step.current, message=reason)
    except Exception as exc:  # the original reason matters more
        return " (the ledger row could not be marked failed: %s)" % _db_detail(exc, target)
    finally:
        engine.dispose()
    return ""


def _finish_in_copy(original: DbTarget, copy_engine: Any, step: Plan, entry_id: str) -> int:
    """In the copy: check the revision, carry history over, finish the row, mark the undone run."""
    source_engine = create_engine(original)
    try:
        with copy_engine.begin() as dest:
            found = read_heads(dest, step.version_table)
            if set(found) != step.expected:
                raise FleetError(
                    "the restored copy is at %s, not at the manifest's revision %s: the backup does not hold what its manifest says"
                    % (" ".join(found) or "no revision", step.revision or "(none)")
                )
            with source_engine.connect() as source:
                copied = step.ledger.copy_missing(source, dest)
                source.rollback()
            step.ledger.finish(
                dest,
                entry_id,
                SUCCEEDED,
                sorted(step.expected),
                message="restored %s (revision %s)" % (step.path, step.revision or "base"),
            )
            if step.undo_entry_id:
                step.ledger.mark_undone(dest, step.undo_entry_id, entry_id, undo_description(step.record, "restore of %s" % os.path.basename(step.path)))
    except sa.exc.DBAPIError as exc:
        raise FleetError("checking the restored copy failed (%s)" % _db_detail(exc, original)) from None
    finally:
        source_engine.dispose()
        copy_engine.dispose()
    return copied


class SwapIncomplete(FleetError):
    """The one failure after which the original is not where it was: the message says how to put it back."""


def _failed(step: Plan, entry_id: str, exc: BaseException) -> FleetError:
    if isinstance(exc, SwapIncomplete):
        return FleetError("restoring %s into %s failed: %s." % (step.path, step.target.label, str(exc).rstrip(" .")))
    if isinstance(exc, FleetError):
        reason = str(exc).rstrip(" .")
    else:
        reason = "unexpected %s: %s" % (type(exc).__name__, _db_detail(exc, step.target))
    note = _record_failure(step.target, step, entry_id, reason)
    return FleetError(
        "restoring %s into %s failed: %s; the original database is untouched and its ledger records the failure%s."
        % (step.path, step.target.label, reason, note)
    )


# -- PostgreSQL ----------------------------------------------------------------------
def _quote(conn: Any, name: str) -> str:
    return cast(str, conn.dialect.identifier_preparer.quote_identifier(name))


def create_scratch(conn: Any, target: DbTarget, scratch: str, owner: str | None = None) -> None:
    """An empty database from template0 with the original's encoding and locale (provider too), owned by owner
    (None: the user)."""
    major = int(conn.exec_driver_sql("SHOW server_version_num").scalar()) // 10000
    provider = ", datlocprovider, %s" % ("datlocale" if major >= 17 else "daticulocale") if major >= 15 else ""
    row = conn.execute(
        sa.text("SELECT pg_encoding_to_char(encoding), datcollate, datctype%s FROM pg_database WHERE datname = :name" % provider),
        {"name": target.dbname},
    ).first()
    statement = "CREATE DATABASE %s TEMPLATE template0" % _quote(conn, scratch)
    if owner:
        statement += " OWNER %s" % _quote(conn, owner)
    if row:
        statement += " ENCODING %s LC_COLLATE %s LC_CTYPE %s" % tuple(_literal(value) for value in row[:3])
        statement += _locale_provider(row[3:])
    _ddl(conn, statement)


def _ddl(conn: Any, statement: str) -> None:
    """One statement with literals in it: no_parameters, or the driver would read a '%' in them as a placeholder."""
    conn.execution_options(no_parameters=True).exec_driver_sql(statement)


def _locale_provider(row: Any) -> str:
    """The LOCALE_PROVIDER clause of a database that does not use libc (PostgreSQL 15 on: icu; 17 on: builtin)."""
    if not row or row[0] not in ("i", "b") or row[1] is None:
        return ""
    if row[0] == "i":
        return " LOCALE_PROVIDER icu ICU_LOCALE %s" % _literal(row[1])
    return " LOCALE_PROVIDER builtin BUILTIN_LOCALE %s" % _literal(row[1])


def _literal(value: Any) -> str:
    return "'%s'" % str(value).replace("'", "''")


# -- what the application may do: owners, privileges, the database's own grants and settings ----------------------
# pg_restore replays the dump's owners and privileges. What belongs to the database itself (its owner, GRANT ... ON
# DATABASE, ALTER DATABASE / ALTER ROLE ... IN DATABASE ... SET, its comment and connection limit) is not among the
# dump's objects: it is read from the original before anything is touched and copied onto the restored copy.
Grant = tuple[str, str, bool]  # (grantee, '' for PUBLIC; privilege; with grant option)

# Settings whose stored value is a list of quoted names (as pg_dump's variable_is_guc_list_quote knows them): each
# element is given back as a literal of its own, or the whole list would become one name.
LIST_SETTINGS = frozenset(
    ("local_preload_libraries", "search_path", "session_preload_libraries", "shared_preload_libraries", "temp_tablespaces", "unix_socket_directories")
)
DATABASE_OWNER_ROLE = "pg_database_owner"  # owns schema public since PostgreSQL 15: whoever owns the database


@dataclass(frozen=True)
class Setting:
    """One ALTER DATABASE ... SET (role '') or ALTER ROLE <role> IN DATABASE ... SET of the original."""

    role: str
    name: str
    value: str


@dataclass(frozen=True)
class DatabaseProperties:
    """The original database's own properties, and how the restoring user may give them to the copy."""

    user: str  # the restoring user (current_user)
    owner: str
    grants: frozenset[Grant]  # its ACL, the owner's default one spelled out when it has none
    settings: tuple[Setting, ...]
    comment: str | None
    connection_limit: int
    set_role: frozenset[str]  # roles whose settings are written as that role (the user is a member, nothing more)


def dump_entries(pg_restore: str, path: str) -> list[str]:
    """The backup's table of contents (pg_restore --list), one entry a line, in the archive's order."""
    done = subprocess.run([pg_restore, "--list", path], capture_output=True, text=True, errors="replace", check=False)
    if done.returncode != 0:
        raise FleetError(
            "pg_restore --list cannot read backup %s (%s): restore only db_backup's custom-format dumps."
            % (path, " ".join(done.stderr.split())[:300] or "exit %d" % done.returncode)
        )
    return [line for line in done.stdout.splitlines() if line.strip() and not line.startswith(";")]


def _entry_text(line: str) -> str:
    """'TABLE public t2 owner2' of the entry '217; 1259 16397 TABLE public t2 owner2'."""
    parts = line.split(" ", 3)
    return parts[3] if len(parts) == 4 else ""


def entry_owner(line: str, spaced_roles: list[str]) -> str | None:
    """The owner an entry ends with; None when it has none (an extension). Names are not quoted in the listing, so a
    role name with a space in it is recognised from the roles the server has."""
    if line.endswith(" "):
        return None
    for role in sorted(spaced_roles, key=len, reverse=True):
        if line.endswith(" " + role):
            return role
    return line.rsplit(" ", 1)[-1]


# Entries that belong to an object of another entry (its data, privileges, comment): not named as what a role owns.
_PARTS = ("TABLE DATA ", "ACL ", "COMMENT ", "SECURITY LABEL ", "SEQUENCE SET ", "SEQUENCE OWNED BY ")


def dump_owners(entries: list[str], spaced_roles: list[str]) -> dict[str, list[str]]:
    """Each owner the backup names, with the objects it owns ('TABLE public t2'; the entries of their parts only
    when it owns nothing else)."""
    owners: dict[str, list[str]] = {}
    parts: dict[str, list[str]] = {}
    for line in entries:
        owner = entry_owner(line, spaced_roles)
        if owner:
            text = _entry_text(line)[: -len(owner)].strip()
            (parts if text.startswith(_PARTS) else owners).setdefault(owner, []).append(text)
    return {owner: owners.get(owner) or parts[owner] for owner in {*owners, *parts}}


def restore_passes(entries: list[str]) -> list[list[str]]:
    """The entries in the pg_restore runs that restore them with their owners: first the schemas with their
    privileges, then the rest. pg_restore gives privileges only after every object and its owner, but a user who is
    not a superuser can only make a role a table's owner when that role may create in the table's schema."""
    schemas = {_entry_text(line)[len("SCHEMA - ") :] for line in entries if _entry_text(line).startswith("SCHEMA - ")}

    def first(line: str) -> bool:
        text = _entry_text(line)
        if text.startswith("SCHEMA - "):
            return True
        schema = text[len("ACL - SCHEMA ") :] if text.startswith("ACL - SCHEMA ") else None
        return schema is not None and (schema in schemas or schema.startswith("public "))  # public: made by CREATE DATABASE

    early = [line for line in entries if first(line)]
    if not any(_entry_text(line).startswith("ACL - ") for line in early):
        return [entries]  # no schema privileges to give first: one run, as fast as a plain pg_restore
    return [early, [line for line in entries if not first(line)]]


def _role_facts(conn: Any, names: set[str], server_major: int | None) -> dict[str, tuple[bool, bool, bool]]:
    """name -> (is superuser, the user may become it (SET ROLE, set it as owner), the user has its privileges)."""
    if not names:
        return {}
    mode = "SET" if (server_major or 0) >= 16 else "MEMBER"  # 16 split SET from membership
    rows = conn.execute(
        sa.text(
            "SELECT rolname, rolsuper, pg_has_role(current_user, oid, :mode), pg_has_role(current_user, oid, 'USAGE') FROM pg_roles WHERE rolname = ANY(:names)"
        ),
        {"mode": mode, "names": sorted(names)},
    )
    return {str(row[0]): (bool(row[1]), bool(row[2]), bool(row[3])) for row in rows}


def database_grants(conn: Any, dbname: str) -> frozenset[Grant]:
    rows = conn.execute(
        sa.text(
            "SELECT coalesce(r.rolname, ''), a.privilege_type, a.is_grantable FROM pg_database d"
            " CROSS JOIN LATERAL aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) AS a"
            " LEFT JOIN pg_roles r ON r.oid = a.grantee WHERE d.datname = :name"
        ),
        {"name": dbname},
    )
    return frozenset((str(row[0]), str(row[1]), bool(row[2])) for row in rows)


def _database_settings(conn: Any, dbname: str) -> tuple[Setting, ...]:
    rows = conn.execute(
        sa.text(
            "SELECT coalesce(r.rolname, ''), s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase"
            " LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE d.datname = :name ORDER BY 1"
        ),
        {"name": dbname},
    )
    settings = []
    for role, config in rows:
        for item in config or []:
            name, _sep, value = str(item).partition("=")
            settings.append(Setting(str(role), name, value))
    return tuple(settings)


def _superuser_only(target: DbTarget, maintenance_db: str, names: set[str], server_major: int | None) -> list[str]:
    """The settings among names that only a superuser (from 15 also a holder of SET on it) may store: those the
    server does not allow every user to set, and placeholders of modules it has not loaded. Asked from the
    maintenance database, where the original's own settings define no placeholders."""
    if not names:
        return []
    granted = " AND NOT has_parameter_privilege(n, 'SET')" if (server_major or 0) >= 15 else ""
    engine = create_engine(target, dbname=maintenance_db)
    try:
        with _connect_maintenance(engine, target, maintenance_db) as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT n FROM unnest(CAST(:names AS text[])) AS n"
                    " WHERE NOT EXISTS (SELECT 1 FROM pg_settings s WHERE lower(s.name) = lower(n) AND s.context = 'user')" + granted
                ),
                {"names": sorted(names)},
            )
            return sorted(str(row[0]) for row in rows)
    finally:
        engine.dispose()


def _owner_problems(user: str, owners: dict[str, list[str]], facts: dict[str, tuple[bool, bool, bool]]) -> list[tuple[str, str]]:
    problems = []
    for owner, owned in sorted(owners.items()):
        if owner in (user, DATABASE_OWNER_ROLE):  # pg_database_owner: the database's owner, checked on its own
            continue
        example = owned[0] + (" and %d more" % (len(owned) - 1) if len(owned) > 1 else "")
        if owner not in facts:
            problems.append(("objects owned by %s, which is no role on this server (%s)" % (owner, example), "CREATE ROLE %s" % _sql_name(owner)))
        elif not facts[owner][1]:
            problems.append(("objects owned by %s (%s)" % (owner, example), _grant_role(owner, user, facts)))
    return problems


def _grant_role(role: str, user: str, facts: dict[str, tuple[bool, bool, bool]]) -> str:
    """'GRANT role TO user'; '' for a superuser role, whose membership would make the user one."""
    return "" if facts.get(role, (False,))[0] else "GRANT %s TO %s" % (_sql_name(role), _sql_name(user))


def _sql_name(name: str) -> str:
    """name as it is written in SQL: quoted unless it is a plain lower-case identifier."""
    return name if re.match(r"^[a-z_][a-z0-9_$]*$", name) else '"%s"' % name.replace('"', '""')


def _settings_problems(
    user: str, settings: tuple[Setting, ...], direct: set[str], facts: dict[str, tuple[bool, bool, bool]], superuser_only: list[str]
) -> list[tuple[str, str]]:
    problems = []
    for role in sorted({s.role for s in settings if s.role and s.role not in direct}):
        if not facts.get(role, (False, False, False))[1]:
            problems.append(("the settings of ALTER ROLE %s IN DATABASE" % role, _grant_role(role, user, facts)))
    if superuser_only:
        names = ", ".join(superuser_only)
        problems.append(("the superuser-only setting %s" % names, "GRANT SET ON PARAMETER %s TO %s" % (names, _sql_name(user))))
    return problems


def _direct_writers(user: str, superuser: bool, createrole: bool, facts: dict[str, tuple[bool, bool, bool]], server_major: int | None) -> set[str]:
    """Roles whose ALTER ROLE ... IN DATABASE the user may write as itself; the others only as the role (SET ROLE)."""
    if superuser:
        return {user} | set(facts)
    if createrole and (server_major or 0) < 16:  # from 16 CREATEROLE needs ADMIN OPTION on the role as well
        return {user} | {role for role, (is_super, _set, _usage) in facts.items() if not is_super}
    return {user}


def check_access(target: DbTarget, step: Plan, maintenance_db: str) -> DatabaseProperties:
    """Read the original's own properties and refuse, before anything is touched, a restore whose owners, database
    owner or settings the restoring user may not give to the copy. Writes nothing."""
    engine = create_engine(target)
    try:
        with connect(engine, target) as conn:
            user, owner, limit, comment, superuser, createrole = conn.execute(
                sa.text(
                    "SELECT current_user, pg_get_userbyid(d.datdba), d.datconnlimit, shobj_description(d.oid, 'pg_database'), me.rolsuper,"
                    " me.rolcreaterole FROM pg_database d, pg_roles me WHERE d.datname = current_database() AND me.rolname = current_user"
                )
            ).one()
            spaced = [str(row[0]) for row in conn.execute(sa.text("SELECT rolname FROM pg_roles WHERE rolname LIKE '% %'"))]
            owners = dump_owners(step.entries, spaced)
            settings = _database_settings(conn, target.dbname)
            facts = _role_facts(conn, set(owners) | {s.role for s in settings if s.role} | {owner}, step.server_major)
            grants = database_grants(conn, target.dbname)
        # A superuser role's own settings are written as that role, which then is a superuser: no parameter is out of reach.
        ours = {s.name for s in settings if not (s.role and facts.get(s.role, (False,))[0])}
        superuser_only = [] if superuser else _superuser_only(target, maintenance_db, ours, step.server_major)
    except sa.exc.DBAPIError as exc:
        raise FleetError("reading the owners, grants and settings of %s failed (%s): nothing was restored." % (target.label, _db_detail(exc, target))) from None
    finally:
        engine.dispose()
    direct = _direct_writers(user, superuser, createrole, facts, step.server_major)
    problems = _access_problems(user, owner, owners, settings, direct, facts, superuser_only)
    if problems:
        raise FleetError(_access_refusal(step.path, target.label, user, problems))
    return DatabaseProperties(
        user=str(user),
        owner=str(owner),
        grants=grants,
        settings=settings,
        comment=comment,
        connection_limit=int(limit),
        set_role=frozenset(s.role for s in settings if s.role and s.role not in direct),
    )


def _access_problems(
    user: str,
    owner: str,
    owners: dict[str, list[str]],
    settings: tuple[Setting, ...],
    direct: set[str],
    facts: dict[str, tuple[bool, bool, bool]],
    superuser_only: list[str],
) -> list[tuple[str, str]]:
    """What the user may not give the copy, each with the statement that would let it: the database's owner (the
    user must be able to become it and have its privileges), the owners the dump names, and the settings."""
    problems = []
    if owner != user and not (facts.get(owner, (False, False, False))[1] and facts[owner][2]):
        problems.append(("the database's owner %s" % owner, _grant_role(owner, user, facts)))
    problems += _owner_problems(user, owners, facts)
    problems += _settings_problems(user, settings, direct, facts, superuser_only)
    return problems


def _access_refusal(path: str, label: str, user: str, problems: list[tuple[str, str]]) -> str:
    """One sentence: every problem, then each fix once (in order); a superuser role's needs have no fix but that."""
    fixes = ", ".join(dict.fromkeys(fix for _, fix in problems if fix))
    return "restoring %s into %s needs rights %s lacks to give the copy what the original has: %s; %s; nothing was touched." % (
        path,
        label,
        user,
        "; ".join(p for p, _ in problems),
        fixes + ", or restore as a superuser" if fixes else "restore as a superuser",
    )


def _grant_statements(conn: Any, dbname: str, want: frozenset[Grant], have: frozenset[Grant]) -> list[str]:
    """REVOKE and GRANT ... ON DATABASE dbname that turn the privileges it has into the ones wanted."""
    database = "DATABASE %s" % _quote(conn, dbname)
    wanted = {(grantee, privilege): option for grantee, privilege, option in want}
    present = {(grantee, privilege): option for grantee, privilege, option in have}

    def who(grantee: str) -> str:
        return _quote(conn, grantee) if grantee else "PUBLIC"

    statements = []
    for (grantee, privilege), option in sorted(present.items()):
        if (grantee, privilege) not in wanted:
            statements.append("REVOKE %s ON %s FROM %s" % (privilege, database, who(grantee)))
        elif option and not wanted[(grantee, privilege)]:
            statements.append("REVOKE GRANT OPTION FOR %s ON %s FROM %s" % (privilege, database, who(grantee)))
    for (grantee, privilege), option in sorted(wanted.items()):
        if present.get((grantee, privilege)) is None or (option and not present[(grantee, privilege)]):
            statements.append("GRANT %s ON %s TO %s%s" % (privilege, database, who(grantee), " WITH GRANT OPTION" if option else ""))
    return statements


def carry_grants(conn: Any, dbname: str, properties: DatabaseProperties) -> int:
    """The original's GRANT ... ON DATABASE, comment and connection limit on the copy (before pg_restore: a schema's
    owner needs CREATE on the database); the number of GRANT and REVOKE statements."""
    grants = _grant_statements(conn, dbname, properties.grants, database_grants(conn, dbname))
    statements = list(grants)
    if properties.comment is not None:
        statements.append("COMMENT ON DATABASE %s IS %s" % (_quote(conn, dbname), _literal(properties.comment)))
    if properties.connection_limit != -1:
        statements.append("ALTER DATABASE %s CONNECTION LIMIT %d" % (_quote(conn, dbname), properties.connection_limit))
    for statement in statements:
        _ddl(conn, statement)
    return len(grants)


def guc_list(value: str) -> list[str]:
    """The elements of a list setting as the server stores it ('"$user", public'): quoted names or bare words."""
    items: list[str] = []
    rest = value.strip()
    while rest:
        match = re.match(r'"((?:[^"]|"")*)"\s*(?:,\s*|$)', rest) if rest.startswith('"') else re.match(r"([^,]*?)\s*(?:,\s*|$)", rest)
        if match is None:  # not a list as the server writes one: give it back whole
            return [value]
        items.append(match.group(1).replace('""', '"'))
        rest = rest[match.end() :]
    return items


def setting_statement(conn: Any, dbname: str, setting: Setting) -> str:
    where = "DATABASE %s" % _quote(conn, dbname)
    if setting.role:
        where = "ROLE %s IN %s" % (_quote(conn, setting.role), where)
    if setting.name.lower() in LIST_SETTINGS:
        value = ", ".join(_literal(item) for item in guc_list(setting.value)) or "''"
    else:
        value = _literal(setting.value)
    return "ALTER %s SET %s TO %s" % (where, _quote(conn, setting.name), value)


def carry_settings(conn: Any, dbname: str, properties: DatabaseProperties) -> None:
    """The original's ALTER DATABASE / ALTER ROLE ... IN DATABASE ... SET on the copy. Last before the swap: they
    would apply to our own sessions on the copy too (a search_path, a statement_timeout)."""
    for setting in properties.settings:
        as_role = setting.role in properties.set_role
        if as_role:  # a role's own defaults may be changed by the role itself, so by a member through SET ROLE
            _ddl(conn, "SET ROLE %s" % _quote(conn, setting.role))
        try:
            _ddl(conn, setting_statement(conn, dbname, setting))
        finally:
            if as_role:
                _ddl(conn, "RESET ROLE")


def restore_jobs(jobs: Any) -> int:
    """pg_restore's --jobs for a restore: the given number, or (None, 0) as many as the machine has cores, at most 4."""
    if jobs is not None and int(jobs) < 0:
        raise FleetError("jobs is %s: give 1 or more parallel pg_restore jobs, or 0 for one per core (at most 4)." % jobs)
    return int(jobs) if jobs else max(1, min(4, os.cpu_count() or 1))


def run_pg_restore(
    target: DbTarget,
    pg_restore: str,
    path: str,
    dbname: str,
    *,
    passes: list[list[str]] | None,
    progress: Progress | None = None,
    step: str = "restore",
    jobs: int = 1,
) -> float:
    """pg_restore a custom-format backup into the (new, empty) database dbname of the target's server; its seconds.

    jobs > 1: pg_restore --jobs, so tables' data, indexes and constraints are built in parallel; without
    --single-transaction, which --jobs excludes: the copy is a scratch database, dropped whole when anything fails,
    so one transaction adds no safety there.

    passes: the backup's entries, one list for each pg_restore run, restored with their owners and privileges
    (restore_passes); None: one run without owners and privileges (everything owned by the user: a drill's copy).
    progress: where to say which object is being restored (by default the one the module's action plugin asked for)."""
    progress = progress_from_environment() if progress is None else progress
    progress.step(step, "pg_restore starting")
    total = sum(len(entries) for entries in passes) if passes is not None else len(dump_entries(pg_restore, path)) if progress.enabled else 0
    counter = _RestoreCounter(progress, total, parallel=jobs > 1)
    if passes is None:
        return _pg_restore(target, [pg_restore, "--no-owner", "--no-privileges"], path, dbname, counter, jobs)
    seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="fleet-restore-") as directory:
        for number, entries in enumerate(passes):
            listing = os.path.join(directory, "pass%d.list" % number)
            with open(listing, "w") as handle:
                handle.write("".join(line + "\n" for line in entries))
            seconds += _pg_restore(target, [pg_restore, "--use-list=%s" % listing], path, dbname, counter, jobs)
    return round(seconds, 3)


# pg_restore --verbose: one line as it starts each object ("creating TABLE "public.trades"", "processing data for table
# "public.trades"", "executing SEQUENCE SET ..."), and a few more about itself. They are the progress; they are left
# out of a failure's message, which keeps only what pg_restore says without --verbose.
_VERBOSE_STEP = re.compile(r"^pg_restore: (creating|processing data for table|executing|processing item) (.*)$")
_FINISHED_DATA = re.compile(r"^pg_restore: finished item \d+ TABLE DATA (.*)$")  # --jobs: a worker is done with a table's data
_VERBOSE_ONLY = re.compile(
    r"^pg_restore: (connecting to database|creating |processing |executing |launching item|finished item|finished main|entering |"
    r"dropping |disabling triggers|enabling triggers|setting owner|implied data-only|restoring large object|restored \d+ large object)"
)


class _RestoreCounter:
    """Turns pg_restore's --verbose lines into progress: the object being restored and how many came before it.

    With --jobs, several workers report at once: while a table's data is being loaded (the long part), that stays
    the line, rather than whatever small object another worker started last."""

    def __init__(self, progress: Progress, total: int, parallel: bool = False) -> None:
        self.progress, self.total, self.done, self.parallel = progress, total, 0, parallel
        self.loading: list[str] = []  # tables whose data a worker is loading now, oldest first

    def line(self, text: str) -> None:
        finished = _FINISHED_DATA.match(text)
        if finished is not None:
            tag = finished.group(1).strip()
            self.loading = [name for name in self.loading if name != tag and not name.endswith("." + tag)]
            return
        match = _VERBOSE_STEP.match(text)
        if match is None:
            return
        self.done += 1
        verb, what = match.groups()
        what = " ".join(what.replace('"', "").split())[:120]
        if not self.parallel:
            self.loading = []  # one job: the next object starts when the last one is done
        if verb == "processing data for table":
            self.loading.append(what)
        doing = "restoring the data of table %s" % self.loading[0] if self.loading else "%s %s" % (verb, what)
        count = " (entry %d of %d)" % (min(self.done, self.total), self.total) if self.total else ""
        # A table's data is what takes long: always say when it starts.
        self.progress.update(doing + count, force=verb == "processing data for table")


def _pg_restore(target: DbTarget, command: list[str], path: str, dbname: str, counter: _RestoreCounter | None = None, jobs: int = 1) -> float:
    verbose = counter is not None and counter.progress.enabled
    argv = [
        *command,
        *(["--verbose"] if verbose else []),
        "--exit-on-error",
        *(["--jobs=%d" % jobs] if jobs > 1 else ["--single-transaction"]),
        "--no-password",
        # One connection description (socket directory, sslmode and friends kept; a name with '=' stays a name).
        "--dbname=%s" % conninfo(libpq_params(target, dbname, application_name=APPLICATION_NAME)),
        path,
    ]
    with private_passfile(target.password) as passfile:
        env = pg_environment(target, passfile, APPLICATION_NAME)
        started = time.monotonic()
        if verbose and counter is not None:
            returncode, stderr = _run_reading_stderr(argv, env, counter)
        else:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            returncode, stderr = done.returncode, done.stderr
        seconds = round(time.monotonic() - started, 3)
    if returncode != 0:
        detail = scrub(" ".join(stderr.split())[:400], target.password) or "no message"
        raise FleetError("pg_restore of the backup into a scratch database failed (exit %d): %s" % (returncode, detail))
    return seconds


def _run_reading_stderr(argv: list[str], env: dict[str, str], counter: _RestoreCounter) -> tuple[int, str]:
    """Run pg_restore --verbose, reporting each line as it comes; its exit code and its stderr without the verbose lines."""
    kept: list[str] = []
    with subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        assert proc.stdout is not None
        for text in proc.stdout:
            text = text.rstrip("\n")
            counter.line(text)
            if not _VERBOSE_ONLY.match(text):
                kept.append(text)
        returncode = proc.wait()
    return returncode, "\n".join(kept)


def _end_sessions(conn: Any, dbname: str, server_major: int | None) -> list[str]:
    """Terminate every other session on dbname; returns the ones that could not be ended."""
    rows = conn.execute(
        sa.text("SELECT pid, usename FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"),
        {"name": dbname},
    ).all()
    refused = []
    wait = ", 5000" if (server_major or 0) >= 14 else ""
    for pid, user in rows:
        try:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid%s)" % wait), {"pid": pid})
        except sa.exc.DBAPIError:
            refused.append("%s (pid %s)" % (user, pid))
    return refused


def _rename(conn: Any, old: str, new: str, refused: list[str]) -> None:
    # Ended sessions take a moment to go; sessions we could not end will not go at all.
    deadline = time.monotonic() + (0 if refused else RENAME_WAIT)
    while True:
        try:
            conn.exec_driver_sql("ALTER DATABASE %s RENAME TO %s" % (_quote(conn, old), _quote(conn, new)))
            return
        except sa.exc.DBAPIError as exc:
            in_use = getattr(getattr(exc, "orig", None), "pgcode", None) == "55006"
            if not in_use:
                raise
            if time.monotonic() > deadline:
                who = "; sessions the user may not end: %s" % ", ".join(refused) if refused else ""
                raise FleetError(
                    "database '%s' is still in use after its sessions were told to end%s: end them (or grant the user pg_signal_backend) and restore again"
                    % (old, who)
                ) from None
            time.sleep(0.2)


def _swap(conn: Any, step: Plan, scratch: str, replaced: str) -> None:
    """Put the scratch copy in the original's place; on failure the original is back where it was."""
    original = step.target.dbname
    quoted = _quote(conn, original)
    conn.exec_driver_sql("ALTER DATABASE %s ALLOW_CONNECTIONS false" % quoted)
    try:
        refused = _end_sessions(conn, original, step.server_major)
        _rename(conn, original, replaced, refused)
    except BaseException:
        conn.exec_driver_sql("ALTER DATABASE %s ALLOW_CONNECTIONS true" % quoted)
        raise
    try:
        _rename(conn, scratch, original, [])
    except BaseException:
        try:
            _rename(conn, replaced, original, [])
            conn.exec_driver_sql("ALTER DATABASE %s ALLOW_CONNECTIONS true" % quoted)
        except Exception as exc:
            raise SwapIncomplete(
                "the swap stopped half-way and the original database could not be put back (%s): it is now named %s and closed to connections;"
                " rename it back to %s and ALTER DATABASE ... ALLOW_CONNECTIONS true by hand" % (_db_detail(exc, step.target), replaced, original)
            ) from None
        raise


def _connect_maintenance(engine: Any, target: DbTarget, name: str) -> Any:
    try:
        return engine.connect()
    except sa.exc.DBAPIError as exc:
        raise FleetError(
            "cannot connect to the maintenance database '%s' on %s:%s (%s): set maintenance_db to a database the user may connect to; nothing was restored."
            % (name, target.host or "localhost", target.port or 5432, _db_detail(exc, target))
        ) from None


def _settle_replaced(admin: Any, step: Plan, replaced: str, entry_id: str, keep: bool, result: dict[str, Any]) -> None:
    """Drop the replaced database, or keep it connectable with its ledger saying what happened."""
    target = step.target
    try:
        if not keep:
            drop_database(admin, replaced)
            return
        admin.exec_driver_sql("ALTER DATABASE %s ALLOW_CONNECTIONS true" % _quote(admin, replaced))
        result["replaced_database"] = replaced
        engine = create_engine(target, dbname=replaced)
        try:
            with engine.begin() as conn:
                step.ledger.finish(
                    conn,
                    entry_id,
                    SUCCEEDED,
                    sorted(step.expected),
                    message="this database was replaced by the restore of %s and kept as %s" % (step.path, replaced),
                )
        finally:
            engine.dispose()
    except sa.exc.DBAPIError as exc:
        result["replaced_database"] = replaced
        warn(
            "the restore succeeded, but the replaced database %s could not be %s (%s): %s it by hand."
            % (replaced, "reopened" if keep else "dropped", _db_detail(exc, target), "check" if keep else "drop")
        )


def _carry(copy: Callable[[Any, str, DatabaseProperties], T], admin: Any, scratch: str, properties: DatabaseProperties, what: str, target: DbTarget) -> T:
    try:
        return copy(admin, scratch, properties)
    except sa.exc.DBAPIError as exc:
        raise FleetError("giving the restored copy the original database's %s failed (%s)" % (what, _db_detail(exc, target))) from None


def _restore_postgresql(step: Plan, result: dict[str, Any]) -> None:
    """The PostgreSQL restore of a checked Plan: a scratch database with the original's owner, grants and
    settings, pg_restore into it, its revision checked and the ledger's history carried over, then the names swapped
    from the maintenance database and the replaced original dropped (or kept with keep_replaced). Fills result; a
    failure before the swap drops the copy and raises FleetError with the original untouched."""
    target = step.target
    properties = cast(DatabaseProperties, step.properties)  # plan() read them for every PostgreSQL restore
    maintenance = create_engine(target, dbname=step.maintenance_db).execution_options(isolation_level="AUTOCOMMIT")
    scratch = side_name(target.dbname, "restore")
    replaced = side_name(target.dbname, "replaced")
    try:
        admin = _connect_maintenance(maintenance, target, step.maintenance_db)
    except BaseException:
        maintenance.dispose()
        raise
    try:
        entry_id = _start_row(target, step)
        result["ledger_entry_id"] = entry_id
        created = False
        try:
            try:
                create_scratch(admin, target, scratch, owner=properties.owner if properties.owner != properties.user else None)
                created = True
            except sa.exc.DBAPIError as exc:
                raise FleetError("creating the scratch database %s failed (%s): the user needs CREATEDB" % (scratch, _db_detail(exc, target))) from None
            grants = _carry(carry_grants, admin, scratch, properties, "grants, comment and connection limit", target)
            result["pg_restore_jobs"] = step.jobs
            result["pg_restore_seconds"] = run_pg_restore(target, str(step.pg_restore), step.path, scratch, passes=restore_passes(step.entries), jobs=step.jobs)
            result["ledger_rows_copied"] = _finish_in_copy(target, create_engine(target, dbname=scratch), step, entry_id)
            _carry(carry_settings, admin, scratch, properties, "settings", target)
            result["database_properties"] = {
                "owner": properties.owner,
                "grant_statements": grants,
                "settings": len(properties.settings),
                "comment": properties.comment is not None,
            }
            try:
                _swap(admin, step, scratch, replaced)
            except sa.exc.DBAPIError as exc:
                raise FleetError("swapping the restored copy into place failed (%s)" % _db_detail(exc, target)) from None
        except BaseException as exc:
            if created:
                try:
                    drop_database(admin, scratch)
                except Exception:  # noqa: BLE001 - the restore's own failure is what matters
                    warn("the scratch database %s could not be dropped: drop it by hand." % scratch)
            raise _failed(step, entry_id, exc) from None
        # The restored copy is in place: what follows cannot undo the restore.
        _settle_replaced(admin, step, replaced, entry_id, step.keep_replaced, result)
    finally:
        admin.close()
        maintenance.dispose()


# -- SQLite ----------------------------------------------------------------------------
def _frozen_uri(path: str) -> str:
    """Read-only, and immutable: no locks and no -wal/-shm files beside a file nobody writes."""
    return "file:%s?mode=ro&immutable=1" % quote(path)


def _copy_with_backup_api(source: sqlite3.Connection, destination: sqlite3.Connection, timeout: float, what: str) -> None:
    """source.backup(destination), giving up (and leaving the destination as it was) when locked for too long."""
    deadline = time.monotonic() + max(timeout, 1.0)

    def progress(status: int, _remaining: int, _total: int) -> None:
        if status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) and time.monotonic() > deadline:
            raise FleetError("%s stayed locked by another connection for %d s" % (what, int(timeout)))

    source.backup(destination, pages=-1, progress=progress)


def _remove_sqlite_files(path: str | None) -> None:
    if not path:
        return
    for name in (path, path + "-journal", path + "-wal", path + "-shm"):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


def copy_backup_into(backup_path: str, temp_path: str) -> None:
    try:
        sqlite_copy(_frozen_uri(backup_path), temp_path)
    except sqlite3.Error as exc:
        raise FleetError("the backup cannot be read as a SQLite database (%s)" % exc) from None


def _copy_onto_live(temp_path: str, live_path: str, timeout: float) -> None:
    try:
        source = sqlite3.connect(_frozen_uri(temp_path), uri=True)
        try:
            destination = sqlite3.connect(live_path, timeout=timeout)
            try:
                _copy_with_backup_api(source, destination, timeout, "the live database %s" % live_path)
            finally:
                destination.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise FleetError("copying the restored copy onto %s failed (%s)" % (live_path, exc)) from None


def _restore_sqlite(step: Plan, result: dict[str, Any]) -> None:
    target = step.target
    live = target.dbname
    entry_id = _start_row(target, step)
    result["ledger_entry_id"] = entry_id
    temp_path = None
    try:
        try:
            fd, temp_path = tempfile.mkstemp(prefix=".%s.restore-" % os.path.basename(live), suffix=".partial", dir=os.path.dirname(live))
        except OSError as exc:
            raise FleetError(
                "cannot create the temporary copy beside %s (%s): the directory must be writable by the restoring user" % (live, exc.strerror)
            ) from None
        os.close(fd)
        os.chmod(temp_path, 0o600)
        copy_backup_into(step.path, temp_path)
        copy = dataclasses.replace(target, dbname=temp_path, url="sqlite:///%s" % temp_path)
        result["ledger_rows_copied"] = _finish_in_copy(target, create_engine(copy), step, entry_id)
        # The backup API writes the whole copy in one transaction: a failure leaves the live file as it was.
        _copy_onto_live(temp_path, live, float(target.connect_timeout))
    except BaseException as exc:
        raise _failed(step, entry_id, exc) from None
    finally:
        _remove_sqlite_files(temp_path)


# -- the operation ---------------------------------------------------------------------
def restore(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    """db_restore: every check first (plan), then, not in check mode, the restore under the run lock (PostgreSQL: a
    scratch copy swapped in; SQLite: the online backup API). Fills result (database, path, manifest, revision, before,
    ledger_entry_id, ...) and returns nothing; raises FleetError with the original untouched before the swap."""
    started = time.monotonic()
    step = plan(params)
    result.update(
        database=step.target.label,
        path=step.path,
        manifest=step.manifest,
        revision=step.revision,
        before=step.current,
    )
    if check_mode:
        result["changed"] = True
        return
    # One run at a time: the lock's own session is ended by the swap, which releases it.
    lock = RunLock(step.target, step.record.run_id, step.record.operator, step.lock_wait)
    with lock.held(step.ledger.running):
        result["lock_waited"] = lock.waited
        if step.target.dialect == "postgresql":
            _restore_postgresql(step, result)
        else:
            _restore_sqlite(step, result)
    result.update(changed=True, duration=round(time.monotonic() - started, 3))

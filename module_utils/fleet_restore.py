# -*- coding: utf-8 -*-
# Restoring a backup written by db_backup, so that the original database is
# either replaced by a complete, checked copy or left exactly as it was.
#
# Every input is checked before anything is touched: the file and its
# manifest, the checksum, that it is a backup of this database (name,
# dialect, the checksum the ledger expects) and that the target exists.
# PostgreSQL: pg_restore into a fresh scratch database, check its revision,
# carry the ledger's history over, then swap the names from the maintenance
# database. SQLite: the online backup API into a temp file beside the target,
# the same checks and history, then the online backup API onto the live file.
# A failure before the swap drops the copy and records a 'failed' ledger row
# in the untouched original.
from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

from ansible.module_utils.common.warnings import warn

from ansible.module_utils.fleet_backup import (
    MANIFEST_SUFFIX,
    find_pg_binary,
    pg_environment,
    server_facts,
    sqlite_copy,
    tool_major,
    verify_backup,
)
from ansible.module_utils.fleet_common import (
    DbTarget,
    FleetError,
    parse_target,
    plain_table_name,
    private_passfile,
    scrub,
)
from ansible.module_utils.fleet_db import (
    DatabaseMissing,
    connect,
    create_engine,
    error_detail,
)
from ansible.module_utils.fleet_ledger import FAILED, SUCCEEDED, Ledger, RunRecord
from ansible.module_utils.fleet_lock import RunLock

try:
    import sqlalchemy as sa
except ImportError:  # pragma: no cover - reported by the module
    sa = None  # type: ignore[assignment]

PG_NAME_LIMIT = 63  # NAMEDATALEN - 1, in bytes
APPLICATION_NAME = "alembic-fleet-restore"
RENAME_WAIT = 5.0  # seconds of retries for ended sessions to go (each ALTER DATABASE RENAME also waits up to 5 s itself)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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


# -- checks -----------------------------------------------------------------------
def _read_manifest(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        raise FleetError("backup file %s does not exist: check path (use the 'path' db_backup returned or the ledger's backup_path)." % path)
    if not os.path.isfile(path):
        raise FleetError("backup path %s is not a file: give the backup file itself, not its directory." % path)
    manifest_path = path + MANIFEST_SUFFIX
    if not os.path.isfile(manifest_path):
        raise FleetError(
            "backup %s has no manifest (%s is missing): restore only backups written by db_backup, with their manifest beside them."
            % (path, os.path.basename(manifest_path))
        )
    try:
        with open(manifest_path) as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as exc:
        raise FleetError(
            "backup manifest %s cannot be read (%s): restore only backups with an intact manifest written by db_backup."
            % (manifest_path, " ".join(str(exc).split()))
        ) from None
    missing = [key for key in ("name", "dialect", "size", "sha256") if not isinstance(manifest, dict) or key not in manifest]
    if missing:
        raise FleetError(
            "backup manifest %s lacks %s: it was not written by db_backup; restore only db_backup's backups." % (manifest_path, ", ".join(missing))
        )
    return cast(dict[str, Any], manifest)  # checked just above: a dict with the keys a restore needs


def expected_heads(revision: str | None) -> set[str]:
    """The heads a manifest revision stands for ('' / None: unversioned; 'a+b': two heads)."""
    return {part for part in re.split(r"[+\s,]+", revision or "") if part}


def check_backup(path: str, name: str, target: DbTarget, expected_sha256: str | None) -> dict[str, Any]:
    """Refuse, in one sentence, any backup that must not be restored into this database."""
    manifest = _read_manifest(path)
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
    target = parse_target(params["url"], params.get("password"), params.get("connect_timeout") or 10)
    if not (params.get("path") or "").strip():
        raise FleetError("path is empty: give the backup file to restore (the ledger's backup_path of the run).")
    path = os.path.abspath(os.path.expanduser(params["path"]))
    name = params["name"]
    version_table = plain_table_name(params.get("version_table") or "alembic_version", "version_table")
    ledger = Ledger(params.get("ledger_table") or "alembic_fleet_ledger")
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
        undo_entry_id=params.get("undo_entry_id") or None,
    )
    if target.dialect == "postgresql":
        if (params.get("maintenance_db") or "postgres") == target.dbname:  # checked first: no connection needed
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
        maintenance_db = params.get("maintenance_db") or "postgres"
        engine = create_engine(target, dbname=maintenance_db)
        try:
            _connect_maintenance(engine, target, maintenance_db).close()
        finally:
            engine.dispose()
        step.pg_restore = find_pg_binary("pg_restore", step.server_major, params.get("pg_bin_dir"))
        written_by = manifest.get("pg_dump_version")
        tool = tool_major(step.pg_restore)
        if isinstance(written_by, int) and tool and tool < written_by:
            raise FleetError(
                "%s is version %d but the backup was written by pg_dump %d: install postgresql-client-%d or point pg_bin_dir at a newer pg_restore."
                % (step.pg_restore, tool, written_by, written_by)
            )
    elif not os.path.isfile(target.dbname):
        raise FleetError(
            "SQLite database file %s does not exist: db_restore only replaces an existing database; check url, or copy the backup into place by hand."
            % target.dbname
        )
    step.current = _inspect_original(target, ledger, version_table, step.undo_entry_id)
    return step


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
                message="restored %s (revision %s)" % (step.path, step.revision or "none"),
            )
            if step.undo_entry_id:
                step.ledger.mark_undone(dest, step.undo_entry_id, entry_id)
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
SIDE_HEX = 6  # hex digits that end a side database's name


def side_prefix(dbname: str, kind: str) -> str:
    """'<dbname>_<kind>_', the database name shortened so that the whole side name fits PostgreSQL's 63 bytes."""
    suffix = "_%s_" % kind
    budget = PG_NAME_LIMIT - len(suffix.encode()) - SIDE_HEX
    return dbname.encode()[:budget].decode("utf-8", errors="ignore") + suffix


def side_name(dbname: str, kind: str) -> str:
    """'<dbname>_<kind>_<6 hex>': a database beside dbname (restore, replaced, drill)."""
    return side_prefix(dbname, kind) + secrets.token_hex(SIDE_HEX // 2)


def _quote(conn: Any, name: str) -> str:
    return cast(str, conn.dialect.identifier_preparer.quote_identifier(name))


def create_scratch(conn: Any, target: DbTarget, scratch: str) -> None:
    """An empty database from template0 with the original's encoding and locale."""
    row = conn.execute(
        sa.text("SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = :name"),
        {"name": target.dbname},
    ).first()
    statement = "CREATE DATABASE %s TEMPLATE template0" % _quote(conn, scratch)
    if row:
        statement += " ENCODING %s LC_COLLATE %s LC_CTYPE %s" % tuple(_literal(value) for value in row)
    conn.exec_driver_sql(statement)


def _literal(value: Any) -> str:
    return "'%s'" % str(value).replace("'", "''")


def run_pg_restore(target: DbTarget, pg_restore: str, path: str, dbname: str) -> float:
    """pg_restore a custom-format backup into the (new, empty) database dbname of the target's server; its seconds."""
    argv = [
        pg_restore,
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--single-transaction",
        "--no-password",
        "--host=%s" % (target.host or "localhost"),
        "--port=%d" % (target.port or 5432),
        "--dbname=%s" % dbname,
    ]
    if target.user:
        argv.append("--username=%s" % target.user)
    argv.append(path)
    with private_passfile(target.password) as passfile:
        env = pg_environment(target, passfile, APPLICATION_NAME)
        started = time.monotonic()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        seconds = round(time.monotonic() - started, 3)
    if done.returncode != 0:
        detail = scrub(" ".join(done.stderr.split())[:400], target.password) or "no message"
        raise FleetError("pg_restore of the backup into a scratch database failed (exit %d): %s" % (done.returncode, detail))
    return seconds


def drop_database(conn: Any, name: str) -> None:
    conn.exec_driver_sql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % _quote(conn, name))


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


def _restore_postgresql(params: dict[str, Any], step: Plan, result: dict[str, Any]) -> None:
    target = step.target
    maintenance = create_engine(target, dbname=params.get("maintenance_db") or "postgres").execution_options(isolation_level="AUTOCOMMIT")
    scratch = side_name(target.dbname, "restore")
    replaced = side_name(target.dbname, "replaced")
    try:
        admin = _connect_maintenance(maintenance, target, params.get("maintenance_db") or "postgres")
    except BaseException:
        maintenance.dispose()
        raise
    try:
        entry_id = _start_row(target, step)
        result["ledger_entry_id"] = entry_id
        created = False
        try:
            try:
                create_scratch(admin, target, scratch)
                created = True
            except sa.exc.DBAPIError as exc:
                raise FleetError("creating the scratch database %s failed (%s): the user needs CREATEDB" % (scratch, _db_detail(exc, target))) from None
            result["pg_restore_seconds"] = run_pg_restore(target, str(step.pg_restore), step.path, scratch)
            result["ledger_rows_copied"] = _finish_in_copy(target, create_engine(target, dbname=scratch), step, entry_id)
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
        _settle_replaced(admin, step, replaced, entry_id, bool(params.get("keep_replaced")), result)
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


def _restore_sqlite(params: dict[str, Any], step: Plan, result: dict[str, Any]) -> None:
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
    lock = RunLock(step.target, step.record.run_id, step.record.operator, params.get("lock_wait") or 0)
    with lock.held(step.ledger.running):
        result["lock_waited"] = lock.waited
        if step.target.dialect == "postgresql":
            _restore_postgresql(params, step, result)
        else:
            _restore_sqlite(params, step, result)
    result.update(changed=True, duration=round(time.monotonic() - started, 3))

# -*- coding: utf-8 -*-
# Restore drills: prove that a backup written by db_backup can be restored,
# without touching the database it belongs to. The newest backup of a
# database (or a given one) is checked against its manifest's SHA-256,
# restored into a scratch copy (PostgreSQL: a new database <db>_drill_<hex>
# on the same server via pg_restore; SQLite: a temporary file), and the copy
# is checked: its revision is the manifest's, its schema is what the
# project's migrations build at that revision (the same scratch comparison
# stamp and verify use), and the row counts of the manifest's largest tables
# are exact. The copy is always dropped. One ledger row (action 'drill') in
# the target database records the outcome and the recovery time; the
# target's data is never read or written otherwise.
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ansible.module_utils.common.warnings import warn

from ansible.module_utils.fleet.alembic.run import AlembicProject, AlembicRun, load_project
from ansible.module_utils.fleet.backup.backup import (
    server_facts,
    sha256_file,
    sqlite_copy,
)
from ansible.module_utils.fleet.backup.catalog import MANIFEST_SUFFIX, ManifestError, manifest_lacks, newest_backup, read_manifest, side_name
from ansible.module_utils.fleet.backup.restore import create_scratch, expected_heads, pg_restore_for, restore_jobs, run_pg_restore
from ansible.module_utils.fleet.core.common import DbTarget, FleetError
from ansible.module_utils.fleet.core.db import DatabaseMissing, create_engine, drop_database, error_detail
from ansible.module_utils.fleet.core.options import Connection, LedgerOptions, Project, given
from ansible.module_utils.fleet.core.progress import from_environment as progress_from_environment
from ansible.module_utils.fleet.schema.scratch import expected_schema_differences
from ansible.module_utils.fleet.state.ledger import FAILED, SUCCEEDED, Ledger, RunRecord, utcnow

try:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
except ImportError:  # pragma: no cover - reported by the module
    sa = None  # type: ignore[assignment]

ACTION = "drill"
APPLICATION_NAME = "alembic-fleet-drill"


@dataclass
class Drill:
    """What is drilled, where, and how it is recorded: established before anything is written."""

    target: DbTarget
    project: AlembicProject
    ledger: Ledger
    record: RunRecord
    path: str
    manifest: dict[str, Any] | None  # None: the manifest cannot be read (the checksum check fails)
    manifest_problem: str | None
    maintenance_db: str
    pg_restore: str | None = None

    @property
    def revision(self) -> str | None:
        return (self.manifest or {}).get("revision") or None

    @property
    def heads(self) -> list[str]:
        return sorted(expected_heads(self.revision))


# -- which backup ---------------------------------------------------------------------
def _choose_backup(path: str | None, backup_dir: str | None, label: str) -> str:
    """The backup to drill: path as given, or the newest backup with a manifest in backup_dir (exactly one of them)."""
    path = (path or "").strip()
    directory = (backup_dir or "").strip()
    if path and directory:
        raise FleetError("give either path (one backup) or backup_dir (its newest backup is drilled), not both.")
    if not path and not directory:
        raise FleetError("give backup_dir (the database's backup directory; its newest backup is drilled) or path (one backup file).")
    if directory:
        directory = os.path.abspath(os.path.expanduser(directory))
        found, skipped = newest_backup(directory)
        if found is None:
            raise FleetError("no backup of %s under %s: run backup.yml first." % (label, directory))
        if skipped:
            warn("newer backups without a manifest were skipped (db_backup did not finish them): %s" % ", ".join(skipped))
        return found
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise FleetError("backup file %s does not exist: check path (db_backup returns it; the ledger records backup_path)." % path)
    if not os.path.isfile(path + MANIFEST_SUFFIX):
        raise FleetError(
            "backup %s has no manifest (%s is missing): drill only backups written by db_backup, with their manifest beside them."
            % (path, os.path.basename(path + MANIFEST_SUFFIX))
        )
    return path


def _usable_manifest(path: str) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest, None), or (None, why it cannot be used): a damaged manifest fails the drill, it does not stop it."""
    try:
        manifest = read_manifest(path)
    except ManifestError as exc:
        return None, "the manifest %s %s" % (exc.manifest_path, exc.problem)
    missing = manifest_lacks(manifest)
    if missing:
        return None, "the manifest %s lacks %s: it was not written by db_backup" % (path + MANIFEST_SUFFIX, ", ".join(missing))
    return manifest, None


# -- the plan -------------------------------------------------------------------------
def plan(params: dict[str, Any]) -> Drill:
    """What a drill checks, before anything is written; params are read once here (Connection, Project, LedgerOptions).

    In order: the URL, the project (loaded), the ledger table, the record (its action must be 'drill'), the backup
    (path, or the newest in backup_dir; exactly one of them), its manifest (a damaged one is kept as a problem for the
    checksum check), that the manifest's dialect is the URL's, then that the target database exists (and, PostgreSQL,
    that pg_restore is new enough for the dump). Returns the Drill; raises FleetError."""
    connection = Connection.from_params(params)
    target = connection.target
    options = Project.from_params(params)
    project = load_project(options.config, options.project_dir, options.ini_section)
    ledger = Ledger(LedgerOptions.from_params(params).table)
    record = RunRecord.from_params(params, ACTION)
    if record.action != ACTION:
        raise FleetError("record.action '%s' is not allowed for a restore drill: leave it out (it is '%s')." % (record.action, ACTION))
    path = _choose_backup(params.get("path"), params.get("backup_dir"), record.name or os.path.basename(target.dbname))
    manifest, problem = _usable_manifest(path)
    if manifest is not None and manifest.get("dialect") not in (None, target.dialect):
        raise FleetError(
            "backup %s is a %s backup but url points to a %s database: drill it with the url of the database it was taken of."
            % (path, manifest.get("dialect"), target.dialect)
        )
    record = dataclasses.replace(
        record,
        name=record.name or str((manifest or {}).get("name") or ""),
        environment=record.environment or str((manifest or {}).get("environment") or ""),
        host=record.host or str((manifest or {}).get("host") or ""),
        backup_path=path,
    )
    step = Drill(
        target=target,
        project=project,
        ledger=ledger,
        record=record,
        path=path,
        manifest=manifest,
        manifest_problem=problem,
        maintenance_db=connection.maintenance_db,
    )
    # The target must be there: the drill is recorded in its ledger (and its server hosts the copy).
    if target.dialect == "postgresql":
        try:
            _version, server_major = server_facts(target, APPLICATION_NAME)
        except DatabaseMissing:
            raise FleetError(
                "database '%s' does not exist on %s:%s: the drill is recorded in the ledger of the database the backup belongs to; check url."
                % (target.dbname, target.host or "localhost", target.port or 5432)
            ) from None
        step.pg_restore = pg_restore_for(server_major, given(params, "pg_bin_dir", None), manifest)
    elif not os.path.isfile(target.dbname):
        raise FleetError(
            "SQLite database file %s does not exist: the drill is recorded in the ledger of the database the backup belongs to; check url." % target.dbname
        )
    return step


# -- the scratch copy -----------------------------------------------------------------
class ScratchCopy:
    """The backup restored somewhere the target never is; remove() always cleans up."""

    def __init__(self, step: Drill) -> None:
        self.step = step
        self.target: DbTarget | None = None
        self.database: str | None = None  # PostgreSQL: the scratch database, once created
        self.directory: str | None = None  # SQLite: the private temporary directory
        self.seconds: float | None = None
        self.progress = progress_from_environment()  # what the drill is doing, for the module's action plugin

    def restore(self) -> str:
        started = time.monotonic()
        if self.step.target.dialect == "postgresql":
            self._restore_postgresql()
        else:
            self._restore_sqlite()
        self.seconds = round(time.monotonic() - started, 3)
        where = "scratch database %s" % self.database if self.database else "a temporary SQLite file"
        return "restored into %s in %.3f s" % (where, self.seconds)

    def _admin(self) -> Any:
        return create_engine(self.step.target, dbname=self.step.maintenance_db).execution_options(isolation_level="AUTOCOMMIT")

    def _restore_postgresql(self) -> None:
        target = self.step.target
        name = side_name(target.dbname, "drill")
        admin = self._admin()
        try:
            with admin.connect() as conn:
                create_scratch(conn, target, name)
        except sa.exc.DBAPIError as exc:
            raise FleetError(
                "creating the scratch database %s failed (%s): the user needs CREATEDB and access to maintenance_db %s"
                % (name, error_detail(exc, target)[:300], self.step.maintenance_db)
            ) from None
        finally:
            admin.dispose()
        self.database = name
        self.target = dataclasses.replace(target, dbname=name, url=make_url(target.url).set(database=name).render_as_string(hide_password=False))
        # checked, then dropped: no owners or grants to keep
        run_pg_restore(
            target, str(self.step.pg_restore), self.step.path, name, passes=None, progress=self.progress, step="restore drill", jobs=restore_jobs(None)
        )

    def _restore_sqlite(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="fleet-drill-")  # 0700
        path = os.path.join(self.directory, os.path.basename(self.step.target.dbname) or "drill.db")
        try:
            sqlite_copy("file:%s?mode=ro&immutable=1" % quote(self.step.path), path, progress=self.progress)
            conn = sqlite3.connect("file:%s?mode=ro" % quote(path), uri=True)
            try:
                verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise FleetError("the backup cannot be read as a SQLite database (%s)" % exc) from None
        if verdict != "ok":
            raise FleetError("the restored copy fails PRAGMA integrity_check (%s)" % " ".join(str(verdict).split())[:300])
        os.chmod(path, 0o600)
        self.target = dataclasses.replace(self.step.target, dbname=path, url="sqlite:///%s" % path)

    def remove(self) -> str | None:
        """Drop the copy; what could not be removed, or None."""
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            if os.path.exists(self.directory):
                return "the temporary directory %s could not be removed: remove it by hand" % self.directory
            self.directory = None
        if self.database:
            admin = self._admin()
            try:
                with admin.connect() as conn:
                    drop_database(conn, self.database)
            except sa.exc.DBAPIError as exc:
                return "the scratch database %s could not be dropped (%s): drop it by hand" % (self.database, error_detail(exc, self.step.target)[:200])
            finally:
                admin.dispose()
            self.database = None
        return None


# -- the checks ---------------------------------------------------------------------
class CheckFailed(FleetError):
    """A check that ran and found the copy wrong."""


def _check_checksum(step: Drill, result: dict[str, Any]) -> str:
    try:
        actual = sha256_file(step.path)
        size = os.path.getsize(step.path)
    except OSError as exc:
        raise CheckFailed("the backup file cannot be read (%s)" % (exc.strerror or exc)) from None
    result["sha256"] = actual
    if step.manifest is None:
        raise CheckFailed(str(step.manifest_problem))
    wanted, wanted_size = step.manifest["sha256"], step.manifest["size"]
    if actual != wanted.lower() or size != wanted_size:
        raise CheckFailed("the file's sha256 is %s (%d bytes) but its manifest says %s (%d bytes): the backup is damaged" % (actual, size, wanted, wanted_size))
    return "sha256 %s and size %d bytes match the manifest" % (actual, size)


def _check_revision(run: AlembicRun, step: Drill) -> str:
    found = sorted(run.probe().current)
    if found != step.heads:
        raise CheckFailed("the restored copy is at %s, but the manifest says %s" % (" ".join(found) or "no revision", " ".join(step.heads) or "no revision"))
    return "the restored copy is at %s, as the manifest says" % (" ".join(found) or "no revision (unversioned)")


def _check_schema(run: AlembicRun, step: Drill) -> str:
    heads = step.heads
    if not heads:
        return "not compared: the backup is of an unversioned database"
    at = ", ".join(heads)
    differences = expected_schema_differences(run, heads, [step.ledger.name], step.maintenance_db)
    if differences:
        raise CheckFailed(
            "the restored schema differs from what the migrations build at %s in %d place(s): %s" % (at, len(differences), "; ".join(differences))
        )
    return "the restored schema is what the migrations build at %s" % at


def _manifest_tables(step: Drill) -> list[tuple[str | None, str, int]]:
    tables = []
    for entry in (step.manifest or {}).get("tables") or []:
        if not (isinstance(entry, dict) and isinstance(entry.get("table"), str) and isinstance(entry.get("rows"), int)):
            raise CheckFailed("the manifest's tables entry %s is not {schema, table, rows}" % json.dumps(entry, sort_keys=True)[:200])
        schema = entry.get("schema")
        tables.append((schema if isinstance(schema, str) and schema else None, entry["table"], entry["rows"]))
    return tables


def _check_row_counts(copy: DbTarget, step: Drill) -> str:
    tables = _manifest_tables(step)
    if not tables:
        return "not compared: the manifest has no row counts (written before count_tables, or with count_tables 0)"
    mismatches, counted = [], []
    engine = create_engine(copy)
    try:
        with engine.connect() as conn:
            quote_name = conn.dialect.identifier_preparer.quote
            inspector = sa.inspect(conn)
            for schema, table, expected in tables:
                label = "%s.%s" % (schema, table) if schema else table
                if not inspector.has_table(table, schema=schema):
                    mismatches.append("%s is missing (the manifest says %d rows)" % (label, expected))
                    continue
                qualified = "%s.%s" % (quote_name(schema), quote_name(table)) if schema else quote_name(table)
                rows = int(conn.exec_driver_sql("SELECT count(*) FROM %s" % qualified).scalar() or 0)
                counted.append("%s %d" % (label, rows))
                if rows != expected:
                    mismatches.append("%s has %d rows, the manifest says %d" % (label, rows, expected))
    finally:
        engine.dispose()
    if mismatches:
        raise CheckFailed("row counts differ from the manifest: %s" % "; ".join(mismatches))
    return "exact row counts of %d table(s) match the manifest: %s" % (len(tables), ", ".join(counted))


def _run_check(checks: list[dict[str, Any]], name: str, fn: Callable[[], str], target: DbTarget) -> bool:
    try:
        detail = fn()
    except FleetError as exc:
        checks.append({"check": name, "ok": False, "detail": " ".join(str(exc).split()).rstrip(" .")})
        return False
    except (sa.exc.SQLAlchemyError, sqlite3.Error, OSError) as exc:
        checks.append({"check": name, "ok": False, "detail": "%s: %s" % (type(getattr(exc, "orig", None) or exc).__name__, error_detail(exc, target)[:400])})
        return False
    checks.append({"check": name, "ok": True, "detail": detail})
    return True


def _run_checks(step: Drill, copy: ScratchCopy, checks: list[dict[str, Any]], result: dict[str, Any]) -> None:
    copy.progress.step("restore drill", "checking the backup's SHA-256")
    if not _run_check(checks, "checksum", lambda: _check_checksum(step, result), step.target):
        return  # a damaged file is not restored
    restored = _run_check(checks, "restore", copy.restore, step.target)
    result["restore_seconds"] = copy.seconds
    if not restored:
        return
    scratch = copy.target
    assert scratch is not None
    run = AlembicRun(step.project, scratch)  # the project's env.py sees only the copy
    copy.progress.update("comparing the restored copy's revision and schema", force=True)
    with run.session():
        _run_check(checks, "revision", lambda: _check_revision(run, step), scratch)
        _run_check(checks, "schema", lambda: _check_schema(run, step), scratch)
    copy.progress.update("counting the rows of the restored copy's largest tables", force=True)
    _run_check(checks, "row_counts", lambda: _check_row_counts(scratch, step), scratch)


# -- the ledger row ---------------------------------------------------------------------
def _record(step: Drill, started_at: Any, duration: float, outcome: str, message: str, sha256: str | None) -> str:
    """One finished row in the target's ledger. No 'running' row first: the drill changes nothing there, and
    Ledger.start would mark a concurrent migration's 'running' row interrupted."""
    revision = " ".join(step.heads)
    entry_id = uuid.uuid4().hex
    engine = create_engine(step.target)
    try:
        with engine.begin() as conn:
            step.ledger.ensure(conn)
            conn.execute(
                step.ledger.table.insert().values(
                    entry_id=entry_id,
                    run_id=step.record.run_id,
                    action=ACTION,
                    outcome=outcome,
                    environment=step.record.environment,
                    host=step.record.host,
                    name=step.record.name,
                    operator=step.record.operator,
                    started_at=started_at,
                    finished_at=utcnow(),
                    duration=duration,
                    from_revision=revision,
                    to_revision=revision,
                    backup_path=step.path,
                    backup_sha256=sha256,
                    revisions="[]",
                    message=message,
                )
            )
    except sa.exc.DBAPIError as exc:
        raise FleetError(
            "the restore drill of %s %s, but recording it in the ledger table %s of %s failed (%s): let the user write the ledger, or set ledger_table."
            % (step.path, "passed" if outcome == SUCCEEDED else "failed", step.ledger.name, step.target.label, error_detail(exc, step.target)[:300])
        ) from None
    finally:
        engine.dispose()
    return entry_id


# -- the operation ----------------------------------------------------------------------
def _verdict(path: str, checks: list[dict[str, Any]], restore_seconds: float | None, duration: float) -> tuple[bool, str]:
    """Whether the drill passed (some check ran, and every one passed), and the ledger row's message: the times and
    what was proved when it passed, each failed check when it did not."""
    ok = bool(checks) and all(check["ok"] for check in checks)
    if ok:
        proved = "; ".join("%s: %s" % (c["check"], c["detail"]) for c in checks if c["check"] in ("revision", "row_counts"))
        return True, "restore drill of %s passed: restored in %s s, recovery time %s s; %s" % (path, restore_seconds, duration, proved)
    wrong = "; ".join("%s: %s" % (c["check"], c["detail"]) for c in checks if not c["ok"])
    return False, "restore drill of %s failed: %s" % (path, wrong)


def drill(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    """db_restore_check: prove a backup restores, without touching the database it belongs to.

    params: url, config, path or backup_dir, maintenance_db, pg_bin_dir, ledger_table, record, read once by plan().
    In order: plan (every refusal before anything is written); in check mode stops there. Then checks the checksum,
    restores into a scratch copy (always removed, even on failure), checks its revision, schema and row counts, and
    records one 'drill' row in the target's ledger (the recovery time: checksum, restore and every check). Fills
    result (checks, ok, restore_seconds, duration, ledger_entry_id) and returns nothing; raises
    FleetError naming each failed check (after recording it), or when the drill cannot be planned or recorded."""
    step = plan(params)
    result.update(database=step.target.label, path=step.path, revision=step.revision, manifest=step.manifest)
    if check_mode:
        result["changed"] = True  # a drill writes one ledger row; nothing is restored or written in check mode
        return
    started_at = utcnow()
    clock = time.monotonic()
    checks: list[dict[str, Any]] = []
    copy = ScratchCopy(step)
    result.update(checks=checks, restore_seconds=None)
    try:
        _run_checks(step, copy, checks, result)
        duration = round(time.monotonic() - clock, 3)  # the recovery time: checksum, restore and every check
    finally:
        left = copy.remove()
        if left:
            warn(left)
            result["left_behind"] = left
    ok, message = _verdict(step.path, checks, result["restore_seconds"], duration)
    failed = [check for check in checks if not check["ok"]]
    if left:
        message += " (%s)" % left
    entry_id = _record(step, started_at, duration, SUCCEEDED if ok else FAILED, message, result.get("sha256"))
    result.update(changed=True, ok=ok, duration=duration, ledger_entry_id=entry_id)
    if not ok:
        raise FleetError(
            "restore drill of %s failed the %s check(s): %s; recorded as failed in the ledger of %s (entry %s)."
            % (
                step.path,
                ", ".join(c["check"] for c in failed),
                "; ".join("%s: %s" % (c["check"], c["detail"]) for c in failed),
                step.target.label,
                entry_id,
            )
        )

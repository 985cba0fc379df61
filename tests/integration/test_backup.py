"""db_backup ad hoc: verified, private, restorable backups of PostgreSQL and SQLite."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ansible.module_utils.fleet.backup.backup import orphan_partials
from ansible.module_utils.fleet.backup.retention import apply_retention, plan_retention
from support.ansible_run import Run, module
from support.faults import descendants, start_module, wait_for
from support.pgcluster import PgCluster, pg_bin_dir

from .test_bad_input import EQUITIES_INI, conn_args, fails_with
from .test_migrate_postgres import assert_no_secret, head_of, version_of

pytestmark = pytest.mark.slow

HEAD = head_of("equities")
OHLCV_ROWS = 20000
DUMP_NAME = re.compile(r"^(\d{8}T\d{6}Z)_([A-Za-z0-9_-]+)(-\d+)?\.(dump|sqlite3)$")


def call(clusters: list[PgCluster], name: str, args: dict[str, Any], *flags: str) -> tuple[Run, dict[str, Any]]:
    run, result = module(name, args, *flags)
    assert result, run.output[-3000:]
    assert_no_secret(run.output, clusters)
    return run, result


def backup_args(cluster: PgCluster, root: Path, **extra: Any) -> dict[str, Any]:
    args = {
        **conn_args(cluster),
        "backup_root": str(root),
        "environment": "prod",
        "host": "db1",
        "name": "equities",
        "revision": HEAD,
    }
    args.update(extra)
    return args


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def check_backup(result: dict[str, Any], root: Path, clusters: list[PgCluster], ext: str) -> dict[str, Any]:
    """Layout, modes and manifest of one written backup; returns the manifest read from disk."""
    path = Path(result["path"])
    manifest_path = Path(result["manifest_path"])
    assert manifest_path == Path(str(path) + ".manifest.json")
    assert path.is_file() and manifest_path.is_file()
    relative = path.relative_to(root).parts
    assert relative[:3] == ("prod", "db1", "equities"), relative
    match = DUMP_NAME.match(relative[3])
    assert match and match.group(4) == ext, relative[3]
    assert match.group(2) == HEAD
    stamp = datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=5), "the file name is not a UTC timestamp"
    assert mode(path) == 0o600 and mode(manifest_path) == 0o600
    for directory in (root, root / "prod", root / "prod" / "db1", path.parent):
        assert mode(directory) == 0o700, directory
    text = manifest_path.read_text()
    assert_no_secret(text, clusters)
    manifest = json.loads(text)
    assert manifest == result["manifest"]
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["size"] == path.stat().st_size
    assert manifest["file"] == path.name
    assert (manifest["name"], manifest["environment"], manifest["host"], manifest["revision"]) == ("equities", "prod", "db1", HEAD)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".partial")], "temporary files left behind"
    return manifest


def seed(cluster: PgCluster) -> None:
    cluster.execute(
        "INSERT INTO companies (ticker, company_name, exchange, sector) VALUES "
        "('ACME', 'Acme Corp', 'NYSE', 'Industrials'), ('GLOBX', 'Globex', 'NASDAQ', 'Technology')",
        dbname="equities",
    )
    cluster.execute(
        "INSERT INTO daily_ohlcv (symbol, date, open, high, low, close, volume, adjusted_close) "
        "SELECT 'ACME', date '1950-01-01' + i, 100 + i %% 17, 110 + i %% 13, 90 + i %% 11, 105 + i %% 7, 1000 * i, 104.5 "
        "FROM generate_series(1, %s) AS i",
        (OHLCV_ROWS,),
        dbname="equities",
    )


def test_postgresql_backup_is_private_verified_and_restorable(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    run, result = call(fresh_pg, "alembic_upgrade", {"config": str(EQUITIES_INI), **conn_args(db1)})
    assert run.rc == 0, result
    seed(db1)
    root = tmp_path / "backups"  # missing: the module creates it 0700

    # two backups right after each other: level 0, then level 9
    run, plain = call(fresh_pg, "db_backup", backup_args(db1, root, compress_level=0))
    assert run.rc == 0, plain
    run, small = call(fresh_pg, "db_backup", backup_args(db1, root, compress_level=9))
    assert run.rc == 0, small
    assert plain["changed"] is True and small["changed"] is True
    assert plain["path"] != small["path"]
    assert len([p for p in files_under(root) if p.suffix == ".dump"]) == 2, files_under(root)

    manifests = [check_backup(r, root, fresh_pg, "dump") for r in (plain, small)]
    for manifest, level in zip(manifests, (0, 9), strict=True):
        assert manifest["dialect"] == "postgresql" and manifest["database"] == "equities"
        assert manifest["dump_format"] == "custom" and manifest["compress_level"] == level
        assert str(manifest["server_version"]).startswith("15")
        assert manifest["server"] == "migrator@127.0.0.1:%d/equities" % db1.port
    assert manifests[0]["size"] > 1.5 * manifests[1]["size"], (manifests[0]["size"], manifests[1]["size"])

    # pg_restore reads it back into a new database, password only in a 0600 PGPASSFILE
    db1.drop_database("equities_restored")
    db1.create_database("equities_restored")
    passfile = tmp_path / "pgpass"
    fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("127.0.0.1:%d:equities_restored:%s:%s\n" % (db1.port, db1.app_user, db1.app_password))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSFILE"] = str(passfile)
    argv = [
        str(pg_bin_dir() / "pg_restore"),
        "--exit-on-error",
        "--no-owner",
        "--no-password",
        "--host=127.0.0.1",
        "--port=%d" % db1.port,
        "--username=%s" % db1.app_user,
        "--dbname=equities_restored",
        small["path"],
    ]
    try:
        restored = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert restored.returncode == 0, restored.stderr
        assert db1.execute("select count(*) from daily_ohlcv", dbname="equities_restored") == [(OHLCV_ROWS,)]
        assert db1.execute("select ticker from companies order by ticker", dbname="equities_restored") == [("ACME",), ("GLOBX",)]
        assert version_of(db1, "equities_restored") == [HEAD]
        original = db1.execute("select sum(volume), sum(close) from daily_ohlcv", dbname="equities")
        assert db1.execute("select sum(volume), sum(close) from daily_ohlcv", dbname="equities_restored") == original
    finally:
        db1.drop_database("equities_restored")


def test_check_mode_writes_nothing_not_even_the_root(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    root = tmp_path / "backups"
    run, result = call(fresh_pg, "db_backup", backup_args(db1, root), "--check")
    assert run.rc == 0, result
    assert result["changed"] is True
    path = Path(result["path"])
    assert path.relative_to(root).parts[:3] == ("prod", "db1", "equities")
    assert DUMP_NAME.match(path.name), path.name
    assert not root.exists(), "check mode created %s" % root
    assert "manifest" not in result


def test_bad_inputs_fail_in_one_line_and_write_no_backup(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]

    root = tmp_path / "level"
    run, result = call(fresh_pg, "db_backup", backup_args(db1, root, compress_level=12))
    fails_with(result, run.rc, "compress_level 12 is out of range", "0 (none) to 9")
    assert not root.exists()

    root = tmp_path / "name"
    run, result = call(fresh_pg, "db_backup", backup_args(db1, root, name="../x"))
    fails_with(result, run.rc, "name '../x'", "backup path")
    assert not root.exists()
    assert not (tmp_path / "x").exists()

    root = tmp_path / "missing"
    db1.drop_database("no_such_db")
    run, result = call(fresh_pg, "db_backup", backup_args(db1, root, **conn_args(db1, "no_such_db")))
    fails_with(result, run.rc, "'no_such_db' does not exist")
    assert files_under(root) == []

    root = tmp_path / "password"
    wrong = "Wr0ng-" + db1.app_password[::-1]
    run, result = call(fresh_pg, "db_backup", backup_args(db1, root, password=wrong))
    fails_with(result, run.rc, "authentication failed for user 'migrator'", "check the password")
    assert wrong not in run.output
    assert files_under(root) == []


def test_a_failed_backup_creates_no_directories(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    root = tmp_path / "backups"
    db1.drop_database("no_such_db")
    run, result = call(fresh_pg, "db_backup", backup_args(db1, root, **conn_args(db1, "no_such_db")))
    fails_with(result, run.rc, "'no_such_db' does not exist")
    assert not root.exists(), sorted(str(p.relative_to(tmp_path)) for p in root.rglob("*"))


def test_sqlite_backup_is_an_intact_copy(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    database = tmp_path / "data" / "eq.db"
    url = "sqlite:///%s" % database
    run, result = call(fresh_pg, "alembic_upgrade", {"config": str(EQUITIES_INI), "url": url, "create_database": True})
    assert run.rc == 0, result
    assert result["after"] == [HEAD]
    with sqlite3.connect(database) as conn:
        conn.execute("INSERT INTO companies (ticker, company_name) VALUES ('ACME', 'Acme Corp')")

    root = tmp_path / "backups"
    args = {"url": url, "backup_root": str(root), "environment": "prod", "host": "db1", "name": "equities", "revision": HEAD}
    run, result = call(fresh_pg, "db_backup", args)
    assert run.rc == 0, result
    manifest = check_backup(result, root, fresh_pg, "sqlite3")
    assert manifest["dialect"] == "sqlite" and manifest["dump_format"] == "sqlite"
    assert manifest["database"] == str(database)

    def facts(path: Path) -> tuple[Any, ...]:
        conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
        try:
            return (
                conn.execute("PRAGMA integrity_check").fetchone()[0],
                sorted(r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")),
                conn.execute("select version_num from alembic_version").fetchall(),
                conn.execute("select ticker from companies").fetchall(),
            )
        finally:
            conn.close()

    copy = facts(Path(result["path"]))
    assert copy[0] == "ok"
    assert {"alembic_version", "companies", "daily_ohlcv"} <= set(copy[1])
    assert copy[2] == [(HEAD,)] and copy[3] == [("ACME",)]
    assert copy == facts(database)


def test_a_backup_never_overwrites_one_taken_in_the_same_second(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    """Deterministic: every name the module could pick in the next minute is already taken."""
    db1 = fresh_pg[0]
    root = tmp_path / "backups"
    directory = root / "prod" / "db1" / "equities"
    directory.mkdir(parents=True, mode=0o700)
    for d in (root, root / "prod", root / "prod" / "db1", directory):
        d.chmod(0o700)
    now = datetime.now(UTC).replace(microsecond=0)
    placeholders = {}
    for second in range(-2, 60):
        name = "%s_base.dump" % (now + timedelta(seconds=second)).strftime("%Y%m%dT%H%M%SZ")
        (directory / name).write_bytes(b"earlier backup " + name.encode())
        placeholders[name] = (directory / name).read_bytes()

    run, result = call(fresh_pg, "db_backup", backup_args(db1, root, revision=""))
    assert run.rc == 0, result
    path = Path(result["path"])
    assert path.name not in placeholders
    assert path.name.endswith("_base-1.dump"), path.name
    assert path.parent == directory
    for name, content in placeholders.items():
        assert (directory / name).read_bytes() == content, "%s was overwritten" % name
    manifest = json.loads(Path(result["manifest_path"]).read_text())
    assert manifest["file"] == path.name and manifest["revision"] is None
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not (directory / (path.name.replace("-1.dump", ".dump") + ".manifest.json")).exists()


# -- issue 15, point 11: a dump never waits forever behind a lock ----------------------------------
@contextlib.contextmanager
def lock_held(cluster: PgCluster, table: str) -> Iterator[int]:
    """A session of the application's user (application 'long-ddl') holds ACCESS EXCLUSIVE on table until the block
    ends; yields its pid. (A superuser's session would hide its query from the backup's user.)"""
    conn = cluster.connect("equities", superuser=False)
    try:
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute("SET application_name = 'long-ddl'")
            cur.execute("SELECT pg_backend_pid()")
            pid = int(cur.fetchone()[0])
            cur.execute("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE" % table)
            yield pid
    finally:
        conn.rollback()
        conn.close()


@pytest.mark.parametrize("count_tables", [0, 10], ids=["pg_dump-waits", "counts-wait-too"])
def test_a_backup_behind_a_lock_gives_up_in_time_and_names_the_holder(fresh_pg: list[PgCluster], tmp_path: Path, count_tables: int) -> None:
    db1 = fresh_pg[0]
    run, result = call(fresh_pg, "alembic_upgrade", {"config": str(EQUITIES_INI), **conn_args(db1)})
    assert run.rc == 0, result
    root = tmp_path / "backups"
    with lock_held(db1, "companies") as holder:
        started = time.monotonic()
        run, result = module("db_backup", backup_args(db1, root, lock_wait_timeout=2, count_tables=count_tables), timeout=90)
        took = time.monotonic() - started
    assert_no_secret(run.output, fresh_pg)
    message = fails_with(result, run.rc, "gave up after waiting 2 s (lock_wait_timeout) for a lock on table", "companies", "pid %d" % holder)
    assert "user migrator, application long-ddl" in message, message
    assert "idle in transaction after 'LOCK TABLE companies IN ACCESS EXCLUSIVE MODE'" in message, message
    assert re.search(r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\d+ s\)", message), message
    assert "raise lock_wait_timeout" in message, message
    assert took < 60, "the backup waited %.0f s" % took
    assert [p for p in files_under(root) if not p.name.endswith(".partial")] == [] and not list(root.rglob("*.partial"))


def test_the_default_lock_wait_is_bounded_too(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    run, result = call(fresh_pg, "alembic_upgrade", {"config": str(EQUITIES_INI), **conn_args(db1)})
    assert run.rc == 0, result
    with lock_held(db1, "daily_ohlcv") as holder:
        run, result = module("db_backup", backup_args(db1, tmp_path / "backups", count_tables=0), timeout=90)
    fails_with(result, run.rc, "gave up after waiting 5 s", "daily_ohlcv", "pid %d" % holder)


# -- issue 15, point 10: partial dumps of killed runs do not stay forever ------------------------------
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _partials(directory: Path) -> dict[str, Path]:
    """One partial file of each kind: of a dead process, of a live one, of an older version (old and fresh)."""
    stamp = "20260101T000000Z_%s.dump" % HEAD
    kinds = {
        "dead": directory / (".%s.pid%d.k2j3h4l5.partial" % (stamp, _dead_pid())),
        "live": directory / (".%s.pid%d.q9w8e7r6.partial" % (stamp, os.getpid())),
        "dead_manifest": directory / (".manifest.pid%d.a1b2c3d4.partial" % _dead_pid()),
        "legacy_old": directory / (".%s.x1y2z3w4.partial" % stamp),
        "legacy_fresh": directory / (".%s.m5n6b7v8.partial" % stamp),
    }
    for path in kinds.values():
        path.write_bytes(b"half a dump")
    two_hours_ago = time.time() - 7200
    os.utime(kinds["legacy_old"], (two_hours_ago, two_hours_ago))
    return kinds


def test_a_backup_removes_the_partial_files_killed_runs_left(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    root = tmp_path / "backups"
    directory = root / "prod" / "db1" / "equities"
    directory.mkdir(parents=True)
    kinds = _partials(directory)
    orphans = orphan_partials(str(directory))  # what status reports
    assert sorted(item["path"] for item in orphans) == sorted(str(kinds[k]) for k in ("dead", "dead_manifest", "legacy_old"))
    dead = next(item for item in orphans if item["path"] == str(kinds["dead"]))
    assert dead["bytes"] == len(b"half a dump") and dead["pid"] and re.match(r"^\d{4}-\d\d-\d\dT", dead["modified_at"])

    run, result = call(fresh_pg, "db_backup", backup_args(db1, root))
    assert run.rc == 0, result
    assert sorted(result["removed_partials"]) == sorted(str(kinds[k]) for k in ("dead", "dead_manifest", "legacy_old"))
    assert kinds["live"].exists() and kinds["legacy_fresh"].exists(), "a partial file some process may still write was removed"
    assert not kinds["dead"].exists() and not kinds["legacy_old"].exists() and not kinds["dead_manifest"].exists()
    assert orphan_partials(str(directory)) == []


def test_retention_removes_the_partial_files_of_dead_processes(tmp_path: Path) -> None:
    directory = tmp_path / "equities"
    directory.mkdir()
    kinds = _partials(directory)
    plan = plan_retention(str(directory), 1, 0)
    assert sorted(plan.partials) == sorted(str(kinds[k]) for k in ("dead", "dead_manifest", "legacy_old"))
    apply_retention(plan)
    assert sorted(p.name for p in directory.iterdir()) == sorted(kinds[k].name for k in ("live", "legacy_fresh"))


def test_a_backup_names_its_partial_file_after_its_process(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    """While pg_dump runs, the temp file carries the module's pid, so a later run can tell it from an orphan."""
    db1 = fresh_pg[0]
    run, result = call(fresh_pg, "alembic_upgrade", {"config": str(EQUITIES_INI), **conn_args(db1)})
    assert run.rc == 0, result
    root = tmp_path / "backups"
    with lock_held(db1, "companies"):
        job = start_module("db_backup", backup_args(db1, root, count_tables=0, lock_wait_timeout=30))
        wait_for("the partial file", lambda: list(root.rglob("*.partial")) or not job.running(), timeout=60)
        seen = [p.name for p in root.rglob("*.partial")]
        run_by = descendants(job.pid)
        assert orphan_partials(str(root / "prod" / "db1" / "equities")) == [], "a running backup's file is no orphan"
    assert job.wait(timeout=60).rc == 0
    assert len(seen) == 1, seen
    match = re.search(r"\.pid(\d+)\.[A-Za-z0-9_]+\.partial$", seen[0])
    assert match and int(match.group(1)) in run_by, (seen, run_by)


# -- issue 15, point 14: the revision when none is given; private SQLite files --------------------------
def test_a_backup_without_a_revision_reads_it_from_the_database(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    root = tmp_path / "backups"
    args = backup_args(db1, root)
    del args["revision"]
    run, result = call(fresh_pg, "db_backup", args)
    assert run.rc == 0, result
    assert Path(result["path"]).name.endswith("_base.dump") and result["manifest"]["revision"] is None  # unversioned

    run, upgraded = call(fresh_pg, "alembic_upgrade", {"config": str(EQUITIES_INI), **conn_args(db1)})
    assert run.rc == 0, upgraded
    run, result = call(fresh_pg, "db_backup", args)
    assert run.rc == 0, result
    assert Path(result["path"]).name.endswith("_%s.dump" % HEAD), result["path"]
    assert result["manifest"]["revision"] == HEAD

    run, result = call(fresh_pg, "db_backup", {**args, "revision": ""})
    assert run.rc == 0, result
    assert Path(result["path"]).name.endswith("_base.dump"), "an explicit empty revision still means unversioned"


def test_a_sqlite_backup_without_a_revision_and_private_sqlite_files(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    database = tmp_path / "new" / "eq.db"
    url = "sqlite:///%s" % database
    old_umask = os.umask(0o022)
    try:
        run, result = call(fresh_pg, "alembic_upgrade", {"config": str(EQUITIES_INI), "url": url, "create_database": True})
    finally:
        os.umask(old_umask)
    assert run.rc == 0, result
    assert mode(database) == 0o600, oct(mode(database))
    assert mode(database.parent) == 0o700, oct(mode(database.parent))
    root = tmp_path / "backups"
    run, result = call(fresh_pg, "db_backup", {"url": url, "backup_root": str(root), "environment": "prod", "host": "db1", "name": "equities"})
    assert run.rc == 0, result
    assert Path(result["path"]).name.endswith("_%s.sqlite3" % HEAD) and result["manifest"]["revision"] == HEAD

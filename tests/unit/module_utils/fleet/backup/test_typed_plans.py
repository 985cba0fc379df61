"""Unit tests of what db_backup, db_restore and db_restore_check read once from their params, without a server.

check_backup_options (BackupRequest), db_backup's check mode on a SQLite file, the one scan of a backup directory
(catalog) that the backups and the partial files come from, and the options restore.plan and drill.plan carry
into their plans, with the refusals that need no server. The databases are SQLite files in tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ansible.module_utils.fleet.backup import drill, restore
from ansible.module_utils.fleet.backup.backup import BackupRequest, backup, check_backup_options
from ansible.module_utils.fleet.backup.catalog import MANIFEST_SUFFIX, list_backups, scan_backup_directory
from ansible.module_utils.fleet.backup.retention import partial_files
from ansible.module_utils.fleet.core.common import FleetError

REPO = Path(__file__).resolve().parents[5]
EQUITIES_INI = str(REPO / "migrations" / "equities" / "alembic.ini")
PLACE = {"backup_root": "/srv/backups", "environment": "prod", "host": "db1", "name": "equities"}


# -- check_backup_options ---------------------------------------------------------------------------
def test_backup_request_defaults() -> None:
    request = check_backup_options(dict(PLACE))
    assert request == BackupRequest(directory="/srv/backups/prod/db1/equities", name="equities", environment="prod", host="db1")
    assert (request.compress_level, request.count_tables, request.lock_wait_timeout, request.version_table) == (1, 10, 5.0, "alembic_version")
    assert (request.keep_last, request.keep_days, request.protect) == (None, 0.0, ())


def test_backup_request_as_given() -> None:
    params = dict(PLACE, compress_level=0, count_tables=0, lock_wait_timeout=0, version_table="versions", keep_last=3, keep_days=2, protect=["/a", "", None])
    request = check_backup_options(params)
    assert (request.compress_level, request.count_tables, request.lock_wait_timeout, request.version_table) == (0, 0, 0.0, "versions")
    assert (request.keep_last, request.keep_days, request.protect) == (3, 2.0, ("/a",))


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"keep_last": -1}, "keep_last -1 is not allowed: keep at least 1 backup, or 0 (or unset) to keep them all."),
        ({"keep_days": -0.5}, "keep_days -0.5 is not allowed: give 0 or more days."),
        ({"backup_root": "  "}, "backup_root is empty: give the directory that holds the backups (e.g. /var/backups/alembic-fleet)."),
        ({"compress_level": 10}, "compress_level 10 is out of range: use 0 (none) to 9 (smallest, slowest); 1 is fast and near the default's size."),
        ({"count_tables": -1}, "count_tables -1 is not allowed: give how many of the largest tables to count (0 counts none)."),
        ({"lock_wait_timeout": -1}, "lock_wait_timeout -1 is not allowed: give the seconds a backup may wait for a table lock (0 waits as long as it takes)."),
        ({"lock_wait_timeout": float("nan")}, "lock_wait_timeout nan is not allowed"),
        ({"version_table": "v; drop"}, "version_table 'v; drop' is not a plain table name: use letters, digits and '_'."),
        ({"keep_last": -1, "compress_level": 10}, "keep_last -1"),  # retention is checked first
    ],
)
def test_backup_request_refusals(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(FleetError) as caught:
        check_backup_options(dict(PLACE, **extra))
    assert str(caught.value).startswith(message)


def live_sqlite(tmp_path: Path) -> Path:
    path = tmp_path / "live.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
    conn.execute("INSERT INTO alembic_version VALUES ('a1')")
    conn.commit()
    conn.close()
    return path


def test_backup_in_check_mode_names_the_backup_and_writes_nothing(tmp_path: Path) -> None:
    live = live_sqlite(tmp_path)
    result: dict[str, Any] = {}
    backup(dict(PLACE, url="sqlite:///%s" % live, backup_root=str(tmp_path / "backups"), revision="a1", keep_last=2), True, False, result)
    directory = tmp_path / "backups" / "prod" / "db1" / "equities"
    assert result["changed"] is True
    assert os.path.dirname(result["path"]) == str(directory)
    assert result["path"].endswith("_a1.sqlite3") and result["manifest_path"] == result["path"] + MANIFEST_SUFFIX
    assert result["retention"] == {"would_delete": []}
    assert not (tmp_path / "backups").exists()


def test_backup_refuses_a_bad_url_before_its_options(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match=r"^url uses the unsupported dialect"):
        backup(dict(PLACE, url="mysql://x/y", compress_level=10), True, False, {})


# -- the one scan of a backup directory ------------------------------------------------------------
def test_scan_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert scan_backup_directory(str(tmp_path / "none")) == []
    assert list_backups(str(tmp_path / "none")) == [] and partial_files(str(tmp_path / "none")) == []


def test_backups_and_partials_come_from_one_scan_by_name(tmp_path: Path) -> None:
    names = ["b_20250301T120000Z_a1.sqlite3", ".b_20250301T120000Z_a1.sqlite3.pid1.x.partial", "a_20250228T120000Z_a0.sqlite3", "notes.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.sqlite3").mkdir()
    assert [entry.name for entry in scan_backup_directory(str(tmp_path))] == sorted([*names, "sub.sqlite3"])
    assert [os.path.basename(b.path) for b in list_backups(str(tmp_path))] == ["a_20250228T120000Z_a0.sqlite3", "b_20250301T120000Z_a1.sqlite3"]
    assert [(os.path.basename(p.path), p.pid) for p in partial_files(str(tmp_path))] == [(".b_20250301T120000Z_a1.sqlite3.pid1.x.partial", 1)]


def test_scan_of_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(FleetError, match=r"backup directory .* cannot be listed"):
        scan_backup_directory(str(tmp_path / "file"))


# -- restore.plan: the options it carries and its refusals --------------------------------------------
def write_backup(path: Path, content: bytes = b"backup bytes", **manifest: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    written = {"name": "equities", "dialect": "sqlite", "size": len(content), "sha256": hashlib.sha256(content).hexdigest(), "revision": "a1"}
    written.update(manifest)
    Path(str(path) + MANIFEST_SUFFIX).write_text(json.dumps(written))
    return path


def test_restore_plan_defaults(tmp_path: Path) -> None:
    step = restore.plan({"url": "sqlite:///%s" % live_sqlite(tmp_path), "path": str(write_backup(tmp_path / "b.sqlite3")), "name": "equities"})
    assert (step.maintenance_db, step.keep_replaced, step.lock_wait, step.pg_bin_dir, step.undo_entry_id) == ("postgres", False, 0.0, None, None)
    assert (step.ledger.name, step.version_table) == ("alembic_fleet_ledger", "alembic_version")


def test_restore_plan_carries_the_options(tmp_path: Path) -> None:
    params = {
        "url": "sqlite:///%s" % live_sqlite(tmp_path),
        "path": str(write_backup(tmp_path / "b.sqlite3")),
        "name": "equities",
        "maintenance_db": "template1",
        "keep_replaced": True,
        "lock_wait": 30,
        "pg_bin_dir": "/opt/pg/bin",
        "ledger_table": "runs",
    }
    step = restore.plan(params)
    assert (step.maintenance_db, step.keep_replaced, step.lock_wait, step.pg_bin_dir, step.ledger.name) == ("template1", True, 30, "/opt/pg/bin", "runs")


def test_restore_plan_refuses_a_missing_backup(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match=r"backup file .*gone.sqlite3 does not exist: check path"):
        restore.plan({"url": "sqlite:///%s" % live_sqlite(tmp_path), "path": str(tmp_path / "gone.sqlite3"), "name": "equities"})


def test_restore_plan_refuses_a_backup_whose_checksum_is_not_the_expected_one(tmp_path: Path) -> None:
    live = live_sqlite(tmp_path)
    backup_path = write_backup(tmp_path / "b.sqlite3")
    with pytest.raises(FleetError, match="but expected_sha256 is " + "0" * 64):
        restore.plan({"url": "sqlite:///%s" % live, "path": str(backup_path), "name": "equities", "expected_sha256": "0" * 64})
    backup_path.write_bytes(b"backup bytez")  # same size, other bytes: damaged
    with pytest.raises(FleetError, match="does not match its manifest's checksum: it is damaged"):
        restore.plan({"url": "sqlite:///%s" % live, "path": str(backup_path), "name": "equities"})


def test_restore_plan_refuses_a_negative_lock_wait_before_anything(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match=r"^lock_wait is -1: give 0 or more seconds"):
        restore.plan({"url": "sqlite:///%s" % (tmp_path / "gone.db"), "path": str(tmp_path / "gone"), "name": "equities", "lock_wait": -1})


@pytest.mark.parametrize("maintenance_db", ["", "app"])
def test_restore_plan_refuses_the_maintenance_database_given_as_the_target(tmp_path: Path, maintenance_db: str) -> None:
    """An empty maintenance_db is postgres: restoring postgres from postgres is refused; app from app too."""
    dbname = maintenance_db or "postgres"
    backup_path = write_backup(tmp_path / "b.dump", dialect="postgresql", name=dbname)
    params = {"url": "postgresql://nobody@127.0.0.1:1/%s" % dbname, "path": str(backup_path), "name": dbname, "maintenance_db": maintenance_db}
    with pytest.raises(FleetError, match=r"maintenance_db is the database being restored \(%s\)" % dbname):
        restore.plan(params)


# -- drill.plan: the options it carries and its refusals ----------------------------------------------
def drill_params(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    live = tmp_path / "live.db"
    sqlite3.connect(live).close()
    return {"url": "sqlite:///%s" % live, "config": EQUITIES_INI, "path": str(write_backup(tmp_path / "b.sqlite3")), **extra}


@pytest.mark.parametrize("maintenance_db, expected", [(None, "postgres"), ("", "postgres"), ("template1", "template1")])
def test_drill_plan_maintenance_db(tmp_path: Path, maintenance_db: str | None, expected: str) -> None:
    assert drill.plan(drill_params(tmp_path, maintenance_db=maintenance_db)).maintenance_db == expected


def test_drill_plan_ledger_and_project(tmp_path: Path) -> None:
    step = drill.plan(drill_params(tmp_path, ledger_table="runs", ini_section=""))
    assert step.ledger.name == "runs"
    assert step.project.ini_section == "alembic"
    assert step.record.action == "drill" and step.record.backup_path == str(tmp_path / "b.sqlite3")


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"ledger_table": "a b"}, "ledger_table"),
        ({"backup_dir": "/srv/backups"}, r"give either path \(one backup\) or backup_dir"),
        ({"path": " "}, r"give backup_dir \(the database's backup directory"),
        ({"record": {"action": "restore"}}, "record.action 'restore' is not allowed for a restore drill"),
        ({"config": "/nowhere/alembic.ini"}, "/nowhere/alembic.ini"),
    ],
)
def test_drill_plan_refusals(tmp_path: Path, extra: dict[str, Any], message: str) -> None:
    with pytest.raises(FleetError, match=message):
        drill.plan(drill_params(tmp_path, **extra))


# -- pg_restore_for: one check for restore and drill ----------------------------------------------------
def fake_pg_restore(tmp_path: Path, major: int) -> str:
    """A pg_restore in its own bin directory that only tells its version (what tool_major reads)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / "pg_restore"
    tool.write_text("#!/bin/sh\necho 'pg_restore (PostgreSQL) %d.2'\n" % major)
    tool.chmod(0o755)
    return str(bin_dir)


@pytest.mark.parametrize("manifest", [None, {}, {"pg_dump_version": 14}, {"pg_dump_version": 15}, {"pg_dump_version": "16"}])
def test_pg_restore_for_a_dump_it_can_read(tmp_path: Path, manifest: dict[str, Any] | None) -> None:
    bin_dir = fake_pg_restore(tmp_path, 15)
    assert restore.pg_restore_for(15, bin_dir, manifest) == os.path.join(bin_dir, "pg_restore")


def test_pg_restore_for_refuses_one_older_than_the_dump(tmp_path: Path) -> None:
    bin_dir = fake_pg_restore(tmp_path, 15)
    with pytest.raises(FleetError) as caught:
        restore.pg_restore_for(15, bin_dir, {"pg_dump_version": 16})
    assert str(caught.value) == (
        "%s/pg_restore is version 15 but the backup was written by pg_dump 16: install postgresql-client-16 or point pg_bin_dir at a newer pg_restore."
        % bin_dir
    )


def test_pg_restore_for_an_explicit_directory_without_one(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="has no executable pg_restore"):
        restore.pg_restore_for(15, str(tmp_path), None)

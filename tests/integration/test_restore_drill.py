"""Restore drills on real PostgreSQL 15 and SQLite: db_backup records exact row counts taken in the dump's own
snapshot, and db_restore_check restores the newest backup into a scratch copy, checks it (checksum, revision,
schema, row counts), records one 'drill' row in the target's ledger, drops the copy, and never touches the target."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.ansible_run import Run, module
from support.faults import sessions, start_module, wait_for
from support.pgcluster import PgCluster

from .test_bad_input import EQUITIES_INI, conn_args, fails_with
from .test_migrate_postgres import assert_no_secret, head_of, tables_of, version_of

pytestmark = pytest.mark.slow

HEAD = head_of("equities")
MID = "c3e5071a2d43"  # "+3" from an empty database
LEDGER = "alembic_fleet_ledger"
OHLCV_ROWS = 3000
COMPANIES = (("ACME", "Acme Corp"), ("GLOBX", "Globex"), ("INITech", "Initech"))
CHECKS = ["checksum", "restore", "revision", "schema", "row_counts"]


def call(clusters: list[PgCluster], name: str, args: dict[str, Any], *flags: str, env: dict[str, str] | None = None) -> tuple[Run, dict[str, Any]]:
    run, result = module(name, args, *flags, env=env)
    assert result, run.output[-3000:]
    assert_no_secret(run.output, clusters)
    return run, result


# -- PostgreSQL helpers ----------------------------------------------------------------
def upgrade(clusters: list[PgCluster], target: str = "head") -> None:
    run, result = call(clusters, "alembic_upgrade", {"config": str(EQUITIES_INI), "target": target, **conn_args(clusters[0])})
    assert run.rc == 0, result


def seed(cluster: PgCluster) -> None:
    for ticker, name in COMPANIES:
        cluster.execute("INSERT INTO companies (ticker, company_name) VALUES (%s, %s)", (ticker, name), dbname="equities")
    cluster.execute(
        "INSERT INTO daily_ohlcv (symbol, date, open, high, low, close, volume) "
        "SELECT 'ACME', date '1990-01-01' + i, 100, 110, 90, 105, i FROM generate_series(1, %s) AS i",
        (OHLCV_ROWS,),
        dbname="equities",
    )


def back_up(clusters: list[PgCluster], root: Path, revision: str = HEAD, **extra: Any) -> dict[str, Any]:
    args = {**conn_args(clusters[0]), "backup_root": str(root), "environment": "prod", "host": "db1", "name": "equities", "revision": revision, **extra}
    run, result = call(clusters, "db_backup", args)
    assert run.rc == 0, result
    return result


def drill_args(cluster: PgCluster, **extra: Any) -> dict[str, Any]:
    return {**conn_args(cluster), "config": str(EQUITIES_INI), **extra}


def counts(manifest: dict[str, Any]) -> dict[tuple[str | None, str], int]:
    return {(entry.get("schema"), entry["table"]): entry["rows"] for entry in manifest["tables"]}


def ledger_rows(cluster: PgCluster) -> list[dict[str, Any]]:
    keys = (
        "entry_id",
        "action",
        "outcome",
        "duration",
        "from_revision",
        "to_revision",
        "backup_path",
        "backup_sha256",
        "message",
        "environment",
        "host",
        "name",
    )
    rows = cluster.execute("select %s from %s order by id" % (", ".join(keys), LEDGER), dbname="equities")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def target_state(cluster: PgCluster) -> tuple[Any, ...]:
    """Revision, schema, data and the non-drill ledger of equities, to prove a drill does not touch it."""
    return (
        version_of(cluster, "equities"),
        tables_of(cluster, "equities"),
        cluster.execute("select ticker, company_name from companies order by ticker", dbname="equities"),
        cluster.execute("select count(*), sum(volume) from daily_ohlcv", dbname="equities"),
        [row for row in ledger_rows(cluster) if row["action"] != "drill"],
    )


def side_databases(cluster: PgCluster) -> list[str]:
    rows = cluster.execute("select datname from pg_database where datname like '%\\_drill\\_%' or datname like '%\\_scratch\\_%'")
    return sorted(row[0] for row in rows)


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def copy_backup(path: str | Path, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / Path(path).name
    shutil.copy(path, copy)
    shutil.copy(str(path) + ".manifest.json", str(copy) + ".manifest.json")
    return copy


def edit_manifest(path: Path, edit: Any) -> None:
    manifest_path = Path(str(path) + ".manifest.json")
    manifest = json.loads(manifest_path.read_text())
    edit(manifest)
    manifest_path.write_text(json.dumps(manifest))


def checks_of(result: dict[str, Any]) -> dict[str, bool]:
    return {check["check"]: check["ok"] for check in result["checks"]}


# -- row counts in the manifest ----------------------------------------------------------
def test_the_manifest_holds_exact_row_counts_of_the_largest_tables(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    upgrade(fresh_pg)
    seed(db1)
    root = tmp_path / "backups"

    backup = back_up(fresh_pg, root)
    manifest = json.loads(Path(backup["manifest_path"]).read_text())
    assert manifest == backup["manifest"]
    found = counts(manifest)
    assert found[("public", "daily_ohlcv")] == OHLCV_ROWS
    assert found[("public", "companies")] == len(COMPANIES)
    assert found[("public", "alembic_version")] == 1
    # every table of the database is among the 10 largest here, each counted exactly
    tables = tables_of(db1, "equities")
    assert {table for _schema, table in found} == tables
    for (schema, table), rows in found.items():
        assert db1.execute('select count(*) from %s."%s"' % (schema, table), dbname="equities") == [(rows,)], table
    sizes = [entry["bytes"] for entry in manifest["tables"]]
    assert sizes == sorted(sizes, reverse=True) and manifest["tables"][0]["table"] == "daily_ohlcv", manifest["tables"]

    one = back_up(fresh_pg, root, count_tables=1)["manifest"]
    assert counts(one) == {("public", "daily_ohlcv"): OHLCV_ROWS}
    none = back_up(fresh_pg, root, count_tables=0)["manifest"]
    assert "tables" not in none and none["sha256"]

    run, result = call(
        fresh_pg,
        "db_backup",
        {**conn_args(db1), "backup_root": str(tmp_path / "bad"), "environment": "prod", "host": "db1", "name": "equities", "count_tables": -1},
    )
    fails_with(result, run.rc, "count_tables -1 is not allowed")
    assert not (tmp_path / "bad").exists()


def test_the_counts_are_taken_in_the_dumps_snapshot(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    """Rows committed while the backup runs are in neither the counts nor the dump."""
    db1 = fresh_pg[0]
    upgrade(fresh_pg)
    seed(db1)
    root = tmp_path / "backups"
    env = {"FLEET_DRILL_PASSWORD": db1.app_password}
    args = {
        **conn_args(db1),
        "password": "{{ lookup('ansible.builtin.env', 'FLEET_DRILL_PASSWORD') }}",
        "backup_root": str(root),
        "environment": "prod",
        "host": "db1",
        "name": "equities",
        "revision": HEAD,
    }
    # Hold the largest table: the backup's counting and pg_dump both wait for it, after the snapshot is taken.
    holder = db1.connect("equities")
    holder.autocommit = False
    with holder.cursor() as cur:
        cur.execute("LOCK TABLE daily_ohlcv IN ACCESS EXCLUSIVE MODE")
    job = start_module("db_backup", args, env=env)
    try:
        waiting = "application_name = 'alembic-fleet-backup' and wait_event_type = 'Lock'"
        wait_for("the backup's count and pg_dump to wait for the lock", lambda: len(sessions(db1, "equities", waiting)) == 2, timeout=60)
        # the exporting transaction is open and idle; pg_dump was told to import its snapshot (and no password)
        exporter = sessions(db1, "equities", "application_name = 'alembic-fleet-backup' and state = 'idle in transaction'")
        assert [row[3] for row in exporter] == ["SELECT pg_export_snapshot()"], exporter
        listing = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True).stdout
        # This test's pg_dump only (another test of the suite may be dumping at the same time): it writes under root.
        dumps = [line for line in listing.splitlines() if "pg_dump" in line and "--format=custom" in line and str(root) in line]
        assert len(dumps) == 1 and re.search(r"--snapshot=[0-9A-F]+-[0-9A-F]+-\d+", dumps[0]), dumps
        assert_no_secret(listing, fresh_pg)
        db1.execute("INSERT INTO companies (ticker, company_name) VALUES ('LATE', 'Late Inc'), ('LATER', 'Later Inc')", dbname="equities")
    finally:
        holder.rollback()
        holder.close()
    run = job.wait(120)
    result = job.result()
    assert run.rc == 0, run.output[-3000:]
    assert_no_secret(run.output, fresh_pg)
    assert db1.execute("select count(*) from companies", dbname="equities") == [(len(COMPANIES) + 2,)]
    assert counts(result["manifest"])[("public", "companies")] == len(COMPANIES)

    # ... and the dump holds exactly what was counted
    run, drilled = call(fresh_pg, "db_restore_check", drill_args(db1, path=result["path"]))
    assert run.rc == 0, drilled
    assert checks_of(drilled)["row_counts"] is True and "public.companies %d" % len(COMPANIES) in drilled["checks"][-1]["detail"], drilled["checks"]


# -- drills on PostgreSQL ----------------------------------------------------------------
def test_a_good_backup_drills_ok_in_a_scratch_database_and_the_target_is_untouched(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    root = tmp_path / "backups"
    directory = root / "prod" / "db1" / "equities"
    upgrade(fresh_pg, MID)
    back_up(fresh_pg, root, revision=MID)  # older
    upgrade(fresh_pg)
    seed(db1)
    newest = back_up(fresh_pg, root)
    # a newer file without a manifest (db_backup did not finish it) is not drilled
    (directory / "20990101T000000Z_unfinished.dump").write_bytes(b"partial")
    # the target moves on after the backup: the drill checks the backup, not the target
    db1.execute("INSERT INTO companies (ticker, company_name) VALUES ('LATE', 'Late Inc')", dbname="equities")
    before = target_state(db1)
    drills_before = [row for row in ledger_rows(db1) if row["action"] == "drill"]
    assert drills_before == []

    run, planned = call(fresh_pg, "db_restore_check", drill_args(db1, backup_dir=str(directory)), "--check")
    assert run.rc == 0 and planned["changed"] is True, planned
    assert planned["path"] == newest["path"] and planned["revision"] == HEAD
    assert "checks" not in planned and "ledger_entry_id" not in planned
    assert ledger_rows(db1) == before[4] and side_databases(db1) == []

    record = {"environment": "prod", "host": "db1", "name": "equities", "run_id": "drill-test"}
    run, result = call(fresh_pg, "db_restore_check", drill_args(db1, backup_dir=str(directory), record=record))
    assert run.rc == 0, result
    assert result["changed"] is True and result["ok"] is True
    assert result["path"] == newest["path"] and result["revision"] == HEAD
    assert [check["check"] for check in result["checks"]] == CHECKS and all(check["ok"] for check in result["checks"]), result["checks"]
    details = {check["check"]: check["detail"] for check in result["checks"]}
    assert "scratch database equities_drill_" in details["restore"]
    assert "public.daily_ohlcv %d" % OHLCV_ROWS in details["row_counts"] and "public.companies %d" % len(COMPANIES) in details["row_counts"]
    assert "what the migrations build at %s" % HEAD in details["schema"]
    assert 0 < result["restore_seconds"] <= result["duration"]
    assert result["sha256"] == newest["manifest"]["sha256"]

    # the scratch databases are gone, the target is as it was, with one drill row more in its ledger
    assert side_databases(db1) == []
    assert target_state(db1) == before
    drills = [row for row in ledger_rows(db1) if row["action"] == "drill"]
    assert len(drills) == 1, drills
    row = drills[0]
    assert row["entry_id"] == result["ledger_entry_id"] and row["outcome"] == "succeeded"
    assert row["duration"] == pytest.approx(result["duration"]) and row["duration"] > 0
    assert (row["from_revision"], row["to_revision"]) == (HEAD, HEAD)
    assert (row["backup_path"], row["backup_sha256"]) == (newest["path"], newest["manifest"]["sha256"])
    assert (row["environment"], row["host"], row["name"]) == ("prod", "db1", "equities")
    assert "passed" in row["message"]

    # nothing to drill
    empty = tmp_path / "empty"
    run, missing = call(fresh_pg, "db_restore_check", drill_args(db1, backup_dir=str(empty), record=record))
    fails_with(missing, run.rc, "no backup of equities under %s" % empty, "run backup.yml first")
    assert len(ledger_rows(db1)) == len(before[4]) + 1


def test_a_damaged_newest_backup_fails_on_its_checksum_and_is_recorded(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    root = tmp_path / "backups"
    upgrade(fresh_pg)
    seed(db1)
    back_up(fresh_pg, root)  # an older, intact one: the newest is drilled, not the newest good one
    newest = back_up(fresh_pg, root)
    damaged = Path(newest["path"])
    flip_a_byte(damaged)
    before = target_state(db1)

    run, result = call(fresh_pg, "db_restore_check", drill_args(db1, backup_dir=str(damaged.parent)))
    message = fails_with(result, run.rc, "restore drill of %s failed the checksum check" % damaged, "damaged", "recorded as failed")
    assert result["ok"] is False and result["changed"] is True and result["path"] == str(damaged)
    assert [check["check"] for check in result["checks"]] == ["checksum"] and result["checks"][0]["ok"] is False
    assert result["restore_seconds"] is None
    actual = hashlib.sha256(damaged.read_bytes()).hexdigest()
    assert actual in message and newest["manifest"]["sha256"] in message

    assert side_databases(db1) == []
    assert target_state(db1) == before
    drills = [row for row in ledger_rows(db1) if row["action"] == "drill"]
    assert len(drills) == 1 and drills[0]["entry_id"] == result["ledger_entry_id"]
    assert drills[0]["outcome"] == "failed" and "checksum" in drills[0]["message"]
    assert drills[0]["backup_sha256"] == actual and drills[0]["to_revision"] == HEAD


def test_a_wrong_row_count_or_revision_fails_those_checks(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    upgrade(fresh_pg)
    seed(db1)
    backup = back_up(fresh_pg, tmp_path / "backups")

    # the manifest's count disagrees with the dump (the file, and so its sha256, is unchanged)
    miscounted = copy_backup(backup["path"], tmp_path / "miscounted")

    def one_more(manifest: dict[str, Any]) -> None:
        for entry in manifest["tables"]:
            if entry["table"] == "daily_ohlcv":
                entry["rows"] += 1

    edit_manifest(miscounted, one_more)
    # the manifest claims an older revision: the copy is at another one, with another schema
    mislabelled = copy_backup(backup["path"], tmp_path / "mislabelled")
    edit_manifest(mislabelled, lambda manifest: manifest.update(revision=MID))
    before = target_state(db1)

    run, result = call(fresh_pg, "db_restore_check", drill_args(db1, path=str(miscounted)))
    fails_with(result, run.rc, "failed the row_counts check", "public.daily_ohlcv has %d rows, the manifest says %d" % (OHLCV_ROWS, OHLCV_ROWS + 1))
    assert checks_of(result) == {"checksum": True, "restore": True, "revision": True, "schema": True, "row_counts": False}, result["checks"]
    row = ledger_rows(db1)[-1]
    assert (row["entry_id"], row["action"], row["outcome"]) == (result["ledger_entry_id"], "drill", "failed")
    assert "row_counts" in row["message"] and "public.daily_ohlcv" in row["message"]
    assert side_databases(db1) == []

    run, result = call(fresh_pg, "db_restore_check", drill_args(db1, path=str(mislabelled)))
    fails_with(result, run.rc, "failed the revision, schema check(s)", "the restored copy is at %s, but the manifest says %s" % (HEAD, MID))
    assert checks_of(result) == {"checksum": True, "restore": True, "revision": False, "schema": False, "row_counts": True}, result["checks"]
    schema = next(check["detail"] for check in result["checks"] if check["check"] == "schema")
    assert "what the migrations build at %s" % MID in schema and "sentiment_score" in schema, schema
    row = ledger_rows(db1)[-1]
    assert (row["entry_id"], row["outcome"], row["to_revision"]) == (result["ledger_entry_id"], "failed", MID)
    assert side_databases(db1) == []
    assert target_state(db1) == before


# -- SQLite ----------------------------------------------------------------------------------
def sqlite_state(path: Path) -> tuple[Any, ...]:
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return (
            conn.execute("select version_num from alembic_version").fetchall(),
            sorted(r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")),
            conn.execute("select ticker, company_name from companies order by ticker").fetchall(),
            conn.execute("select count(*) from daily_ohlcv").fetchall(),
            conn.execute("select entry_id, action, outcome from %s where action <> 'drill' order by id" % LEDGER).fetchall(),
        )
    finally:
        conn.close()


def sqlite_drills(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return conn.execute(
            "select entry_id, outcome, duration, to_revision, backup_sha256, message from %s where action = 'drill' order by id" % LEDGER
        ).fetchall()
    finally:
        conn.close()


def test_sqlite_drill(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    database = tmp_path / "data" / "eq.db"
    url = "sqlite:///%s" % database
    temp = tmp_path / "tmp"
    temp.mkdir(mode=0o700)
    env = {"TMPDIR": str(temp)}
    run, result = call(fresh_pg, "alembic_upgrade", {"config": str(EQUITIES_INI), "url": url, "create_database": True})
    assert run.rc == 0 and result["after"] == [HEAD], result
    with sqlite3.connect(database) as conn:
        conn.executemany("INSERT INTO companies (ticker, company_name) VALUES (?, ?)", COMPANIES)
        conn.executemany(
            "INSERT INTO daily_ohlcv (symbol, date, open, high, low, close, volume) VALUES ('ACME', ?, 1, 2, 0.5, 1.5, 100)",
            [("2020-01-%02d" % day,) for day in range(1, 8)],
        )
    conn.close()
    args = {"url": url, "backup_root": str(tmp_path / "backups"), "environment": "local", "host": "localhost", "name": "equities", "revision": HEAD}
    run, backup = call(fresh_pg, "db_backup", args)
    assert run.rc == 0, backup
    assert counts(backup["manifest"]) == {(None, "daily_ohlcv"): 7, (None, "companies"): len(COMPANIES), (None, "alembic_version"): 1, (None, LEDGER): 1}
    assert [entry["table"] for entry in backup["manifest"]["tables"]][:2] == ["daily_ohlcv", "companies"]
    with sqlite3.connect(database) as conn:
        conn.execute("INSERT INTO companies (ticker, company_name) VALUES ('LATE', 'Late Inc')")
    conn.close()
    before = sqlite_state(database)

    drill = {"url": url, "config": str(EQUITIES_INI), "backup_dir": str(Path(backup["path"]).parent)}
    run, result = call(fresh_pg, "db_restore_check", drill, env=env)
    assert run.rc == 0, result
    assert result["ok"] is True and result["path"] == backup["path"] and result["revision"] == HEAD
    assert [check["check"] for check in result["checks"]] == CHECKS and all(check["ok"] for check in result["checks"]), result["checks"]
    assert "daily_ohlcv 7" in result["checks"][-1]["detail"]
    assert sqlite_state(database) == before
    drills = sqlite_drills(database)
    assert len(drills) == 1 and drills[0][:2] == (result["ledger_entry_id"], "succeeded")
    assert drills[0][2] == pytest.approx(result["duration"]) and drills[0][3:5] == (HEAD, backup["manifest"]["sha256"])
    assert list(temp.glob("fleet-drill-*")) == [] and list(temp.glob("fleet-scratch-*")) == [], sorted(temp.iterdir())
    assert sorted(p.name for p in database.parent.iterdir()) == ["eq.db"]

    # a manifest from before the row counts: still drilled, the counts are not compared
    edit_manifest(Path(backup["path"]), lambda manifest: manifest.pop("tables"))
    run, old = call(fresh_pg, "db_restore_check", drill, env=env)
    assert run.rc == 0 and old["ok"] is True, old
    assert old["checks"][-1] == {"check": "row_counts", "ok": True, "detail": old["checks"][-1]["detail"]}
    assert "not compared" in old["checks"][-1]["detail"]

    # a manifest whose count disagrees fails the drill
    def fewer(manifest: dict[str, Any]) -> None:
        manifest["tables"] = [{"table": "companies", "rows": 99}]

    edit_manifest(Path(backup["path"]), fewer)
    run, failed = call(fresh_pg, "db_restore_check", drill, env=env)
    fails_with(failed, run.rc, "row_counts", "companies has %d rows, the manifest says 99" % len(COMPANIES))
    assert sqlite_drills(database)[-1][:2] == (failed["ledger_entry_id"], "failed")
    assert sqlite_state(database) == before
    assert list(temp.glob("fleet-*")) == [], sorted(temp.iterdir())


def test_bad_inputs_fail_in_one_line_and_write_nothing(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    upgrade(fresh_pg)
    backup = back_up(fresh_pg, tmp_path / "backups")
    path = Path(backup["path"])
    no_manifest = copy_backup(path, tmp_path / "no_manifest")
    Path(str(no_manifest) + ".manifest.json").unlink()
    sqlite_labelled = copy_backup(path, tmp_path / "dialect")
    edit_manifest(sqlite_labelled, lambda manifest: manifest.update(dialect="sqlite"))
    before = target_state(db1)
    wrong = "Wr0ng-" + db1.app_password[::-1]

    cases: list[tuple[dict[str, Any], tuple[str, ...]]] = [
        (drill_args(db1), ("one of the following is required: backup_dir, path",)),
        (drill_args(db1, path=str(path), backup_dir=str(path.parent)), ("mutually exclusive: backup_dir|path",)),
        (drill_args(db1, path=str(tmp_path / "nowhere.dump")), ("backup file %s does not exist" % (tmp_path / "nowhere.dump"),)),
        (drill_args(db1, path=str(no_manifest)), ("has no manifest", "written by db_backup")),
        (drill_args(db1, path=str(sqlite_labelled)), ("is a sqlite backup but url points to a postgresql database",)),
        (drill_args(db1, path=str(path), record={"action": "migrate"}), ("record.action 'migrate' is not allowed",)),
        ({**drill_args(db1, path=str(path)), **conn_args(db1, "no_such_db")}, ("'no_such_db' does not exist", "check url")),
        (drill_args(db1, path=str(path), password=wrong), ("authentication failed for user 'migrator'",)),
        (drill_args(db1, path=str(path), config=str(tmp_path / "alembic.ini")), ("Alembic config %s does not exist" % (tmp_path / "alembic.ini"),)),
    ]
    for args, phrases in cases:
        run, result = call(fresh_pg, "db_restore_check", args)
        fails_with(result, run.rc, *phrases)
        assert wrong not in run.output
        assert "ledger_entry_id" not in result and "checks" not in result, result
        assert target_state(db1) == before and [row for row in ledger_rows(db1) if row["action"] == "drill"] == [], phrases
        assert side_databases(db1) == []

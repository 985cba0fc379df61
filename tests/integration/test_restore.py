"""db_restore ad hoc on real PostgreSQL 15 and SQLite: the original is either replaced by a complete, checked copy
(at the manifest's revision, with the ledger's later history carried over) or left exactly as it was."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import sqlalchemy as sa

from ansible.module_utils.fleet.state.ledger import SUCCEEDED, Ledger, RunRecord
from support.ansible_run import Run, module
from support.pgcluster import PgCluster

from .test_bad_input import EQUITIES_INI, conn_args, fails_with
from .test_migrate_postgres import assert_no_secret, head_of, tables_of, version_of

pytestmark = pytest.mark.slow

HEAD = head_of("equities")
MID = "c3e5071a2d43"  # "+3" from an empty database
LEDGER = "alembic_fleet_ledger"


def call(clusters: list[PgCluster], name: str, args: dict[str, Any], *flags: str) -> tuple[Run, dict[str, Any]]:
    run, result = module(name, args, *flags)
    assert result, run.output[-3000:]
    assert_no_secret(run.output, clusters)
    return run, result


# -- PostgreSQL helpers ----------------------------------------------------------------
def pg_engine(cluster: PgCluster, dbname: str = "equities") -> sa.Engine:
    return sa.create_engine(cluster.url(dbname), connect_args={"password": cluster.app_password}, poolclass=sa.pool.NullPool)


def pg_ledger(cluster: PgCluster, dbname: str = "equities") -> list[dict[str, Any]]:
    if not cluster.execute("select to_regclass(%s) is not null", ("public.%s" % LEDGER,), dbname=dbname)[0][0]:
        return []
    rows = cluster.execute("select entry_id, action, outcome, to_revision, undone_by, message, backup_sha256 from %s order by id" % LEDGER, dbname=dbname)
    keys = ("entry_id", "action", "outcome", "to_revision", "undone_by", "message", "backup_sha256")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def pg_state(cluster: PgCluster) -> tuple[Any, ...]:
    """Revision, schema and data of equities, to prove it was not touched."""
    return (
        version_of(cluster, "equities"),
        tables_of(cluster, "equities"),
        cluster.execute("select ticker, company_name from companies order by ticker", dbname="equities"),
        cluster.execute("select count(*), sum(volume) from daily_ohlcv", dbname="equities"),
        pg_ledger(cluster),
    )


def side_databases(cluster: PgCluster) -> list[str]:
    rows = cluster.execute("select datname from pg_database where datname like '%\\_restore\\_%' or datname like '%\\_replaced\\_%'")
    return sorted(row[0] for row in rows)


def record_run(engine: sa.Engine, from_revision: str, to_revision: str) -> str:
    """A succeeded 'migrate' ledger row written after the backup, through the ledger API."""
    ledger = Ledger(LEDGER)
    try:
        with engine.begin() as conn:
            entry_id = ledger.start(conn, RunRecord(action="migrate", environment="prod", host="db1", name="equities"), [from_revision])
        with engine.begin() as conn:
            ledger.finish(conn, entry_id, SUCCEEDED, [to_revision], [], "written by the test after the backup")
    finally:
        engine.dispose()
    return entry_id


def seed_pg(cluster: PgCluster) -> None:
    cluster.execute(
        "INSERT INTO companies (ticker, company_name, exchange) VALUES ('ACME', 'Acme Corp', 'NYSE'), ('GLOBX', 'Globex', 'NASDAQ')",
        dbname="equities",
    )
    cluster.execute(
        "INSERT INTO daily_ohlcv (symbol, date, open, high, low, close, volume, adjusted_close) "
        "SELECT 'ACME', date '2020-01-01' + i, 100, 110, 90, 105, 1000 * i, 104.5 FROM generate_series(1, 50) AS i",
        dbname="equities",
    )


def migrate_seed_and_back_up(clusters: list[PgCluster], root: Path) -> dict[str, Any]:
    db1 = clusters[0]
    run, result = call(clusters, "alembic_upgrade", {"config": str(EQUITIES_INI), "target": "+3", **conn_args(db1)})
    assert run.rc == 0 and result["after"] == [MID], result
    seed_pg(db1)
    return back_up(clusters, root)


def back_up(clusters: list[PgCluster], root: Path, dbname: str = "equities", revision: str = MID) -> dict[str, Any]:
    args = {**conn_args(clusters[0], dbname), "backup_root": str(root), "environment": "prod", "host": "db1", "name": dbname, "revision": revision}
    run, result = call(clusters, "db_backup", args)
    assert run.rc == 0, result
    return result


def restore_args(cluster: PgCluster, path: str | Path, **extra: Any) -> dict[str, Any]:
    return {**conn_args(cluster), "path": str(path), "name": "equities", **extra}


def copy_backup(path: str | Path, directory: Path) -> Path:
    """A copy of a backup and its manifest that a test may spoil."""
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / Path(path).name
    shutil.copy(path, copy)
    shutil.copy(str(path) + ".manifest.json", str(copy) + ".manifest.json")
    return copy


def edit_manifest(path: Path, **changes: Any) -> None:
    manifest_path = Path(str(path) + ".manifest.json")
    manifest = json.loads(manifest_path.read_text())
    manifest.update(changes)
    manifest_path.write_text(json.dumps(manifest))


# -- PostgreSQL ----------------------------------------------------------------------------
def test_postgresql_restore_goes_back_to_the_backup_and_keeps_the_history(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    backup = migrate_seed_and_back_up(fresh_pg, tmp_path / "backups")
    manifest = backup["manifest"]
    at_backup = pg_state(db1)

    # after the backup: upgrade to head, change data, and a ledger row of our own
    run, result = call(fresh_pg, "alembic_upgrade", {"config": str(EQUITIES_INI), **conn_args(db1)})
    assert run.rc == 0 and result["after"] == [HEAD], result
    db1.execute("INSERT INTO companies (ticker, company_name, sentiment_score) VALUES ('LATE', 'Late Inc', 0.5)", dbname="equities")
    db1.execute("UPDATE companies SET company_name = 'Acme Renamed' WHERE ticker = 'ACME'", dbname="equities")
    db1.execute("DELETE FROM daily_ohlcv WHERE volume > 20000", dbname="equities")
    undone = record_run(pg_engine(db1), MID, HEAD)
    before = pg_state(db1)
    assert before[0] == [HEAD]
    history = [row["entry_id"] for row in before[4]]

    # check mode: every check, nothing written
    run, result = call(fresh_pg, "db_restore", restore_args(db1, backup["path"], undo_entry_id=undone), "--check")
    assert run.rc == 0 and result["changed"] is True, result
    assert result["revision"] == MID and result["manifest"] == manifest and result["path"] == backup["path"]
    assert result["before"] == [HEAD]
    assert pg_state(db1) == before and side_databases(db1) == []

    # a client session on the original is ended by the swap
    client = db1.connect("equities", superuser=False)
    record = {"environment": "prod", "host": "db1", "run_id": "restore-test"}
    run, result = call(fresh_pg, "db_restore", restore_args(db1, backup["path"], undo_entry_id=undone, expected_sha256=manifest["sha256"], record=record))
    assert run.rc == 0, result
    assert result["changed"] is True and result["revision"] == MID and result["database"].endswith("/equities")
    assert "replaced_database" not in result and result["duration"] > 0
    assert result["pg_restore_jobs"] == max(1, min(4, os.cpu_count() or 1))  # in parallel by default: checked below
    with pytest.raises((psycopg2.OperationalError, psycopg2.InterfaceError)):
        with client.cursor() as cur:
            cur.execute("select 1")
    client.close()

    # the data and schema of the backup, the later changes gone
    after = pg_state(db1)
    assert after[:4] == at_backup[:4]
    assert after[0] == [MID]
    assert ("LATE", "Late Inc") not in after[2] and ("ACME", "Acme Corp") in after[2]
    assert db1.execute("select datallowconn, pg_get_userbyid(datdba) from pg_database where datname = 'equities'") == [(True, db1.app_user)]
    assert side_databases(db1) == []

    # the ledger: all earlier history (also what was written after the backup), the restore, the undone run
    rows = {row["entry_id"]: row for row in after[4]}
    assert set(history) <= set(rows), "history written after the backup was lost"
    restore_row = rows[result["ledger_entry_id"]]
    assert (restore_row["action"], restore_row["outcome"], restore_row["to_revision"]) == ("restore", "succeeded", MID)
    assert restore_row["backup_sha256"] == manifest["sha256"]
    assert (rows[undone]["outcome"], rows[undone]["undone_by"]) == ("rolled_back", result["ledger_entry_id"])
    assert result["ledger_rows_copied"] >= 2  # at least our row and the restore's own

    # keep_replaced: the database it replaced stays, under its own name, and can be connected to
    run, kept = call(fresh_pg, "db_restore", restore_args(db1, backup["path"], keep_replaced=True, jobs=1))
    assert run.rc == 0 and kept["pg_restore_jobs"] == 1, kept  # one job, in one transaction
    assert pg_state(db1)[:4] == at_backup[:4]
    replaced = kept["replaced_database"]
    assert replaced.startswith("equities_replaced_") and len(replaced) == len("equities_replaced_") + 6
    assert side_databases(db1) == [replaced]
    assert version_of(db1, replaced) == [MID]
    kept_row = [row for row in pg_ledger(db1, replaced) if row["entry_id"] == kept["ledger_entry_id"]]
    assert kept_row and kept_row[0]["outcome"] == "succeeded" and replaced in kept_row[0]["message"]
    assert {r[0] for r in db1.execute("select entry_id from %s" % LEDGER, dbname=replaced)} >= set(rows)
    db1.drop_database(replaced)
    assert version_of(db1, "equities") == [MID]


def test_refusals_touch_nothing(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    backup = migrate_seed_and_back_up(fresh_pg, tmp_path / "backups")
    path = Path(backup["path"])
    other = back_up(fresh_pg, tmp_path / "backups", dbname="algorithms", revision="")
    before = pg_state(db1)

    damaged = copy_backup(path, tmp_path / "damaged")
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    no_manifest = copy_backup(path, tmp_path / "no_manifest")
    Path(str(no_manifest) + ".manifest.json").unlink()
    sqlite_labelled = copy_backup(path, tmp_path / "dialect")
    edit_manifest(sqlite_labelled, dialect="sqlite")
    garbage = copy_backup(path, tmp_path / "garbage")  # no dump at all, with a manifest that matches it
    garbage.write_bytes(b"this is not a pg_dump archive\n" * 100)
    edit_manifest(garbage, size=garbage.stat().st_size, sha256=hashlib.sha256(garbage.read_bytes()).hexdigest())

    cases: list[tuple[dict[str, Any], tuple[str, ...]]] = [
        (restore_args(db1, damaged), ("damaged", "do not restore it")),
        (restore_args(db1, other["path"]), ("a backup of 'algorithms', not of 'equities'",)),
        (restore_args(db1, path, expected_sha256="0" * 64), ("expected_sha256", backup["manifest"]["sha256"])),
        (restore_args(db1, tmp_path / "nowhere" / path.name), ("does not exist", "check path")),
        (restore_args(db1, no_manifest), ("has no manifest", "db_backup")),
        (restore_args(db1, sqlite_labelled), ("sqlite backup", "postgresql database")),
        (restore_args(db1, garbage), ("pg_restore --list cannot read backup", "custom-format")),
        ({**restore_args(db1, path), **conn_args(db1, "no_such_db")}, ("'no_such_db' does not exist", "only replaces an existing database")),
        (restore_args(db1, path, undo_entry_id="f" * 32), ("undo_entry_id", "not in the ledger")),
        (restore_args(db1, path, maintenance_db="no_such_maintenance"), ("maintenance database 'no_such_maintenance'", "set maintenance_db")),
    ]
    for args, phrases in cases:
        run, result = call(fresh_pg, "db_restore", args)
        fails_with(result, run.rc, *phrases)
        assert "ledger_entry_id" not in result, result
        assert pg_state(db1) == before, phrases
        assert side_databases(db1) == []


def test_a_failing_restore_leaves_the_original_untouched_and_records_the_failure(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    backup = migrate_seed_and_back_up(fresh_pg, tmp_path / "backups")
    db1.execute("INSERT INTO companies (ticker, company_name) VALUES ('LATE', 'Late Inc')", dbname="equities")
    before = pg_state(db1)

    # a dump cut short (its table of contents whole, the data of its last table cut off), with a manifest that
    # matches it: pg_restore itself fails half-way. (A file that is no dump at all is refused before anything is
    # touched: see test_refusals_touch_nothing.)
    truncated = copy_backup(backup["path"], tmp_path / "truncated")
    truncated.write_bytes(truncated.read_bytes()[:-100])
    edit_manifest(truncated, size=truncated.stat().st_size, sha256=hashlib.sha256(truncated.read_bytes()).hexdigest())
    # a real dump whose manifest claims another revision: the check after pg_restore fails
    mislabelled = copy_backup(backup["path"], tmp_path / "mislabelled")
    edit_manifest(mislabelled, revision=HEAD)

    for path, phrases in ((truncated, ("pg_restore", "failed")), (mislabelled, ("the restored copy is at %s" % MID, "manifest's revision %s" % HEAD))):
        run, result = call(fresh_pg, "db_restore", restore_args(db1, path))
        fails_with(result, run.rc, *phrases, "untouched")
        assert side_databases(db1) == [], "the scratch database was left behind"
        now = pg_state(db1)
        assert now[:4] == before[:4]
        assert db1.execute("select datallowconn from pg_database where datname = 'equities'") == [(True,)]
        failed = [row for row in now[4] if row["entry_id"] == result["ledger_entry_id"]]
        assert len(failed) == 1 and failed[0]["action"] == "restore" and failed[0]["outcome"] == "failed", now[4]
        assert phrases[0] in failed[0]["message"]
        assert failed[0]["to_revision"] == MID
        assert now[4][:-1] == before[4], "the failed restore changed other ledger rows"
        before = now

    # a session the user may not end (a superuser's) makes the swap fail: the original is put back as it was
    superuser_session = db1.connect("equities")
    try:
        run, result = call(fresh_pg, "db_restore", restore_args(db1, backup["path"]))
        fails_with(result, run.rc, "still in use", "sessions the user may not end: postgres", "pg_signal_backend", "untouched")
    finally:
        superuser_session.close()
    assert side_databases(db1) == []
    assert db1.execute("select datallowconn from pg_database where datname = 'equities'") == [(True,)]
    now = pg_state(db1)
    assert now[:4] == before[:4] and now[4][-1]["outcome"] == "failed"


# -- SQLite ---------------------------------------------------------------------------------
def sqlite_state(path: Path) -> tuple[Any, ...]:
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
        ledger = (
            conn.execute("select entry_id, action, outcome, to_revision, undone_by, message from %s order by id" % LEDGER).fetchall()
            if LEDGER in tables
            else []
        )
        return (
            [r[0] for r in conn.execute("select version_num from alembic_version")],
            tables,
            conn.execute("select ticker, company_name from companies order by ticker").fetchall(),
            conn.execute("select count(*) from daily_ohlcv").fetchall(),
            ledger,
        )
    finally:
        conn.close()


def test_sqlite_restore_goes_back_to_the_backup_and_keeps_the_history(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    directory = tmp_path / "data"
    database = directory / "eq.db"
    url = "sqlite:///%s" % database
    run, result = call(fresh_pg, "alembic_upgrade", {"config": str(EQUITIES_INI), "url": url, "target": "+3", "create_database": True})
    assert run.rc == 0 and result["after"] == [MID], result
    with sqlite3.connect(database) as conn:
        conn.execute("INSERT INTO companies (ticker, company_name) VALUES ('ACME', 'Acme Corp'), ('GLOBX', 'Globex')")
        conn.execute("INSERT INTO daily_ohlcv (symbol, date, open, high, low, close, volume) VALUES ('ACME', '2020-01-02', 1, 2, 0.5, 1.5, 100)")
    conn.close()
    args = {"url": url, "backup_root": str(tmp_path / "backups"), "environment": "local", "host": "localhost", "name": "equities", "revision": MID}
    run, backup = call(fresh_pg, "db_backup", args)
    assert run.rc == 0, backup
    at_backup = sqlite_state(database)

    run, result = call(fresh_pg, "alembic_upgrade", {"config": str(EQUITIES_INI), "url": url})
    assert run.rc == 0 and result["after"] == [HEAD], result
    with sqlite3.connect(database) as conn:
        conn.execute("INSERT INTO companies (ticker, company_name) VALUES ('LATE', 'Late Inc')")
        conn.execute("UPDATE companies SET company_name = 'Acme Renamed' WHERE ticker = 'ACME'")
    conn.close()
    undone = record_run(sa.create_engine("sqlite:///%s" % database, poolclass=sa.pool.NullPool), MID, HEAD)
    before = sqlite_state(database)
    history = {row[0] for row in before[4]}

    restore = {"url": url, "path": backup["path"], "name": "equities", "undo_entry_id": undone}
    run, result = call(fresh_pg, "db_restore", restore, "--check")
    assert run.rc == 0 and result["changed"] is True and result["revision"] == MID, result
    assert sqlite_state(database) == before

    run, result = call(fresh_pg, "db_restore", {**restore, "expected_sha256": backup["manifest"]["sha256"]})
    assert run.rc == 0 and result["changed"] is True and result["revision"] == MID, result
    after = sqlite_state(database)
    assert after[:4] == at_backup[:4] and after[0] == [MID]
    rows = {row[0]: row for row in after[4]}
    assert history <= set(rows)
    assert rows[result["ledger_entry_id"]][1:4] == ("restore", "succeeded", MID)
    assert rows[undone][2] == "rolled_back" and rows[undone][4] == result["ledger_entry_id"]
    assert sorted(p.name for p in directory.iterdir()) == ["eq.db"], "temporary files left behind"
    backup_file = Path(backup["path"])
    assert sorted(p.name for p in backup_file.parent.iterdir()) == [backup_file.name, backup_file.name + ".manifest.json"]

    # a file that is no SQLite database, with a matching manifest: refused after the copy fails, recorded
    garbage = tmp_path / "garbage" / "20260101T000000Z_base.sqlite3"
    garbage.parent.mkdir()
    garbage.write_bytes(b"not a database at all\n" * 300)
    manifest = {**backup["manifest"], "size": garbage.stat().st_size, "sha256": hashlib.sha256(garbage.read_bytes()).hexdigest()}
    Path(str(garbage) + ".manifest.json").write_text(json.dumps(manifest))
    run, failed = call(fresh_pg, "db_restore", {"url": url, "path": str(garbage), "name": "equities"})
    fails_with(failed, run.rc, "cannot be read as a SQLite database", "untouched")
    now = sqlite_state(database)
    assert now[:4] == after[:4]
    assert now[4][-1][0] == failed["ledger_entry_id"] and now[4][-1][1:3] == ("restore", "failed")
    assert sorted(p.name for p in directory.iterdir()) == ["eq.db"], "temporary files left behind"

"""alembic_status for a scheduled status run: drift, its allowlist, the newest backup, ledger highlights, review.

Every database is real (PostgreSQL 15 clusters, and one SQLite file); every drift is made by hand outside the
migrations and must be named exactly; no output may contain a password, and the status itself never writes.
"""

from __future__ import annotations

import calendar
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ansible.module_utils.fleet.ops.drift import allowed_by, diff_table_of
from ansible.module_utils.fleet.state.ledger import FAILED, SUCCEEDED, Ledger, RunRecord
from support.ansible_run import module
from support.pgcluster import PgCluster

from .test_bad_input import EQUITIES_INI, conn_args
from .test_migrate_postgres import assert_no_secret, tables_of, version_of
from .test_modules_postgres import REVS

pytestmark = pytest.mark.slow

HEAD, PREVIOUS = REVS[-1], REVS[-2]
LEDGER = "alembic_fleet_ledger"
NEW_COLUMN = "column companies.x is in the database but not in the expected schema"
NEW_COLUMN_VS_MODELS = "column companies.x is in the database but not in the models"
OPT_IN_KEYS = ("drift", "model_drift", "backup", "backup_note", "review")


def call(clusters: list[PgCluster], name: str, args: dict[str, Any], *flags: str) -> dict[str, Any]:
    run, result = module(name, args, *flags)
    assert result, run.output[-3000:]
    assert_no_secret(run.output, clusters)
    assert run.rc == 0, result
    return result


def status(clusters: list[PgCluster], args: dict[str, Any], *flags: str, **options: Any) -> dict[str, Any]:
    result = call(clusters, "alembic_status", {**args, **options}, *flags)
    assert result["changed"] is False
    return result


def pg_args(cluster: PgCluster) -> dict[str, Any]:
    return {"config": str(EQUITIES_INI), **conn_args(cluster)}


def scratch_databases(cluster: PgCluster) -> list[str]:
    return [row[0] for row in cluster.execute("select datname from pg_database where datname like '%\\_scratch\\_%'")]


def pg_engine(cluster: PgCluster) -> sa.Engine:
    return sa.create_engine(cluster.url("equities"), connect_args={"password": cluster.app_password}, poolclass=sa.pool.NullPool)


def record(cluster: PgCluster, action: str, outcome: str, message: str | None = None) -> tuple[str, str]:
    """A finished ledger row written through the ledger API; (run_id, entry_id)."""
    ledger = Ledger(LEDGER)
    engine = pg_engine(cluster)
    entry = RunRecord(action=action, environment="prod", host="db1", name="equities")
    try:
        with engine.begin() as conn:
            entry_id = ledger.start(conn, entry, [HEAD])
        with engine.begin() as conn:
            ledger.finish(conn, entry_id, outcome, [HEAD], [], message)
    finally:
        engine.dispose()
    return entry.run_id, entry_id


# -- the allowlist's matching, on describe_diff's own wording ---------------------------------------------
@pytest.mark.parametrize(
    "text, table",
    [
        ("table audit_log is in the database but not in the expected schema", "audit_log"),
        ("column companies.x is in the database but not in the models", "companies"),
        ("column daily_ohlcv.volume type differs: database has INTEGER, models have BIGINT", "daily_ohlcv"),
        ("index ix_tmp on companies(ticker, exchange) is in the database but not in the models", "companies"),
        ("constraint (unnamed) on daily_ohlcv is in the expected schema but not in the database", "daily_ohlcv"),
        ("foreign key fk_symbol on daily_ohlcv is in the database but not in the models", "daily_ohlcv"),
        ("difference ('something', 'else')", None),
    ],
)
def test_the_table_of_each_kind_of_difference(text: str, table: str | None) -> None:
    assert diff_table_of(text) == table


def test_allowlist_entries_match_the_text_or_the_table() -> None:
    assert allowed_by(NEW_COLUMN, ["companies"]) == "companies"
    assert allowed_by(NEW_COLUMN, ["comp*"]) == "comp*"
    assert allowed_by(NEW_COLUMN, ["daily_ohlcv", "column companies.x *"]) == "column companies.x *"
    assert allowed_by(NEW_COLUMN, ["daily_ohlcv", "column companies.y *", "companies.x", "Companies"]) is None
    assert allowed_by("difference ('x',)", ["companies"]) is None


# -- PostgreSQL -------------------------------------------------------------------------------------------
def test_at_head_drift_is_clean_then_a_manual_column_is_named_and_can_be_allowed(fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    args = pg_args(db1)
    call(fresh_pg, "alembic_upgrade", args)

    plain = status(fresh_pg, args)
    assert not set(OPT_IN_KEYS) & set(plain), "an option that was not given ran"

    result = status(fresh_pg, args, drift=True, review=True)
    # The ledger table (written by the upgrade) and alembic_version are there and are not drift.
    assert LEDGER in tables_of(db1, "equities")
    assert result["drift"] == {"checked": True, "differences": [], "allowed": [], "note": None, "revision": HEAD, "duration": result["drift"]["duration"]}
    assert (result["model_drift"]["checked"], result["model_drift"]["differences"], result["model_drift"]["note"]) == (True, [], None)
    assert result["review"] is None  # nothing pending
    print("status with drift on PostgreSQL: %.3f s (drift %.3f s)" % (result["duration"], result["drift"]["duration"]))

    db1.execute("ALTER TABLE companies ADD COLUMN x int", dbname="equities")
    before = (version_of(db1, "equities"), tables_of(db1, "equities"))

    result = status(fresh_pg, args, drift=True)
    assert result["drift"]["checked"] is True
    assert result["drift"]["differences"] == [NEW_COLUMN]
    assert result["drift"]["allowed"] == []
    assert result["model_drift"]["differences"] == [NEW_COLUMN_VS_MODELS]

    for allow in (["companies"], ["column companies.x is in the database but not in the *"]):
        result = status(fresh_pg, args, drift=True, drift_allow=allow)
        assert (result["drift"]["differences"], result["drift"]["allowed"]) == ([], [NEW_COLUMN]), allow
        assert (result["model_drift"]["differences"], result["model_drift"]["allowed"]) == ([], [NEW_COLUMN_VS_MODELS]), allow

    result = status(fresh_pg, args, drift=True, drift_allow=["daily_ohlcv", "column companies.y *"])
    assert (result["drift"]["differences"], result["drift"]["allowed"]) == ([NEW_COLUMN], [])

    # Check mode is full and the same; nothing is left or written.
    result = status(fresh_pg, args, "--check", drift=True)
    assert result["drift"]["differences"] == [NEW_COLUMN]
    assert scratch_databases(db1) == []
    assert (version_of(db1, "equities"), tables_of(db1, "equities")) == before

    run, failed = module("alembic_status", {**args, "drift": True, "drift_allow": ["companies", " "]})
    assert run.rc != 0 and "drift_allow has an empty entry" in failed["msg"]


def test_behind_head_drift_is_checked_at_the_current_revision_and_the_review_counts(fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    args = pg_args(db1)
    call(fresh_pg, "alembic_upgrade", {**args, "target": "head-1"})

    result = status(fresh_pg, args, drift=True)
    assert (result["current"], result["pending_count"]) == ([PREVIOUS], 1)
    assert (result["drift"]["checked"], result["drift"]["revision"], result["drift"]["differences"]) == (True, PREVIOUS, [])
    assert result["model_drift"]["checked"] is False
    assert result["model_drift"]["note"].startswith("not at head"), result["model_drift"]
    assert "review" not in result

    # stock_symbol_type comes with PREVIOUS itself: its absence is drift at that revision.
    db1.execute("ALTER TABLE companies DROP COLUMN stock_symbol_type", dbname="equities")
    result = status(fresh_pg, args, drift=True)
    assert result["drift"]["differences"] == ["column companies.stock_symbol_type is in the expected schema but not in the database"]

    # The review of the one pending revision, equal to alembic_lint's.
    cases = (({}, False), ({"lossy-downgrade": "error"}, True), ({"lossy-downgrade": "error"}, False), ({"lossy-downgrade": "warning"}, True))
    for rules, block in cases:
        result = status(fresh_pg, args, review=True, review_rules=rules, review_block=block)
        lint = call(fresh_pg, "alembic_lint", {**args, "rules": rules, "block": block})
        review = result["review"]
        assert review["revisions"] == [HEAD]
        assert (review["errors"], review["warnings"], review["acknowledged"]) == (
            lint["summary"]["errors"],
            lint["summary"]["warnings"],
            lint["summary"]["acknowledged"],
        )
        assert (review["report"], review["blocking"], review["blocked"]) == (lint["report"], lint["errors"], lint["blocked"])
        level = rules.get("lossy-downgrade")
        assert review["errors"] == (1 if level == "error" else 0), review
        assert review["warnings"] == (1 if level == "warning" else 0), review
        assert review["blocked"] is (level == "error" and block)
        if level:
            assert len(review["report"]) == 1 and review["report"][0].startswith(HEAD) and "%s lossy-downgrade" % level in review["report"][0]

    run, failed = module("alembic_status", {**args, "review": True, "review_rules": {"lossy-downgrade": "loud"}})
    assert run.rc != 0 and "lossy-downgrade is set to 'loud'" in failed["msg"]
    assert version_of(db1, "equities") == [PREVIOUS]


def test_unversioned_and_missing_databases_are_not_checked(fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    result = status(fresh_pg, pg_args(db1), drift=True)
    assert (result["exists"], result["versioned"]) == (True, False)
    for key in ("drift", "model_drift"):
        assert result[key]["checked"] is False and result[key]["differences"] == []
        assert "not versioned" in result[key]["note"], result[key]
    assert (result["last_success"], result["last_drill"]) == (None, None)

    missing = {"config": str(EQUITIES_INI), **conn_args(db1, "nosuchdb")}
    result = status(fresh_pg, missing, drift=True, create_database=True)
    assert result["exists"] is False
    assert result["drift"]["checked"] is False and "does not exist" in result["drift"]["note"]
    assert "nosuchdb" not in [row[0] for row in db1.execute("select datname from pg_database")]


def test_last_success_and_last_drill_come_from_the_ledger(fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    args = pg_args(db1)
    upgrade = call(fresh_pg, "alembic_upgrade", args)
    upgrade_row = status(fresh_pg, args)["last_runs"][0]
    assert upgrade_row["entry_id"] == upgrade["ledger_entry_id"]

    result = status(fresh_pg, args)
    age = result["last_success"].pop("age_seconds")
    assert 0 <= age < 600, "seconds since the run finished"
    assert result["last_success"] == {
        key: upgrade_row[key] for key in ("run_id", "action", "started_at", "finished_at", "duration", "from_revision", "to_revision")
    }
    assert result["last_success"]["to_revision"] == [HEAD]
    assert result["last_drill"] is None

    drill_run, _ = record(db1, "drill", SUCCEEDED, "restored into a scratch database and verified")
    record(db1, "migrate", FAILED, "failed on purpose")
    # Only the newest row is read into last_runs: the others come from the ledger itself.
    result = status(fresh_pg, args, ledger_limit=1)
    assert [row["action"] for row in result["last_runs"]] == ["migrate"]
    assert result["last_success"]["run_id"] == upgrade_row["run_id"]  # the failed migrate is not a success
    drill = result["last_drill"]
    assert (drill["run_id"], drill["outcome"], drill["message"]) == (drill_run, SUCCEEDED, "restored into a scratch database and verified")
    assert drill["finished_at"].endswith("Z") and isinstance(drill["duration"], float) and 0 <= drill["age_seconds"] < 600

    newer_drill, _ = record(db1, "drill", FAILED, "the backup did not restore")
    result = status(fresh_pg, args)  # now both come from the rows already read
    assert (result["last_drill"]["run_id"], result["last_drill"]["outcome"]) == (newer_drill, FAILED)
    assert result["last_success"]["run_id"] == upgrade_row["run_id"]


def test_backup_dir_gives_the_newest_backup_with_a_manifest(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    args = pg_args(db1)
    call(fresh_pg, "alembic_upgrade", args)
    root = tmp_path / "backups"
    backup_args = {**conn_args(db1), "backup_root": str(root), "environment": "prod", "host": "db1", "name": "equities", "revision": HEAD}
    first = call(fresh_pg, "db_backup", backup_args)
    time.sleep(1.1)  # a later second: a later name and created_at
    second = call(fresh_pg, "db_backup", backup_args)
    directory = root / "prod" / "db1" / "equities"
    assert Path(second["path"]).parent == directory

    started = time.time()
    result = status(fresh_pg, args, backup_dir=str(directory))
    backup = result["backup"]
    assert backup["path"] == second["path"] != first["path"]
    assert backup["created_at"] == second["manifest"]["created_at"]
    assert backup["sha256"] == second["manifest"]["sha256"]
    assert backup["size"] == os.path.getsize(second["path"]) == second["manifest"]["size"]
    assert backup["revision"] == HEAD
    created = calendar.timegm(time.strptime(backup["created_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(backup["age_seconds"] - (started - created)) < 30, backup
    assert backup["age_seconds"] >= 0

    # A newer file without a readable manifest does not count; without its manifest the second does not either.
    (directory / "20991231T000000Z_zzzz.dump").write_bytes(b"not a dump")
    (directory / "20991231T000001Z_yyyy.dump").write_bytes(b"not a dump")
    (directory / "20991231T000001Z_yyyy.dump.manifest.json").write_text("{not json")
    assert status(fresh_pg, args, backup_dir=str(directory))["backup"]["path"] == second["path"]
    os.unlink(second["manifest_path"])
    assert status(fresh_pg, args, backup_dir=str(directory))["backup"]["path"] == first["path"]

    assert status(fresh_pg, args, backup_dir=str(tmp_path / "nothing" / "here"))["backup"] is None
    assert json.loads(Path(first["manifest_path"]).read_text())["sha256"] == first["manifest"]["sha256"]  # untouched


# -- SQLite -------------------------------------------------------------------------------------------------
def test_sqlite_manual_alter_is_drift(tmp_path: Path) -> None:
    database = tmp_path / "x.db"
    args = {"config": str(EQUITIES_INI), "url": "sqlite:///%s" % database}
    run, result = module("alembic_upgrade", {**args, "create_database": True})
    assert run.rc == 0, result

    run, result = module("alembic_status", {**args, "drift": True})
    assert run.rc == 0, result
    assert (result["drift"]["checked"], result["drift"]["differences"], result["drift"]["revision"]) == (True, [], HEAD)
    assert (result["model_drift"]["checked"], result["model_drift"]["differences"]) == (True, [])

    with sqlite3.connect(database) as conn:
        conn.execute("ALTER TABLE companies ADD COLUMN x int")
    run, result = module("alembic_status", {**args, "drift": True})
    assert run.rc == 0, result
    assert result["drift"]["differences"] == [NEW_COLUMN]
    assert result["model_drift"]["differences"] == [NEW_COLUMN_VS_MODELS]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db"]  # no scratch file left beside it

    run, result = module("alembic_status", {**args, "drift": True, "drift_allow": ["compan*"]})
    assert (result["drift"]["differences"], result["drift"]["allowed"]) == ([], [NEW_COLUMN])

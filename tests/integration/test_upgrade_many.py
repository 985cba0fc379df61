"""alembic_upgrade over a host's databases in one call (issue 18: one module start per host): each database has its
own backup, transaction, verification and ledger row, up to `parallel` at a time in processes of their own; a
failing database is reported in its entry and does not stop the others; a bad entry is refused before any database
is reached. Real PostgreSQL, the bundled projects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.ansible_run import REPO, module
from support.pgcluster import PgCluster

from .test_bad_input import conn_args
from .test_migrate_postgres import assert_no_secret, backups_under, version_of
from .test_rollback import ledger

PROJECTS = {name: REPO / "migrations" / name / "alembic.ini" for name in ("equities", "algorithms")}
HEADS = {"equities": "e5f7293c4a65", "algorithms": "6c2d3f5e0a47"}


def entry(cluster: PgCluster, name: str, backups: Path, **own: Any) -> dict[str, Any]:
    return {
        "name": name,
        "config": str(PROJECTS[name]),
        **conn_args(cluster, name),
        "backup": {"backup_root": str(backups), "environment": "dev", "host": "db1", "name": name},
        "record": {"name": name, "host": "db1", "environment": "dev", "run_id": "many-1"},
        **own,
    }


def upgrade(entries: list[dict[str, Any]], cluster: PgCluster, **options: Any) -> tuple[int, dict[str, Any], str]:
    done, result = module("alembic_upgrade", {"databases": entries, "verify": {}, **options})
    assert_no_secret(done.output, [cluster])
    return done.rc, result, done.output


def test_a_hosts_databases_are_upgraded_in_one_call_each_with_its_own_backup_verification_and_ledger_row(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    db1, backups = fresh_pg[0], tmp_path / "backups"
    for name in PROJECTS:  # something to back up: each database one revision in
        first = module("alembic_upgrade", {"config": str(PROJECTS[name]), **conn_args(db1, name), "target": "+1"})[0]
        assert first.rc == 0, first.output[-2000:]

    rc, result, output = upgrade([entry(db1, name, backups) for name in PROJECTS], db1, parallel=2)
    assert rc == 0 and result["changed"] is True, output[-3000:]
    by_name = {one["name"]: one for one in result["databases"]}
    for name, head in HEADS.items():
        one = by_name[name]
        assert one["failed"] is False and one["after"] == [head] and one["verify"]["problems"] == [], one
        assert version_of(db1, name) == [head]
        directory = backups / "dev" / "db1" / name
        assert len(backups_under(directory)) == 1 and one["backup"]["path"].startswith(str(directory)), one.get("backup")
        rows = [row for row in ledger(db1, name) if row["run_id"] == "many-1"]
        assert [(row["action"], row["outcome"], row["name"]) for row in rows] == [("upgrade", "succeeded", name)], rows
    assert result["summary"].startswith("equities: upgraded ") and "; algorithms: upgraded " in result["summary"]

    rc, again, output = upgrade([entry(db1, name, backups) for name in PROJECTS], db1, parallel=2)
    assert rc == 0 and again["changed"] is False, output[-3000:]
    assert [one["changed"] for one in again["databases"]] == [False, False]


def test_a_failing_database_does_not_stop_the_others_and_a_bad_entry_stops_all_before_anything(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    db1, backups = fresh_pg[0], tmp_path / "backups"
    bad_backup = entry(db1, "algorithms", backups)
    bad_backup["backup"] = dict(bad_backup["backup"], compress_level=12)
    rc, refused, output = upgrade([entry(db1, "equities", backups), bad_backup], db1)
    assert rc != 0 and "compress_level" in refused["msg"] and "\n" not in refused["msg"], output[-3000:]
    assert version_of(db1, "equities") == [] and version_of(db1, "algorithms") == []  # nothing was reached

    wrong_target = entry(db1, "algorithms", backups, target="ffffffffffff")
    rc, result, output = upgrade([wrong_target, entry(db1, "equities", backups)], db1, parallel=2)
    assert rc != 0, output[-3000:]
    by_name = {one["name"]: one for one in result["databases"]}
    assert by_name["algorithms"]["failed"] is True and "ffffffffffff" in by_name["algorithms"]["msg"]
    assert by_name["equities"]["failed"] is False and version_of(db1, "equities") == [HEADS["equities"]]
    assert version_of(db1, "algorithms") == []
    assert "1 of 2 databases (algorithms)" in result["msg"]

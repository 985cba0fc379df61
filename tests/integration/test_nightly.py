"""A nightly-style run against the two-host test fleet: restore_check.yml then status.yml produce the JSON, HTML
and .prom outputs, exit non-zero exactly when drift, lag, a stale backup or a failed drill exists, and change no
production database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.ansible_run import REPO, Run, playbook
from support.pgcluster import PgCluster

from .conftest import make_inventory, password_env
from .test_migrate_postgres import assert_no_secret, backups_under

pytestmark = pytest.mark.slow


def play(inventory: Path, book: str, clusters: list[PgCluster], *args: str) -> Run:
    result = playbook(REPO / book, inventory, "-l", "prod", *args, env=password_env(clusters))
    assert_no_secret(result.output, clusters)
    return result


def report(root: Path) -> dict[str, Any]:
    return json.loads((root / "reports" / "status.json").read_text())


def reasons(root: Path) -> list[str]:
    return list(report(root)["reasons"])


def fingerprint(clusters: list[PgCluster]) -> list[Any]:
    """What a read-only run must not change: databases, schemas, versions, ledgers."""
    found: list[Any] = []
    for cluster in clusters:
        found.append(sorted(r[0] for r in cluster.execute("select datname from pg_database")))
        for name in ("equities", "algorithms"):
            found.append(
                cluster.execute(
                    "select table_name, column_name, data_type from information_schema.columns where table_schema = 'public' order by 1, 2",
                    dbname=name,
                )
            )
            found.append(cluster.execute("select version_num from alembic_version", dbname=name))
            found.append(cluster.execute("select entry_id, outcome from alembic_fleet_ledger order by id", dbname=name))
    return found


def put_db2_one_revision_behind(inventory: Path, clusters: list[PgCluster]) -> None:
    """Roll both of db2's databases back one revision."""
    done = play(inventory, "rollback.yml", clusters, "-l", "db2", "-e", "fleet_rollback_target=head-1", "-e", "fleet_rollback_allow_data_loss=true")
    assert done.rc == 0, done.output[-3000:]


@pytest.fixture()
def fleet(tmp_path: Path, fresh_pg: list[PgCluster]) -> Path:
    inventory = make_inventory(tmp_path, fresh_pg, fleet_report_dir=str(tmp_path / "reports"))
    done = play(inventory, "migrate.yml", fresh_pg)
    assert done.rc == 0, done.output[-3000:]
    return inventory


def test_a_clean_fleet_passes_and_a_manual_change_is_drift(tmp_path: Path, fresh_pg: list[PgCluster], fleet: Path) -> None:
    drills = play(fleet, "restore_check.yml", fresh_pg)
    assert drills.rc == 0, drills.output[-3000:]
    assert " ".join(drills.output.split()).count("checks passed") == 4, "one drill per database of both hosts"

    before = fingerprint(fresh_pg)
    clean = play(fleet, "status.yml", fresh_pg)
    assert clean.rc == 0, clean.output[-3000:]
    assert fingerprint(fresh_pg) == before, "status.yml changes no database and leaves no scratch database"
    data = report(tmp_path)
    assert data["reasons"] == [] and data["summary"]["databases"] == 4 and data["summary"]["red"] == 0
    html = (tmp_path / "reports" / "status.html").read_text()
    assert 'id="env-prod"' in html and html.count("<table") >= 1
    families = {f.name: f for f in text_string_to_metric_families((tmp_path / "reports" / "alembic_fleet.prom").read_text())}
    pending = [s for s in families["alembic_fleet_pending_migrations"].samples if s.labels["database"] == "equities"]
    assert sorted(s.labels["host"] for s in pending) == ["db1", "db2"] and all(s.value == 0 for s in pending)
    drift = families["alembic_fleet_schema_drift"].samples
    assert len(drift) == 4 and all(s.value == 0 for s in drift)
    assert all(s.value == 1 for s in families["alembic_fleet_drill_success"].samples)

    # A change made by hand, outside the migrations: drift, named exactly, and the run fails.
    fresh_pg[0].execute("alter table companies add column notes text", dbname="equities")
    drifted = play(fleet, "status.yml", fresh_pg)
    assert drifted.rc != 0
    found = reasons(tmp_path)
    assert "prod/db1/equities: schema drift: column companies.notes is in the database but not in the expected schema" in found, found
    assert all(r.startswith("prod/db1/equities: ") and "companies.notes" in r for r in found), found
    families = {f.name: f for f in text_string_to_metric_families((tmp_path / "reports" / "alembic_fleet.prom").read_text())}
    flagged = {(s.labels["host"], s.labels["database"]) for s in families["alembic_fleet_schema_drift"].samples if s.value == 1}
    assert flagged == {("db1", "equities")}

    # An accepted difference is not a reason.
    allowed = play(fleet, "status.yml", fresh_pg, "-e", '{"fleet_drift_allow": ["column companies.notes *"]}')
    assert allowed.rc == 0, allowed.output[-3000:]
    assert reasons(tmp_path) == []

    # A drill killed mid-way leaves its copy behind; a restore may keep the replaced original on purpose.
    for name in ("equities_drill_0badc0", "equities_replaced_0badc1", "equitiesx_drill_0badc2"):
        fresh_pg[1].create_database(name)
    try:
        left = play(fleet, "status.yml", fresh_pg, "-e", '{"fleet_drift_allow": ["column companies.notes *"]}')
        assert left.rc != 0
        assert reasons(tmp_path) == [
            "prod/db2/equities: database equities_drill_0badc0 was left by an interrupted restore drill and no session uses it: drop it",
        ]
        notes = [n for n in report(tmp_path)["notes"] if "replaced" in n]
        assert notes == [
            (
                "prod/db2/equities: database equities_replaced_0badc1 holds the copy a restore replaced"
                " (kept with keep_replaced, or left by an interrupted restore): drop it when it is no longer needed"
            )
        ], notes
    finally:
        for name in ("equities_drill_0badc0", "equities_replaced_0badc1", "equitiesx_drill_0badc2"):
            fresh_pg[1].drop_database(name)


def test_lag_a_stale_backup_and_a_failed_drill_fail_the_night(tmp_path: Path, fresh_pg: list[PgCluster], fleet: Path) -> None:
    # Lag: db2's equities one revision behind head.
    put_db2_one_revision_behind(fleet, fresh_pg)
    lagging = play(fleet, "status.yml", fresh_pg)
    assert lagging.rc != 0
    assert any(r.startswith("prod/db2/equities: 1 revision behind head") for r in reasons(tmp_path)), reasons(tmp_path)
    assert any(r.startswith("prod/db2/algorithms: 1 revision behind head") for r in reasons(tmp_path)), reasons(tmp_path)
    assert not any("db1" in r for r in reasons(tmp_path))

    # A stale backup: the limit is tighter than the backups' age.
    stale = play(fleet, "status.yml", fresh_pg, "-l", "db1", "-e", "fleet_max_backup_age_hours=0.00001")
    assert stale.rc != 0
    assert any(r.startswith("prod/db1/equities: newest backup is") for r in reasons(tmp_path)), reasons(tmp_path)

    # A corrupted newest backup fails the drill, and the status then says so.
    newest = [p for p in backups_under(tmp_path / "backups") if "/db1/equities/" in str(p)][-1]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    drills = play(fleet, "restore_check.yml", fresh_pg, "-l", "db1")
    assert drills.rc != 0 and "equities" in drills.output and "restore drill failed" in drills.output
    failed = play(fleet, "status.yml", fresh_pg, "-l", "db1")
    assert failed.rc != 0
    assert any(r.startswith("prod/db1/equities: last restore drill failed") for r in reasons(tmp_path)), reasons(tmp_path)


def test_prod_can_require_a_recent_drill_before_upgrading(tmp_path: Path, fresh_pg: list[PgCluster], fleet: Path) -> None:
    put_db2_one_revision_behind(fleet, fresh_pg)
    behind = fresh_pg[1].execute("select version_num from alembic_version", dbname="equities")
    refused = play(fleet, "migrate.yml", fresh_pg, "-l", "db2", "-e", "fleet_drill_max_age_days=7")
    assert refused.rc != 0
    assert "requires a successful restore drill younger than 7 day(s) before an upgrade" in " ".join(refused.output.split())
    assert fresh_pg[1].execute("select version_num from alembic_version", dbname="equities") == behind
    assert play(fleet, "restore_check.yml", fresh_pg, "-l", "db2").rc == 0
    allowed = play(fleet, "migrate.yml", fresh_pg, "-l", "db2", "-e", "fleet_drill_max_age_days=7")
    assert allowed.rc == 0, allowed.output[-3000:]
    assert fresh_pg[1].execute("select version_num from alembic_version", dbname="equities") != behind

"""rollback.yml and the migrate procedure's automatic rollback, on two real PostgreSQL hosts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from support.ansible_run import REPO, playbook
from support.pgcluster import PgCluster

from .conftest import make_inventory, password_env
from .test_bad_input import project_copy
from .test_migrate_postgres import (
    PROJECTS,
    assert_no_secret,
    head_of,
    tables_of,
    version_of,
)

pytestmark = pytest.mark.slow

LEDGER = "alembic_fleet_ledger"

FAILING_REVISION = '''"""Add a column, then fail halfway

Revision ID: 0bad0bad0bad
Revises: e5f7293c4a65
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0bad0bad0bad"
down_revision = "e5f7293c4a65"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("companies", sa.Column("half_done", sa.Integer()))
    op.execute("SELECT 1 / 0")


def downgrade() -> None:
    op.drop_column("companies", "half_done")
'''

UNMODELLED_REVISION = (
    FAILING_REVISION.replace('    op.execute("SELECT 1 / 0")\n', "")
    .replace("Add a column, then fail halfway", "Add a column the models do not have")
    .replace("0bad0bad0bad", "0dd0dd0dd0dd")
)


def history(name: str) -> list[str]:
    script = ScriptDirectory.from_config(Config(str(PROJECTS[name])))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def ledger(cluster: PgCluster, dbname: str) -> list[dict[str, Any]]:
    columns = (
        "run_id",
        "action",
        "outcome",
        "host",
        "name",
        "operator",
        "from_revision",
        "to_revision",
        "backup_path",
        "undone_by",
        "entry_id",
        "revisions",
        "message",
    )
    rows = cluster.execute("select %s from %s order by id" % (", ".join(columns), LEDGER), dbname=dbname)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def seed_companies(cluster: PgCluster, *tickers: str) -> None:
    for ticker in tickers:
        cluster.execute("insert into companies (ticker, company_name) values (%s, %s)", (ticker, ticker + " Inc"), dbname="equities")


def tickers(cluster: PgCluster) -> list[str]:
    return [row[0] for row in cluster.execute("select ticker from companies order by ticker", dbname="equities")]


def run(inventory: Path, book: str, clusters: list[PgCluster], *args: str) -> Any:
    result = playbook(REPO / book, inventory, "-l", "prod", *args, env=password_env(clusters))
    assert_no_secret(result.output, clusters)
    return result


def test_rollback_downgrades_the_last_run_then_has_nothing_more_to_undo(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    inventory = make_inventory(tmp_path, fresh_pg)
    eq, alg = history("equities"), history("algorithms")
    assert run(inventory, "migrate.yml", fresh_pg, "-e", "fleet_target=+2").rc == 0
    for cluster in fresh_pg:
        seed_companies(cluster, "AAPL", "MSFT")
    assert run(inventory, "migrate.yml", fresh_pg).rc == 0

    refused = run(inventory, "rollback.yml", fresh_pg)
    assert refused.rc != 0
    assert "lossy" in refused.output and "fleet_rollback_strategy: restore" in refused.output
    assert version_of(fresh_pg[0], "equities") == [eq[-1]], "a refused rollback changes nothing"
    assert version_of(fresh_pg[1], "equities") == [eq[-1]], "prod stops at the first failing host"

    done = run(inventory, "rollback.yml", fresh_pg, "-e", "fleet_rollback_allow_data_loss=true")
    assert done.rc == 0, done.output[-3000:]
    for cluster in fresh_pg:
        assert version_of(cluster, "equities") == [eq[1]]
        assert version_of(cluster, "algorithms") == [alg[1]]
        assert tickers(cluster) == ["AAPL", "MSFT"], "the downgrade keeps the rows of tables it keeps"
        rows = ledger(cluster, "equities")
        assert [r["action"] for r in rows] == ["migrate", "migrate", "rollback"]
        assert [r["outcome"] for r in rows] == ["succeeded", "rolled_back", "succeeded"]
        assert rows[1]["undone_by"] == rows[2]["entry_id"]
        assert rows[2]["from_revision"] == eq[-1] and rows[2]["to_revision"] == eq[1]
        assert all(r["operator"] and "@" in r["operator"] for r in rows)
        applied = json.loads(rows[1]["revisions"])
        assert [r["revision"] for r in applied] == eq[2:] and all(len(r["sha256"]) == 64 for r in applied)
    assert "downgraded %s -> %s" % (eq[-1], eq[1]) in done.output

    again = run(inventory, "rollback.yml", fresh_pg, "-e", "fleet_rollback_allow_data_loss=true")
    assert again.rc == 0, again.output[-3000:]
    assert again.changed_total() == 0
    assert "nothing to undo" in again.output
    assert version_of(fresh_pg[0], "equities") == [eq[1]]


def test_rollback_restores_the_backup_of_the_last_run(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    inventory = make_inventory(tmp_path, fresh_pg)
    eq = history("equities")
    assert run(inventory, "migrate.yml", fresh_pg, "-e", "fleet_target=+2").rc == 0
    for cluster in fresh_pg:
        seed_companies(cluster, "AAPL")
    assert run(inventory, "migrate.yml", fresh_pg).rc == 0
    for cluster in fresh_pg:
        seed_companies(cluster, "ZZZZ")  # written after the backup: a restore loses it

    done = run(inventory, "rollback.yml", fresh_pg, "-e", "fleet_rollback_strategy=restore")
    assert done.rc == 0, done.output[-3000:]
    for cluster in fresh_pg:
        assert version_of(cluster, "equities") == [eq[1]]
        assert tickers(cluster) == ["AAPL"]
        rows = ledger(cluster, "equities")
        assert [(r["action"], r["outcome"]) for r in rows] == [("migrate", "succeeded"), ("migrate", "rolled_back"), ("rollback", "succeeded")]
        assert rows[1]["backup_path"] and rows[1]["backup_path"].endswith("_%s.dump" % eq[1])
        leftovers = cluster.execute("select datname from pg_database where datname like 'equities_%'")
        assert leftovers == []
    assert run(inventory, "rollback.yml", fresh_pg, "-e", "fleet_rollback_strategy=restore").changed_total() == 0


def test_rollback_with_no_recorded_run_changes_nothing(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    inventory = make_inventory(tmp_path, fresh_pg)
    result = run(inventory, "rollback.yml", fresh_pg)
    assert result.rc == 0, result.output[-3000:]
    assert result.changed_total() == 0
    assert "nothing to undo: no run is recorded" in result.output
    assert tables_of(fresh_pg[0], "equities") == set()


def test_explicit_target_below_the_floor_needs_the_override_in_prod(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    inventory = make_inventory(tmp_path, fresh_pg)
    eq = history("equities")
    assert run(inventory, "migrate.yml", fresh_pg, "-e", "fleet_target=+2").rc == 0
    assert run(inventory, "migrate.yml", fresh_pg).rc == 0
    args = ("-e", "fleet_rollback_target=base", "-e", "fleet_rollback_allow_data_loss=true", "-e", "fleet_confirm=equities,algorithms", "-l", "db1")
    refused = run(inventory, "rollback.yml", fresh_pg, *args)
    assert refused.rc != 0 and "below the allowed floor" in refused.output
    assert version_of(fresh_pg[0], "equities") == [eq[-1]]
    allowed = run(inventory, "rollback.yml", fresh_pg, *args, "-e", "fleet_rollback_override=true")
    assert allowed.rc == 0, allowed.output[-3000:]
    assert version_of(fresh_pg[0], "equities") == []
    assert version_of(fresh_pg[1], "equities") == [eq[-1]]


def test_failing_revision_leaves_the_database_where_it_was_and_stops_prod(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    plain = make_inventory(tmp_path / "plain", fresh_pg)
    assert run(plain, "migrate.yml", fresh_pg, "-l", "db1").rc == 0
    seed_companies(fresh_pg[0], "AAPL")
    ini = project_copy(tmp_path, ("0bad0bad0bad", "e5f7293c4a65", "unused"))
    (ini.parent / "versions" / "20260101_0000_0bad0bad0bad_extra_unused.py").write_text(FAILING_REVISION)
    inventory = make_inventory(tmp_path / "failing", fresh_pg, projects={"equities": str(ini)})

    failed = run(inventory, "migrate.yml", fresh_pg)
    assert failed.rc != 0
    assert "division by zero" in failed.output
    assert "nothing to undo: the failed transaction was rolled back" in failed.output
    db1, db2 = fresh_pg
    assert version_of(db1, "equities") == [head_of("equities")]
    assert tickers(db1) == ["AAPL"]
    columns = db1.execute("select column_name from information_schema.columns where table_name = 'companies'", dbname="equities")
    assert "half_done" not in {c[0] for c in columns}
    assert ledger(db1, "equities")[-1]["outcome"] == "failed"
    assert "division by zero" in ledger(db1, "equities")[-1]["message"]
    assert version_of(db2, "equities") == [] and version_of(db2, "algorithms") == [], "prod touches no further host"


def test_verify_failure_is_rolled_back_automatically(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    plain = make_inventory(tmp_path / "plain", fresh_pg)
    assert run(plain, "migrate.yml", fresh_pg, "-l", "db1").rc == 0
    ini = project_copy(tmp_path, ("0dd0dd0dd0dd", "e5f7293c4a65", "unused"))
    (ini.parent / "versions" / "20260101_0000_0dd0dd0dd0dd_extra_unused.py").write_text(UNMODELLED_REVISION)
    # The downgrade drops companies.half_done: prod allows that only with fleet_rollback_allow_data_loss (the next test).
    inventory = make_inventory(tmp_path / "drift", fresh_pg, projects={"equities": str(ini)}, fleet_rollback_allow_data_loss=True)

    failed = run(inventory, "migrate.yml", fresh_pg, "-l", "db1")
    assert failed.rc != 0
    assert "companies.half_done" in failed.output
    assert "downgraded back to %s" % head_of("equities") in failed.output
    db1 = fresh_pg[0]
    assert version_of(db1, "equities") == [head_of("equities")]
    rows = ledger(db1, "equities")
    assert [(r["action"], r["outcome"]) for r in rows[-2:]] == [("migrate", "rolled_back"), ("rollback", "succeeded")]


def test_rollback_to_base_in_prod_needs_the_database_named(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    inventory = make_inventory(tmp_path, fresh_pg)
    assert run(inventory, "migrate.yml", fresh_pg, "-l", "db1").rc == 0
    args = ("-e", "fleet_rollback_target=base", "-e", "fleet_rollback_allow_data_loss=true", "-e", "fleet_rollback_override=true", "-l", "db1")
    refused = run(inventory, "rollback.yml", fresh_pg, *args)
    assert refused.rc != 0 and "-e fleet_confirm=equities" in refused.output
    assert version_of(fresh_pg[0], "equities") == [head_of("equities")]

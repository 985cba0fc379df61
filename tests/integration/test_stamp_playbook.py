"""stamp.yml: safe baselining of databases created outside Alembic."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from support.ansible_run import REPO, module, playbook
from support.pgcluster import PgCluster

from .conftest import make_inventory, password_env
from .test_migrate_postgres import head_of, tables_of

pytestmark = pytest.mark.slow


def local(tmp_path: Path, *args: str):  # type: ignore[no-untyped-def]
    return playbook(
        REPO / "stamp.yml",
        REPO / "inventory" / "hosts.yml",
        "-l",
        "local",
        "-e",
        "fleet_local_db_dir=%s" % (tmp_path / "db"),
        *args,
    )


def make_unversioned(tmp_path: Path, name: str) -> Path:
    """A database whose schema was made by other means: migrated, then its version table dropped."""
    path = tmp_path / "db" / ("%s.db" % name)
    args = {"config": str(REPO / "migrations" / name / "alembic.ini"), "url": "sqlite:///%s" % path, "create_database": True}
    assert module("alembic_upgrade", args)[0].rc == 0
    with sqlite3.connect(path) as conn:
        conn.execute("drop table alembic_version")
        conn.execute("drop table alembic_fleet_ledger")
    return path


def versions(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        if not conn.execute("select 1 from sqlite_master where name = 'alembic_version'").fetchall():
            return []
        return [row[0] for row in conn.execute("select version_num from alembic_version")]


def test_stamp_only_after_the_schema_is_proven_equal(tmp_path: Path) -> None:
    equities = make_unversioned(tmp_path, "equities")
    algorithms = make_unversioned(tmp_path, "algorithms")
    with sqlite3.connect(algorithms) as conn:
        conn.execute("alter table strategies add column hand_made integer")  # changed by hand: must not be stamped

    check = local(tmp_path, "--check")
    assert versions(equities) == [], "--check stamped"
    assert "would stamp" in check.output or check.rc != 0

    run = local(tmp_path)
    assert run.rc != 0, "the hand-changed database must stop the run"
    assert "refusing to stamp" in run.output and "strategies.hand_made" in run.output
    assert versions(equities) == [head_of("equities")]
    assert versions(algorithms) == []

    with sqlite3.connect(algorithms) as conn:
        conn.execute("alter table strategies drop column hand_made")  # repaired: now it may be baselined
    again = local(tmp_path)
    assert again.rc == 0, again.output[-3000:]
    assert versions(algorithms) == [head_of("algorithms")]
    assert "already at %s, nothing to do" % head_of("equities") in again.output


def test_stamp_in_prod_needs_the_database_named(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    inventory = make_inventory(tmp_path, fresh_pg)
    run = playbook(REPO / "stamp.yml", inventory, "-l", "db1", env=password_env(fresh_pg))
    assert run.rc != 0
    assert "-e fleet_confirm=equities" in run.output
    assert tables_of(fresh_pg[0], "equities") == set()

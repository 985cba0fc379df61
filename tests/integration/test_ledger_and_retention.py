"""Ledger-backed checks, retention through db_backup, and the part-way failure that needs a restore."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support.ansible_run import REPO, module
from support.pgcluster import PgCluster

from .conftest import make_inventory
from .test_bad_input import conn_args
from .test_foreign_projects import STOCK_ENV, flat_project
from .test_migrate_postgres import head_of, version_of
from .test_rollback import (
    FAILING_REVISION,
    UNMODELLED_REVISION,
    ledger,
    run,
    seed_companies,
    tickers,
)

pytestmark = pytest.mark.slow


def test_verify_flags_a_revision_file_edited_after_it_was_applied(tmp_path: Path) -> None:
    project = tmp_path / "equities"
    shutil.copytree(REPO / "migrations" / "equities", project, ignore=shutil.ignore_patterns("__pycache__"))
    args = {"config": str(project / "alembic.ini"), "url": "sqlite:///%s" % (tmp_path / "eq.db"), "create_database": True}
    run_, result = module("alembic_upgrade", args)
    assert run_.rc == 0, run_.output[-2000:]
    verify_args = {k: v for k, v in args.items() if k != "create_database"}
    run_, result = module("alembic_verify", verify_args)
    assert run_.rc == 0, result
    edited = next((project / "versions").glob("*_c3e5071a2d43_*.py"))
    edited.write_text(edited.read_text() + "\n# a later edit\n")
    run_, result = module("alembic_verify", verify_args)
    assert run_.rc != 0
    assert "revision c3e5071a2d43 (%s) was changed after it was applied" % edited.name in result["msg"]
    run_, result = module("alembic_verify", {**verify_args, "check_files": False})
    assert run_.rc == 0, result


def test_backup_retention_keeps_exactly_the_policy(tmp_path: Path) -> None:
    args = {"config": str(REPO / "migrations" / "equities" / "alembic.ini"), "url": "sqlite:///%s" % (tmp_path / "eq.db"), "create_database": True}
    assert module("alembic_upgrade", args)[0].rc == 0
    backup = {
        "url": args["url"],
        "backup_root": str(tmp_path / "backups"),
        "environment": "local",
        "host": "localhost",
        "name": "equities",
        "revision": head_of("equities"),
    }
    paths = []
    for _ in range(3):
        run_, result = module("db_backup", backup)
        assert run_.rc == 0, result
        paths.append(result["path"])
    directory = Path(paths[0]).parent
    run_, result = module("db_backup", {**backup, "keep_last": 2}, "--check")
    assert run_.rc == 0 and sorted(result["retention"]["would_delete"]) == sorted(paths[:2]), result
    assert sorted(p.name for p in directory.glob("*.sqlite3")) == sorted(Path(p).name for p in paths), "check mode deleted"
    run_, result = module("db_backup", {**backup, "keep_last": 2, "protect": [paths[0]]})
    assert run_.rc == 0, result
    kept = sorted(str(p) for p in directory.glob("*.sqlite3"))
    assert kept == sorted([paths[0], paths[2], result["path"]]), "newest two plus the protected one"
    assert not Path(paths[1] + ".manifest.json").exists()
    assert sorted(result["retention"]["deleted"]) == [paths[1]]


def test_a_migration_left_part_way_is_restored_from_its_backup(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    # A team's env.py that commits each revision on its own: a failure leaves the earlier ones applied.
    ini = flat_project(
        tmp_path / "proj",
        STOCK_ENV.replace("target_metadata=target_metadata)\n        with", "target_metadata=target_metadata, transaction_per_migration=True)\n        with"),
    )
    versions = ini.parent / "versions"
    (versions / "20260101_0000_0dd0dd0dd0dd_extra.py").write_text(UNMODELLED_REVISION.replace('"half_done"', '"first_extra"'))
    (versions / "20260101_0001_0bad0bad0bad_fails.py").write_text(FAILING_REVISION.replace('down_revision = "e5f7293c4a65"', 'down_revision = "0dd0dd0dd0dd"'))
    args = {"config": str(ini), **conn_args(db1)}
    assert module("alembic_upgrade", {**args, "target": "e5f7293c4a65"})[0].rc == 0
    seed_companies(db1, "AAPL")
    inventory = make_inventory(tmp_path, fresh_pg, projects={"equities": str(ini)})
    failed = run(inventory, "migrate.yml", fresh_pg, "-l", "db1")
    assert failed.rc != 0
    assert "division by zero" in failed.output
    assert "restored " in failed.output, failed.output[-3000:]
    assert version_of(db1, "equities") == ["e5f7293c4a65"]
    assert tickers(db1) == ["AAPL"]
    columns = {c[0] for c in db1.execute("select column_name from information_schema.columns where table_name = 'companies'", dbname="equities")}
    assert "first_extra" not in columns
    rows = ledger(db1, "equities")
    assert [(r["action"], r["outcome"]) for r in rows[-2:]] == [("migrate", "rolled_back"), ("rollback", "succeeded")]
    assert "division by zero" in rows[-2]["message"]

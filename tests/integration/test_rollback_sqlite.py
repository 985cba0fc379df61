"""The rollback flows on the embedded default: the repo's inventory, `-l local`, SQLite."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from support.ansible_run import REPO, playbook

from .test_bad_input import project_copy
from .test_rollback import FAILING_REVISION, history

pytestmark = pytest.mark.slow


def local(tmp_path: Path, book: str, *args: str, databases: list[dict[str, Any]] | None = None) -> Any:
    extra = [
        "-e",
        "fleet_local_db_dir=%s" % (tmp_path / "db"),
        "-e",
        "fleet_backup_root=%s" % (tmp_path / "backups"),
        "-e",
        "fleet_backup_required=true",
    ]
    if databases is not None:
        extra += ["-e", json.dumps({"fleet_databases": databases})]
    return playbook(REPO / book, REPO / "inventory" / "hosts.yml", "-l", "local", *extra, *args)


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute(sql))


def version(path: Path) -> list[str]:
    return [row[0] for row in query(path, "select version_num from alembic_version")]


def test_sqlite_migrate_rollback_by_downgrade_and_by_restore(tmp_path: Path) -> None:
    eq = history("equities")
    equities = tmp_path / "db" / "equities.db"
    assert local(tmp_path, "migrate.yml", "-e", "fleet_target=+2").rc == 0
    query(equities, "insert into companies (ticker, company_name) values ('AAPL', 'Apple')")
    assert local(tmp_path, "migrate.yml").rc == 0
    assert version(equities) == [eq[-1]]

    down = local(tmp_path, "rollback.yml")
    assert down.rc == 0, down.output[-3000:]
    assert version(equities) == [eq[1]]
    assert query(equities, "select ticker from companies") == [("AAPL",)]
    outcomes = query(equities, "select action, outcome from alembic_fleet_ledger order by id")
    assert outcomes == [("migrate", "succeeded"), ("migrate", "rolled_back"), ("rollback", "succeeded")]

    assert local(tmp_path, "migrate.yml").rc == 0
    query(equities, "insert into companies (ticker, company_name) values ('ZZZZ', 'Late')")
    restored = local(tmp_path, "rollback.yml", "-e", "fleet_rollback_strategy=restore")
    assert restored.rc == 0, restored.output[-3000:]
    assert version(equities) == [eq[1]]
    assert query(equities, "select ticker from companies") == [("AAPL",)]
    actions = query(equities, "select action, outcome from alembic_fleet_ledger order by id")
    assert actions[-2:] == [("migrate", "rolled_back"), ("rollback", "succeeded")]
    assert len(actions) == 5, "the restore kept the ledger rows written after its backup"
    assert local(tmp_path, "rollback.yml", "-e", "fleet_rollback_strategy=restore").changed_total() == 0


def test_sqlite_failing_revision_leaves_nothing_half_applied(tmp_path: Path) -> None:
    ini = project_copy(tmp_path, ("0bad0bad0bad", "e5f7293c4a65", "unused"))
    (ini.parent / "versions" / "20260101_0000_0bad0bad0bad_extra_unused.py").write_text(
        FAILING_REVISION.replace('op.execute("SELECT 1 / 0")', 'raise RuntimeError("boom halfway")')
    )
    databases = [{"name": "equities", "alembic_ini": str(ini), "url": "sqlite:///%s" % (tmp_path / "db" / "equities.db")}]
    assert local(tmp_path, "migrate.yml", "-e", "fleet_target=e5f7293c4a65", databases=databases).rc == 0
    failed = local(tmp_path, "migrate.yml", databases=databases)
    assert failed.rc != 0
    assert "boom halfway" in failed.output
    equities = tmp_path / "db" / "equities.db"
    assert version(equities) == ["e5f7293c4a65"]
    assert "half_done" not in {row[1] for row in query(equities, "pragma table_info(companies)")}
    assert query(equities, "select outcome from alembic_fleet_ledger order by id desc limit 1") == [("failed",)]

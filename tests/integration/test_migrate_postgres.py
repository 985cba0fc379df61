"""migrate.yml against two real PostgreSQL 15 clusters standing for two prod hosts."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from support.ansible_run import REPO, playbook
from support.pgcluster import PgCluster, pg_bin_dir

from .conftest import HOSTS, PROJECTS, password_env

pytestmark = pytest.mark.slow


def head_of(name: str) -> str:
    return ScriptDirectory.from_config(Config(str(PROJECTS[name]))).get_current_head() or ""


def version_of(cluster: PgCluster, dbname: str) -> list[str]:
    exists = cluster.execute("select to_regclass('public.alembic_version') is not null", dbname=dbname)[0][0]
    if not exists:
        return []
    return [row[0] for row in cluster.execute("select version_num from alembic_version", dbname=dbname)]


def tables_of(cluster: PgCluster, dbname: str) -> set[str]:
    rows = cluster.execute("select tablename from pg_tables where schemaname = 'public'", dbname=dbname)
    return {row[0] for row in rows}


def backups_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.dump")) if root.exists() else []


def assert_no_secret(text: str, clusters: list[PgCluster]) -> None:
    for cluster in clusters:
        for label, secret in (("app_password", cluster.app_password), ("superuser_password", cluster.superuser_password)):
            assert secret not in text, "%s:%s leaked into the output" % (cluster.name, label)


def test_prod_fleet_goes_from_empty_to_head_with_verified_backups(prod_inventory: Path, fresh_pg: list[PgCluster]) -> None:
    root = prod_inventory.parent
    first = playbook(REPO / "migrate.yml", prod_inventory, "-l", "prod", env=password_env(fresh_pg))
    assert first.rc == 0, first.output[-3000:]
    assert_no_secret(first.output, fresh_pg)
    for cluster in fresh_pg:
        assert version_of(cluster, "equities") == [head_of("equities")]
        assert version_of(cluster, "algorithms") == [head_of("algorithms")]
        assert {"companies", "daily_ohlcv"} <= tables_of(cluster, "equities")
        assert {"strategies", "signals", "backtest_runs"} <= tables_of(cluster, "algorithms")

    # prod policy: a backup before (empty database, revision base) and after the verified upgrade.
    dumps = backups_under(root / "backups")
    assert len(dumps) == 2 * len(HOSTS) * len(PROJECTS), [str(d) for d in dumps]
    pg_restore = pg_bin_dir() / "pg_restore"
    for dump in dumps:
        relative = dump.relative_to(root / "backups").parts
        assert relative[0] == "prod" and relative[1] in HOSTS and relative[2] in PROJECTS
        assert stat.S_IMODE(dump.stat().st_mode) == 0o600
        for directory in (dump.parent, dump.parent.parent, dump.parent.parent.parent):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        manifest_path = Path(str(dump) + ".manifest.json")
        assert stat.S_IMODE(manifest_path.stat().st_mode) == 0o600
        manifest = json.loads(manifest_path.read_text())
        assert manifest["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()
        assert manifest["size"] == dump.stat().st_size
        assert manifest["database"] == relative[2] and manifest["environment"] == "prod"
        assert manifest["server_version"].startswith("15")
        assert_no_secret(manifest_path.read_text(), fresh_pg)
        listing = subprocess.run([str(pg_restore), "--list", str(dump)], capture_output=True, text=True, check=True)
        assert "Format: CUSTOM" in listing.stdout
        if manifest["revision"] == head_of(relative[2]):
            assert "TABLE public alembic_version" in listing.stdout
    revisions = sorted(json.loads(Path(str(d) + ".manifest.json").read_text())["revision"] or "base" for d in dumps)
    assert revisions.count("base") == len(HOSTS) * len(PROJECTS)

    second = playbook(REPO / "migrate.yml", prod_inventory, "-l", "prod", env=password_env(fresh_pg))
    assert second.rc == 0, second.output[-3000:]
    assert second.changed_total() == 0, second.output[-3000:]
    assert len(backups_under(root / "backups")) == len(dumps), "nothing pending must take no backup"
    assert "nothing to do" in second.output


def test_check_diff_shows_sql_and_changes_nothing(prod_inventory: Path, fresh_pg: list[PgCluster]) -> None:
    root = prod_inventory.parent
    run = playbook(REPO / "migrate.yml", prod_inventory, "-l", "prod", "--check", "--diff", env=password_env(fresh_pg))
    assert run.rc == 0, run.output[-3000:]
    assert "CREATE TABLE companies" in run.output
    assert "CREATE TABLE strategies" in run.output
    assert "would upgrade" in run.output
    assert run.changed_total() > 0  # honest: something is pending
    for cluster in fresh_pg:
        for name in PROJECTS:
            assert tables_of(cluster, name) == set()
    assert not (root / "backups").exists()


def test_partial_upgrade_then_head_backs_up_the_current_revision(prod_inventory: Path, fresh_pg: list[PgCluster]) -> None:
    root = prod_inventory.parent
    env = password_env(fresh_pg)
    first = playbook(REPO / "migrate.yml", prod_inventory, "-l", "db1", "-e", "fleet_target=+2", "-e", "fleet_post_upgrade_backup=false", env=env)
    assert first.rc == 0, first.output[-3000:]
    db1 = fresh_pg[0]
    middle = version_of(db1, "equities")
    assert len(middle) == 1 and middle != [head_of("equities")]
    assert version_of(fresh_pg[1], "equities") == []  # -l db1 left db2 alone
    second = playbook(REPO / "migrate.yml", prod_inventory, "-l", "db1", "-e", "fleet_post_upgrade_backup=false", env=env)
    assert second.rc == 0, second.output[-3000:]
    assert version_of(db1, "equities") == [head_of("equities")]
    names = [d.name for d in backups_under(root / "backups" / "prod" / "db1" / "equities")]
    assert any(name.endswith("_%s.dump" % middle[0]) for name in names), names

"""backup.yml (the scheduled "DB backup process") against two real PostgreSQL 15 clusters standing for two hosts."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from support.ansible_run import REPO, playbook
from support.pgcluster import PgCluster, pg_bin_dir

from .conftest import HOSTS, PROJECTS, make_inventory, password_env
from .test_migrate_postgres import backups_under, head_of, version_of

pytestmark = pytest.mark.slow


def flat(text: str) -> str:
    """The output with the callback's line wrapping undone."""
    return " ".join(text.split())


def manifest_of(dump: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(Path(str(dump) + ".manifest.json").read_text())


def migrated(tmp_path: Path, clusters: list[PgCluster], *args: str) -> Path:
    """A prod inventory whose databases have been brought to head by migrate.yml."""
    inventory = make_inventory(tmp_path, clusters)
    run = playbook(REPO / "migrate.yml", inventory, "-l", "prod", *args, env=password_env(clusters))
    assert run.rc == 0, run.output[-3000:]
    return inventory


def test_one_verified_backup_per_database_per_host(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    inventory = migrated(tmp_path, fresh_pg)
    root = tmp_path / "backups"
    before = set(backups_under(root))

    run = playbook(REPO / "backup.yml", inventory, "-l", "prod", env=password_env(fresh_pg))
    assert run.rc == 0, run.output[-3000:]
    for cluster in fresh_pg:
        for name in PROJECTS:
            assert version_of(cluster, name) == [head_of(name)], "a plain backup run must not migrate"
    new = sorted(set(backups_under(root)) - before)
    assert len(new) == len(HOSTS) * len(PROJECTS), [str(d) for d in new]
    assert sorted((d.parts[-3], d.parts[-2]) for d in new) == sorted((h, n) for h in HOSTS for n in PROJECTS)
    pg_restore = pg_bin_dir() / "pg_restore"
    for dump in new:
        host, name = dump.parts[-3], dump.parts[-2]
        assert stat.S_IMODE(dump.stat().st_mode) == 0o600
        assert stat.S_IMODE(Path(str(dump) + ".manifest.json").stat().st_mode) == 0o600
        assert stat.S_IMODE(dump.parent.stat().st_mode) == 0o700
        manifest = manifest_of(dump)
        assert manifest["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()
        assert manifest["size"] == dump.stat().st_size
        assert (manifest["environment"], manifest["host"], manifest["name"]) == ("prod", host, name)
        assert manifest["revision"] == head_of(name)
        assert dump.name.endswith("_%s.dump" % head_of(name))
        listing = subprocess.run([str(pg_restore), "--list", str(dump)], capture_output=True, text=True, check=True)
        assert "TABLE public alembic_version" in listing.stdout
        assert "%s/%s: backed up %s to %s" % (host, name, head_of(name), dump) in flat(run.output)
    for cluster in fresh_pg:
        assert cluster.app_password not in run.output


def test_retention_keeps_the_newest_and_the_last_runs_backup(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    inventory = migrated(tmp_path, fresh_pg)
    directory = tmp_path / "backups" / "prod" / "db1" / "equities"
    after_migrate = backups_under(directory)
    assert len(after_migrate) == 2  # prod: before (empty database) and after the verified upgrade
    pre_upgrade = next(d for d in after_migrate if not manifest_of(d)["revision"])  # what the ledger row refers to

    args = ("-l", "db1", "-e", "fleet_backup_keep_last=1", "-e", "fleet_backup_keep_days=0")
    first = playbook(REPO / "backup.yml", inventory, *args, env=password_env(fresh_pg))
    assert first.rc == 0, first.output[-3000:]
    newest = sorted(set(backups_under(directory)) - set(after_migrate))
    assert len(newest) == 1
    # keep_last=1 keeps the new backup; the migrate run's pre-upgrade backup is protected; the post-upgrade one goes.
    assert backups_under(directory) == sorted([pre_upgrade, newest[0]])
    assert not Path(str(max(after_migrate, key=lambda d: d.name)) + ".manifest.json").exists()
    assert "retention deleted 1 old backup" in flat(first.output)

    second = playbook(REPO / "backup.yml", inventory, *args, env=password_env(fresh_pg))
    assert second.rc == 0, second.output[-3000:]
    remaining = backups_under(directory)
    assert len(remaining) == 2 and pre_upgrade in remaining and newest[0] not in remaining


def test_check_writes_nothing(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    inventory = migrated(tmp_path, fresh_pg)
    root = tmp_path / "backups"
    before = {d: d.stat().st_mtime_ns for d in backups_under(root)}
    run = playbook(REPO / "backup.yml", inventory, "-l", "prod", "--check", "-e", "fleet_backup_keep_last=1", env=password_env(fresh_pg))
    assert run.rc == 0, run.output[-3000:]
    assert flat(run.output).count("would back up %s" % head_of("equities")) == len(HOSTS)
    assert "retention would delete 1 old backup" in flat(run.output)
    assert {d: d.stat().st_mtime_ns for d in backups_under(root)} == before
    assert sorted(p for p in root.rglob("*") if p.is_file()) == sorted([*before, *(Path(str(d) + ".manifest.json") for d in before)])


def test_a_missing_database_is_skipped_never_created(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    inventory = migrated(tmp_path, fresh_pg, "-l", "db1")
    fresh_pg[0].drop_database("algorithms")
    run = playbook(REPO / "backup.yml", inventory, "-l", "db1", env=password_env(fresh_pg))
    assert run.rc == 0, run.output[-3000:]
    assert "db1/algorithms: the database does not exist, skipped (backup.yml never creates databases)" in flat(run.output)
    exists = fresh_pg[0].execute("select count(*) from pg_database where datname = 'algorithms'")[0][0]
    assert exists == 0
    assert "db1/equities: backed up" in flat(run.output)
    fresh_pg[0].create_database("algorithms")  # leave the cluster as the other tests expect it


def test_upgrade_first_brings_the_database_to_head_then_backs_it_up(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    env = password_env(fresh_pg)
    inventory = migrated(tmp_path, fresh_pg, "-l", "db1", "-e", "fleet_target=+1")
    db1 = fresh_pg[0]
    behind = version_of(db1, "equities")
    assert len(behind) == 1 and behind != [head_of("equities")]
    directory = tmp_path / "backups" / "prod" / "db1" / "equities"
    before = set(backups_under(directory))

    check = playbook(REPO / "backup.yml", inventory, "-l", "db1", "--check", "-e", "fleet_backup_upgrade_first=true", env=env)
    assert check.rc == 0, check.output[-3000:]
    assert "would back up %s after upgrading from %s" % (head_of("equities"), behind[0]) in flat(check.output)
    assert version_of(db1, "equities") == behind and set(backups_under(directory)) == before

    run = playbook(REPO / "backup.yml", inventory, "-l", "db1", "-e", "fleet_backup_upgrade_first=true", env=env)
    assert run.rc == 0, run.output[-3000:]
    assert version_of(db1, "equities") == [head_of("equities")]
    assert version_of(db1, "algorithms") == [head_of("algorithms")]
    assert version_of(fresh_pg[1], "equities") == []  # -l db1

    new = sorted(set(backups_under(directory)) - before, key=lambda d: d.name)
    # prod: the migrate procedure's verified backup before the upgrade, then the scheduled one after it (only one:
    # the migrate procedure's own post-upgrade backup is the one backup.yml takes).
    assert [manifest_of(d)["revision"] for d in new] == [behind[0], head_of("equities")], [d.name for d in new]
    after = new[-1]
    manifest = manifest_of(after)
    assert manifest["sha256"] == hashlib.sha256(after.read_bytes()).hexdigest()
    finished = db1.execute(
        "select finished_at from alembic_fleet_ledger where action = 'migrate' and outcome = 'succeeded' order by id desc limit 1",
        dbname="equities",
    )[0][0]
    created = datetime.strptime(manifest["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert created >= finished.replace(microsecond=0), (created, finished)
    assert "backed up %s after the verified upgrade from %s" % (head_of("equities"), behind[0]) in flat(run.output)

"""alembic_upgrade over a host's databases in one call (issue 18: one module start per host): each database has its
own backup, transaction, verification and ledger row, up to `parallel` at a time in processes of their own; a
failing database is reported in its entry and does not stop the others; a bad entry is refused before any database
is reached. Real PostgreSQL, the bundled projects."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from support.ansible_run import REPO, module
from support.faults import (
    db_args,
    descendants,
    fleet_sessions,
    module_process,
    run_env,
    run_module,
    sleeping,
    slow_project,
    start_module,
    wait_for,
    wipe,
)
from support.pgcluster import PgCluster

from .test_bad_input import conn_args
from .test_migrate_postgres import assert_no_secret, backups_under, tables_of, version_of
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


def test_a_killed_call_takes_its_workers_with_it_and_commits_nothing_after(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    """kill -9 of the module alone (not its process tree): its forked workers die with it, so no database goes on
    migrating behind the caller's back (a recovery, the next run) and commits after the caller was told it failed."""
    db1, scratch = fresh_pg[0], tmp_path / "scratch"
    env = run_env(db1, scratch)
    try:
        first, _ = run_module("alembic_upgrade", {"config": str(PROJECTS["equities"]), **db_args(db1)}, env=env)
        assert first.rc == 0, first.output[-2000:]
        project = slow_project(
            tmp_path, "fa11ed000002", HEADS["equities"], 8, upgrade='    op.create_table("killed_worker", sa.Column("id", sa.Integer(), primary_key=True))'
        )
        entries = [
            {"name": "equities", "config": str(project.ini), **db_args(db1)},
            {"name": "algorithms", "config": str(PROJECTS["algorithms"]), **db_args(db1, "algorithms")},
        ]
        job = start_module("alembic_upgrade", {"databases": entries, "parallel": 2}, env=env)
        wait_for("the slow revision's pg_sleep", lambda: sleeping(db1, "equities") or not job.running(), timeout=60)
        assert job.running(), job.wait().output[-3000:]
        module_pid = module_process(job)
        workers = descendants(module_pid)
        assert workers, "parallel 2 works the databases in forked processes"

        os.kill(module_pid, signal.SIGKILL)

        wait_for("the workers to die with the module", lambda: not [pid for pid in workers if _alive(pid)], timeout=5)
        wait_for("the killed worker's sessions to end", lambda: not fleet_sessions(db1, "equities"), timeout=5)
        time.sleep(9)  # longer than the revision's sleep: a worker that lived on would have committed by now
        assert version_of(db1, "equities") == [HEADS["equities"]]
        assert "killed_worker" not in tables_of(db1, "equities")
        job.kill()
    finally:
        wipe(scratch)


def _alive(pid: int) -> bool:
    """Not a zombie: a dead worker whose parent is gone is reaped by init, one whose parent lingers is state Z."""
    try:
        return Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

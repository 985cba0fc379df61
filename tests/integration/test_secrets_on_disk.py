"""No password left on disk, none echoed (issue 15, points 9 and 12).

A SIGKILL of each module that handles a password, in the middle of its work, with its control node
(the whole process tree, as a dying control node) and without it (the module's process alone): then
every place a run writes to (its TMPDIR, Ansible's remote and local temp directories, ~/.ansible/tmp,
the backup directory) is searched for the password. A password written into a refused URL is not
echoed at -vvv either.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.ansible_run import REPO
from support.faults import (
    Background,
    db_args,
    files_holding,
    module_process,
    run_env,
    run_module,
    sessions,
    sleeping,
    slow_project,
    start_module,
    wait_for,
    wipe,
)
from support.pgcluster import PgCluster

from .test_migrate_postgres import assert_no_secret, head_of

pytestmark = pytest.mark.slow

EQUITIES_INI = REPO / "migrations" / "equities" / "alembic.ini"
HEAD = head_of("equities")


# -- helpers ----------------------------------------------------------------------
def kill_env(cluster: PgCluster, scratch: Path) -> dict[str, str]:
    """run_env, with Ansible's controller-side temp directory private to the test as well."""
    local = scratch / "ansible-local"
    local.mkdir(parents=True, exist_ok=True, mode=0o700)
    return {**run_env(cluster, scratch), "ANSIBLE_LOCAL_TEMP": str(local)}


def disk_places(scratch: Path, *more: Path) -> list[Path]:
    return [scratch, Path.home() / ".ansible" / "tmp", *more]


def kill(job: Background, with_controller: bool) -> None:
    if with_controller:
        job.kill()  # every process of the run: the control node dies with its module
        return
    os.kill(module_process(job), signal.SIGKILL)
    job.wait(timeout=60)  # the controller reports the dead module and cleans up after it


@contextlib.contextmanager
def table_locked(cluster: PgCluster, table: str) -> Iterator[None]:
    """Another session holds ACCESS EXCLUSIVE on table until the block ends."""
    conn = cluster.connect("equities")
    try:
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE" % table)
        yield
    finally:
        conn.rollback()
        conn.close()


def waiting_dump(cluster: PgCluster) -> list[tuple[Any, ...]]:
    return sessions(cluster, "equities", "application_name = 'alembic-fleet-backup' and wait_event_type = 'Lock'")


# -- 9. SIGKILL with and without the controller -------------------------------------------
@pytest.mark.parametrize("with_controller", [True, False], ids=["whole-run", "module-only"])
def test_a_killed_upgrade_leaves_no_password_on_disk(fresh_pg: list[PgCluster], tmp_path: Path, with_controller: bool) -> None:
    db1 = fresh_pg[0]
    scratch = tmp_path / "scratch"
    env = kill_env(db1, scratch)
    try:
        run, _ = run_module("alembic_upgrade", {"config": str(EQUITIES_INI), **db_args(db1)}, env=env)
        assert run.rc == 0, run.output[-3000:]
        project = slow_project(tmp_path, "5ec0de000001", HEAD, 30)
        job = start_module("alembic_upgrade", {"config": str(project.ini), **db_args(db1)}, env=env)
        wait_for("the migration's pg_sleep", lambda: sleeping(db1, "equities") or not job.running(), timeout=90)
        assert job.running(), job.wait().output[-3000:]
        kill(job, with_controller)
        assert_no_secret(job.wait().output, fresh_pg)
        assert files_holding(db1.app_password, *disk_places(scratch)) == [], "the killed upgrade left its password on disk"

        project.fast()
        run, result = run_module("alembic_upgrade", {"config": str(project.ini), **db_args(db1)}, env=env)
        assert run.rc == 0, run.output[-3000:]
        assert result["after"] == [project.revision]
        assert files_holding(db1.app_password, *disk_places(scratch)) == []
    finally:
        wipe(scratch)


@pytest.mark.parametrize("with_controller", [True, False], ids=["whole-run", "module-only"])
def test_a_killed_backup_leaves_no_password_on_disk(fresh_pg: list[PgCluster], tmp_path: Path, with_controller: bool) -> None:
    db1 = fresh_pg[0]
    scratch = tmp_path / "scratch"
    backups = tmp_path / "backups"
    env = kill_env(db1, scratch)
    try:
        run, _ = run_module("alembic_upgrade", {"config": str(EQUITIES_INI), **db_args(db1)}, env=env)
        assert run.rc == 0, run.output[-3000:]
        args = {**db_args(db1), "backup_root": str(backups), "environment": "prod", "host": "db1", "name": "equities", "revision": HEAD}
        with table_locked(db1, "companies"):
            job = start_module("db_backup", args, env=env)
            # pg_dump waits for its lock on companies: the module is in the middle of the dump.
            wait_for("pg_dump to wait for its lock", lambda: waiting_dump(db1) or not job.running(), timeout=90, interval=0.05)
            assert job.running(), job.wait().output[-3000:]
            kill(job, with_controller)
        # an orphaned pg_dump (its module killed alone) goes on, then ends
        wait_for("the dump's sessions to end", lambda: not sessions(db1, "equities", "application_name like 'alembic-fleet-backup%%'"), timeout=60)
        assert_no_secret(job.wait().output, fresh_pg)
        assert files_holding(db1.app_password, *disk_places(scratch, backups)) == [], "the killed backup left its password on disk"

        left = sorted(str(p) for p in backups.rglob("*.partial"))
        assert len(left) == 1, "the killed dump's partial file (issue 15, point 10): %s" % left

        run, result = run_module("db_backup", args, env=env)
        assert run.rc == 0, run.output[-3000:]
        assert Path(result["path"]).is_file()
        assert result.get("removed_partials") == left, "the next backup removes what the killed one left"
        assert list(backups.rglob("*.partial")) == []
        assert files_holding(db1.app_password, *disk_places(scratch, backups)) == []
    finally:
        wipe(scratch)


def test_password_files_of_dead_runs_are_swept_by_the_next_run(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    """What an older version (or a system without memfd) left in TMPDIR goes at the start of any module run."""
    db1 = fresh_pg[0]
    scratch = tmp_path / "scratch"
    env = kill_env(db1, scratch)
    try:
        tmp = scratch / "tmp"
        leftover = tmp / "fleet-pgpass-2147480000-x1y2z3"  # a pid beyond pid_max: no such process
        leftover.mkdir(mode=0o700)
        (leftover / "pgpass").write_text("*:*:*:*:%s\n" % db1.app_password)
        run, _ = run_module("alembic_status", {"config": str(EQUITIES_INI), **db_args(db1)}, env=env)
        assert run.rc == 0, run.output[-3000:]
        assert not leftover.exists()
        assert files_holding(db1.app_password, *disk_places(scratch)) == []
    finally:
        wipe(scratch)


# -- 12. a password inside the URL is never echoed -------------------------------------------
def _refusing_modules(cluster: PgCluster, tmp_path: Path, url: str) -> dict[str, dict[str, Any]]:
    """Each module that takes a url, with its required options, given url."""
    common = {"url": url}
    project = {"config": str(EQUITIES_INI), **common}
    backup = {"backup_root": str(tmp_path / "backups"), "environment": "prod", "host": "db1", "name": "equities"}
    return {
        "alembic_upgrade": project,
        "alembic_status": project,
        "alembic_verify": project,
        "alembic_downgrade": {**project, "target": "-1"},
        "alembic_stamp": {**project, "target": "head"},
        "db_backup": {**common, **backup},
        "db_unlock": common,
        "db_restore": {**common, "path": str(tmp_path / "backups" / "x.dump"), "name": "equities"},
    }


@pytest.mark.parametrize(
    "module_name", ["alembic_upgrade", "alembic_status", "alembic_verify", "alembic_downgrade", "alembic_stamp", "db_backup", "db_unlock", "db_restore"]
)
def test_a_password_in_the_url_is_refused_and_never_echoed(fresh_pg: list[PgCluster], tmp_path: Path, module_name: str) -> None:
    db1 = fresh_pg[0]
    secret = db1.app_password
    url = "postgresql://%s:%s@127.0.0.1:%d/equities" % (db1.app_user, secret, db1.port)
    # The URL reaches the module through a lookup, as an inventory would give it: not on the test's own command line.
    args = _refusing_modules(db1, tmp_path, "{{ lookup('ansible.builtin.env', 'FLEET_TEST_BAD_URL') }}")[module_name]
    run, result = run_module(module_name, args, "-vvv", env={"TMPDIR": str(tmp_path), "FLEET_TEST_BAD_URL": url})
    assert run.rc != 0, run.output[-3000:]
    assert "url contains a password" in str(result.get("msg")), run.output[-3000:]
    assert secret not in run.output, "-vvv echoed the URL's password"
    assert "invocation" in result, "the run did not show its module_args: nothing was checked"
    assert secret not in str(result["invocation"]["module_args"])

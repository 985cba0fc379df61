"""Faults on real PostgreSQL: a killed run, a server that goes away, a backup that cannot be
written, two runs at once, a long transaction in the way, secrets while it all runs.

Each test ends with nothing lost and the next normal run succeeding.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.ansible_run import REPO, playbook
from support.faults import (
    Background,
    db_args,
    fleet_sessions,
    pgpass_dirs,
    run_env,
    run_module,
    sleeping,
    slow_project,
    start_module,
    start_playbook,
    wait_for,
    wipe,
)
from support.pgcluster import PgCluster

from .conftest import make_inventory, password_env
from .test_migrate_postgres import assert_no_secret, head_of, tables_of, version_of
from .test_rollback import LEDGER, ledger, seed_companies

pytestmark = pytest.mark.slow

EQUITIES_INI = REPO / "migrations" / "equities" / "alembic.ini"
HEAD = head_of("equities")
ALGORITHMS_HEAD = head_of("algorithms")


# -- helpers --------------------------------------------------------------------
def to_head(cluster: PgCluster, scratch: Path, dbname: str = "equities") -> None:
    ini = EQUITIES_INI if dbname == "equities" else REPO / "migrations" / "algorithms" / "alembic.ini"
    run, result = run_module("alembic_upgrade", {"config": str(ini), **db_args(cluster, dbname)}, env=run_env(cluster, scratch))
    assert run.rc == 0, run.output[-3000:]


def one_line_failure(run: Any, result: dict[str, Any], clusters: list[PgCluster]) -> str:
    assert run.rc != 0, run.output[-3000:]
    assert_no_secret(run.output, clusters)
    message = str(result.get("msg", ""))
    assert message, run.output[-3000:]
    assert "\n" not in message and "Traceback" not in message, message
    assert not message.startswith("unexpected "), "an expected fault reported as a bug: %s" % message
    assert "exception" not in result, "a traceback came with the failure: %s" % message
    return message


def columns_of(cluster: PgCluster, table: str, dbname: str = "equities") -> set[str]:
    rows = cluster.execute("select column_name from information_schema.columns where table_name = %s", (table,), dbname=dbname)
    return {row[0] for row in rows}


def ledger_exists(cluster: PgCluster, dbname: str) -> bool:
    return bool(cluster.execute("select to_regclass(%s) is not null", ("public.%s" % LEDGER,), dbname=dbname)[0][0])


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# -- 1. SIGKILL in the middle of an upgrade --------------------------------------------
def test_sigkill_mid_upgrade_frees_the_lock_and_changes_nothing(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    scratch = tmp_path / "scratch"
    env = run_env(db1, scratch)
    try:
        to_head(db1, scratch)
        project = slow_project(
            tmp_path, "fa11ed000001", HEAD, 6,
            upgrade='    op.create_table("fault_partial", sa.Column("id", sa.Integer(), primary_key=True))',
            downgrade='    op.drop_table("fault_partial")',
        )
        args = {"config": str(project.ini), **db_args(db1)}

        job = start_module("alembic_upgrade", args, env=env)
        wait_for("the migration's pg_sleep", lambda: sleeping(db1, "equities") or not job.running(), timeout=60)
        assert job.running(), job.wait().output[-3000:]
        assert fleet_sessions(db1, "equities", "alembic-fleet:%"), "the run holds its lock in a session of its own"
        leftover_before = pgpass_dirs(scratch)
        assert leftover_before, "the run's private PGPASSFILE exists while it runs"

        job.kill()
        killed_at = time.monotonic()

        # The lock session and the migration's session both end with the process.
        wait_for("the run lock to be released", lambda: not fleet_sessions(db1, "equities", "alembic-fleet:%"), timeout=5)
        lock_free_after = time.monotonic() - killed_at
        wait_for("the killed migration's session to end", lambda: not fleet_sessions(db1, "equities"), timeout=3)
        assert not sleeping(db1, "equities")
        print("lock free %.2f s after SIGKILL" % lock_free_after)

        # Transactional DDL: nothing of the killed revision is left.
        assert version_of(db1, "equities") == [HEAD]
        assert "fault_partial" not in tables_of(db1, "equities")
        raw = ledger(db1, "equities")
        assert raw[-1]["outcome"] == "running" and raw[-1]["from_revision"] == HEAD, raw[-1]
        killed_entry = raw[-1]["entry_id"]

        run, status = run_module("alembic_status", {"config": str(project.ini), **db_args(db1)}, env=env)
        assert run.rc == 0, run.output[-3000:]
        assert status["lock_holder"] is None, status["lock_holder"]
        assert status["last_runs"][0]["entry_id"] == killed_entry
        assert status["last_runs"][0]["outcome"] == "interrupted", status["last_runs"][0]
        assert status["current"] == [HEAD] and status["pending_count"] == 1

        project.fast()
        run, result = run_module("alembic_upgrade", args, env=env)
        assert run.rc == 0, run.output[-3000:]
        assert result["changed"] is True and result["before"] == [HEAD] and result["after"] == [project.revision]
        assert "fault_partial" in tables_of(db1, "equities")
        rows = {r["entry_id"]: r for r in ledger(db1, "equities")}
        assert rows[killed_entry]["outcome"] == "interrupted", rows[killed_entry]
        assert rows[result["ledger_entry_id"]]["outcome"] == "succeeded"
        assert_no_secret(run.output, fresh_pg)
    finally:
        wipe(scratch)  # SIGKILL leaves the run's PGPASSFILE and ansible's module payload behind

"""Guards: preflight blockers, prod's backup rule, and the break-glass lock release."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from support.ansible_run import module
from support.pgcluster import PgCluster

from .conftest import make_inventory
from .test_bad_input import EQUITIES_INI, conn_args
from .test_migrate_postgres import tables_of
from .test_rollback import ledger, run

pytestmark = pytest.mark.slow


def test_preflight_waits_for_a_running_pg_dump_then_stops(fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    run_, result = module("alembic_status", {"config": str(EQUITIES_INI), **conn_args(db1)})
    assert result["blockers_visible"] is False and "pg_read_all_stats" in result["blockers_note"]
    db1.execute("grant pg_read_all_stats to %s" % db1.app_user)
    dump = db1.connect("equities")
    dump.autocommit = False
    try:
        with dump.cursor() as cur:
            cur.execute("set application_name = 'pg_dump'")
            cur.execute("select 1")  # an open transaction, as pg_dump keeps one for the whole dump
        args = {"config": str(EQUITIES_INI), **conn_args(db1), "wait_for_quiet": 2}
        started = time.monotonic()
        run_, result = module("alembic_status", args)
        assert run_.rc != 0 and time.monotonic() - started >= 2
        assert "is busy and a migration would queue behind it" in result["msg"] and "pg_dump" in result["msg"]
        run_, result = module("alembic_status", {**args, "wait_for_quiet": 0})
        assert run_.rc == 0 and [b["application_name"] for b in result["blockers"]] == ["pg_dump"]
    finally:
        dump.rollback()
        dump.close()
    run_, result = module("alembic_status", args)
    assert run_.rc == 0 and result["blockers"] == [] and result["blockers_visible"] is True
    db1.execute("revoke pg_read_all_stats from %s" % db1.app_user)


def test_prod_refuses_an_upgrade_without_a_verified_backup(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    inventory = make_inventory(tmp_path, fresh_pg)
    refused = run(inventory, "migrate.yml", fresh_pg, "-l", "db1", "-e", "fleet_backup_required=false")
    assert refused.rc != 0
    assert "prod requires a verified backup before any upgrade" in refused.output
    assert tables_of(fresh_pg[0], "equities") == set()


def test_break_glass_release_ends_a_stuck_holder_only_when_confirmed(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    inventory = make_inventory(tmp_path, fresh_pg)
    assert run(inventory, "migrate.yml", fresh_pg, "-l", "db1").rc == 0
    # A stuck run: an alembic-fleet session that still holds the database's run lock.
    from ansible.module_utils.fleet.core.common import parse_target
    from ansible.module_utils.fleet.state.lock import lock_key

    key = lock_key(parse_target(conn_args(db1)["url"], None))
    stuck = db1.connect("equities", superuser=False)
    with stuck.cursor() as cur:
        cur.execute("set application_name = 'alembic-fleet:stuck-run'")
        cur.execute("select pg_advisory_lock(%s)", (key,))
        cur.execute("select pg_backend_pid()")
        stuck_pid = cur.fetchone()[0]

    blocked, result = module("alembic_upgrade", {"config": str(EQUITIES_INI), **conn_args(db1), "target": "head", "lock_wait": 0})
    assert blocked.rc != 0
    assert "locked by another alembic-fleet run (pid %d, run stuck-run" % stuck_pid in result["msg"]
    _status_run, status = module("alembic_status", {"config": str(EQUITIES_INI), **conn_args(db1)})
    assert status["lock_holder"]["pid"] == stuck_pid and status["lock_holder"]["run_id"] == "stuck-run"

    refused = run(inventory, "release_lock.yml", fresh_pg, "-l", "db1")
    assert refused.rc != 0 and "-e fleet_confirm=equities" in refused.output
    assert db1.execute("select count(*) from pg_stat_activity where pid = %s", (stuck_pid,)) == [(1,)]

    released = run(inventory, "release_lock.yml", fresh_pg, "-l", "db1", "-e", "fleet_confirm=equities")
    assert released.rc == 0, released.output[-3000:]
    assert "ended pid %d (run stuck-run" % stuck_pid in released.output
    deadline = time.monotonic() + 5
    while db1.execute("select count(*) from pg_stat_activity where pid = %s", (stuck_pid,)) != [(0,)]:
        assert time.monotonic() < deadline, "the stuck session was not ended"
        time.sleep(0.2)
    assert ledger(db1, "equities")[-1]["action"] == "unlock"
    stuck.close()

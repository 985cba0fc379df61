"""A transaction per revision (transaction: revision / fleet_transaction): the application waits for one revision's
locks, not the whole plan's, and a plan that fails part-way is reported and brought back truthfully.

The project: aa01 creates `companies` and `prices`; bb02 adds a column to `companies` (ACCESS EXCLUSIVE on it);
cc03 is long work on `prices` only (an UPDATE, then a sleep while a marker file exists); dd04 fails while another
marker file exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import pytest

from support.ansible_run import module, playbook
from support.edge_projects import revision, write_project
from support.faults import db_args, run_env, run_module, sleeping, start_module, wait_for
from support.pgcluster import PgCluster

from .conftest import make_inventory, password_env
from .test_faults import only_equities
from .test_rollback import ledger

pytestmark = pytest.mark.slow

CREATE = """
op.create_table("companies", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(40)))
op.create_table("prices", sa.Column("id", sa.Integer, primary_key=True), sa.Column("price", sa.Numeric))
op.execute("insert into companies select g, 'c' || g from generate_series(1, 50) g")
op.execute("insert into prices select g, g from generate_series(1, 2000) g")
"""
SLOW = """
op.execute("update prices set price = price + 1")
if os.path.exists(%r):
    op.execute("select pg_sleep(4)")
"""
FAILING = """
if os.path.exists(%r):
    raise RuntimeError("dd04 refuses while the marker exists")
op.create_index("ix_prices_price", "prices", ["price"])
"""


def project(root: Path) -> tuple[Path, Path, Path]:
    """alembic.ini, the marker that makes cc03 slow, the marker that makes dd04 fail (neither exists yet)."""
    slow, fail = root / "slow", root / "fail"
    ini = write_project(
        root / "project",
        {
            "aa01_create": revision("aa01", None, CREATE, 'op.drop_table("prices")\nop.drop_table("companies")'),
            "bb02_sector": revision("bb02", "aa01", 'op.add_column("companies", sa.Column("sector", sa.String(20)))', 'op.drop_column("companies", "sector")'),
            "cc03_backfill": revision("cc03", "bb02", SLOW % str(slow), 'op.execute("update prices set price = price - 1")', head="import os"),
            "dd04_index": revision("dd04", "cc03", FAILING % str(fail), 'op.drop_index("ix_prices_price", table_name="prices")', head="import os"),
        },
    )
    return ini, slow, fail


def upgrade_args(cluster: PgCluster, ini: Path, target: str = "head", **more: Any) -> dict[str, Any]:
    return {"config": str(ini), **db_args(cluster), "target": target, **more}


def version_of(cluster: PgCluster) -> list[str]:
    return sorted(row[0] for row in cluster.execute("select version_num from alembic_version", dbname="equities"))


def companies_columns(cluster: PgCluster) -> set[str]:
    rows = cluster.execute("select column_name from information_schema.columns where table_name = 'companies'", dbname="equities")
    return {row[0] for row in rows}


def locks_on_companies(cluster: PgCluster, pid: int) -> list[str]:
    rows = cluster.execute("select mode from pg_locks where pid = %s and relation = 'companies'::regclass", (pid,), dbname="equities")
    return sorted(row[0] for row in rows)


def read_company(cluster: PgCluster) -> str:
    """A primary-key read as the application does it, giving up after 1 s: 'read' or the error's class."""
    conn = cluster.connect("equities", superuser=False)
    try:
        with conn.cursor() as cur:
            cur.execute("set statement_timeout = '1s'")
            try:
                cur.execute("select name from companies where id = 1")
            except psycopg2.errors.QueryCanceled:
                return "waited"
    finally:
        conn.close()
    return "read"


@pytest.mark.parametrize(("transaction", "held", "reader"), [("plan", ["AccessExclusiveLock"], "waited"), ("revision", [], "read")])
def test_the_backfill_runs_without_the_earlier_revisions_lock_only_per_revision(
    fresh_pg: list[PgCluster], tmp_path: Path, transaction: str, held: list[str], reader: str
) -> None:
    db1 = fresh_pg[0]
    ini, slow, _ = project(tmp_path)
    env = run_env(db1, tmp_path / "scratch")
    run, _ = run_module("alembic_upgrade", upgrade_args(db1, ini, "aa01"), env=env)
    assert run.rc == 0, run.output[-3000:]
    slow.write_text("sleep\n")
    job = start_module("alembic_upgrade", upgrade_args(db1, ini, "cc03", transaction=transaction), env=env)
    try:
        pid = wait_for("cc03's sleep", lambda: sleeping(db1, "equities"), timeout=60)[0][0]
        assert locks_on_companies(db1, pid) == held
        assert read_company(db1) == reader
    finally:
        done = job.wait(120)
    assert done.rc == 0, done.output[-3000:]
    result = job.result()
    assert result["transactional"] is (transaction == "plan")
    assert version_of(db1) == ["cc03"]


def test_a_failure_part_way_keeps_the_whole_revisions_before_it_and_says_so(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    ini, _, fail = project(tmp_path)
    env = run_env(db1, tmp_path / "scratch")
    fail.write_text("fail\n")
    run, result = run_module("alembic_upgrade", upgrade_args(db1, ini, transaction="revision"), env=env)
    assert run.rc != 0, run.output[-3000:]
    assert "the database is at cc03 (was base) - the revisions before dd04 were committed and stayed" in result["msg"], result["msg"]
    assert result["partial"] is True and result["whole_revisions"] is True
    assert result["after"] == ["cc03"] and result["changed"] is True
    assert version_of(db1) == ["cc03"]
    row = ledger(db1, "equities")[-1]
    assert (row["outcome"], row["to_revision"]) == ("failed", "cc03")
    applied = [entry["revision"] for entry in json.loads(row["revisions"])]
    assert applied == ["aa01", "bb02", "cc03"]  # their checksums are known to the next preflight

    fail.unlink()  # the next run carries on from cc03
    run, result = run_module("alembic_upgrade", upgrade_args(db1, ini, transaction="revision"), env=env)
    assert run.rc == 0, run.output[-3000:]
    assert [step["revision"] for step in result["applied"]] == ["dd04"]
    assert version_of(db1) == ["dd04"]


@pytest.mark.parametrize("allow_data_loss", [True, False], ids=["data-loss-allowed", "prod-default"])
def test_migrate_brings_back_the_revisions_a_failed_plan_committed_unless_that_loses_data(
    fresh_pg: list[PgCluster], tmp_path: Path, allow_data_loss: bool
) -> None:
    db1 = fresh_pg[0]
    ini, _, fail = project(tmp_path)
    run, _ = run_module("alembic_upgrade", upgrade_args(db1, ini, "aa01"), env=run_env(db1, tmp_path / "scratch"))
    assert run.rc == 0, run.output[-3000:]
    policy = {"fleet_transaction": "revision", "fleet_review_block": False, "fleet_rollback_allow_data_loss": allow_data_loss}
    inventory = only_equities(make_inventory(tmp_path, fresh_pg, projects={"equities": str(ini)}, **policy))
    fail.write_text("fail\n")
    run = playbook("migrate.yml", inventory, "-l", "db1", env=password_env(fresh_pg))
    assert run.rc != 0, run.output[-3000:]
    outcomes = [(row["action"], row["outcome"]) for row in ledger(db1, "equities")]
    if allow_data_loss:  # bb02's downgrade drops companies.sector: allowed here
        assert "downgraded back to aa01" in run.output, run.output[-3000:]
        assert version_of(db1) == ["aa01"]
        assert companies_columns(db1) == {"id", "name"}
        assert outcomes[-2:] == [("migrate", "rolled_back"), ("rollback", "succeeded")], outcomes
    else:  # neither the lossy downgrade nor the restore (every write since the backup): stop, and say where it is
        assert "NOT brought back" in run.output and "the database is at cc03" in run.output, run.output[-3000:]
        assert "fleet_rollback_allow_data_loss is off" in run.output, run.output[-3000:]
        assert version_of(db1) == ["cc03"]
        assert companies_columns(db1) == {"id", "name", "sector"}
        assert outcomes[-1] == ("migrate", "failed"), outcomes


def lock_held(ini: Path, transaction: str) -> list[tuple[str, str, str]]:
    """(revision, locked table, statement) of each lock-held-through-long-work finding, reviewed offline from aa01."""
    args = {"config": str(ini), "url": "postgresql://x@localhost/db", "offline": True, "from_revision": "aa01", "transaction": transaction}
    run, result = module("alembic_lint", args)
    assert run.rc == 0 and "msg" not in result, run.output[-3000:]
    return [
        (entry["revision"], finding["table"], finding["statement"])
        for entry in result["revisions"]
        for finding in entry["findings"]
        if finding["rule"] == "lock-held-through-long-work"
    ]


def test_the_review_names_a_backfill_that_runs_under_an_earlier_exclusive_lock(tmp_path: Path) -> None:
    ini, _, _ = project(tmp_path)
    # One transaction: bb02's ALTER TABLE companies holds ACCESS EXCLUSIVE through cc03's UPDATE of prices (once per table).
    assert lock_held(ini, "plan") == [("cc03", "companies", "update prices set price = price + 1")]
    assert lock_held(ini, "revision") == []  # bb02 commits before cc03 starts

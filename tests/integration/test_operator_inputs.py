"""Runs that were asked to do something and did nothing say so; confirmations only for what changes; fleet_only.

Issue 16, points 1 and 3: a misspelt fleet_confirm or fleet_only is refused in one line naming the databases that
exist; a database that needs nothing needs no confirmation; stamp, rollback, release_lock and restore_check take
a list of databases; a prod host without databases is an error, elsewhere a line that says so.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from support.ansible_run import REPO, Run, module, playbook, write_yaml
from support.pgcluster import PgCluster

from .conftest import PROJECTS, make_inventory, password_env
from .test_bad_input import conn_args
from .test_migrate_postgres import head_of, version_of

pytestmark = pytest.mark.slow


def run(inventory: Path, book: str, clusters: list[PgCluster], *args: str) -> Run:
    # JSON results: a failure's message is one JSON string, whatever its length.
    return playbook(REPO / book, inventory, *args, env={**password_env(clusters), "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"})


def refusal(result: Run) -> str:
    """The message of the first failed task."""
    marker = re.search(r"FAILED! => \{", result.output)
    assert marker, "no failed task in:\n%s" % result.output[-3000:]
    failed: dict[str, Any] = json.JSONDecoder().raw_decode(result.output[marker.end() - 1 :])[0]
    return str(failed["msg"])


def hold_run_lock(cluster: PgCluster, dbname: str) -> tuple[Any, int]:
    """A stuck alembic-fleet session holding the database's run lock; returns (connection, pid)."""
    from ansible.module_utils.fleet.core.common import parse_target
    from ansible.module_utils.fleet.state.lock import lock_key

    key = lock_key(parse_target(conn_args(cluster, dbname)["url"], None))
    stuck = cluster.connect(dbname, superuser=False)
    with stuck.cursor() as cur:
        cur.execute("set application_name = 'alembic-fleet:stuck-run'")
        cur.execute("select pg_advisory_lock(%s)", (key,))
        cur.execute("select pg_backend_pid()")
        row = cur.fetchone()
    assert row is not None
    return stuck, int(row[0])


def alive(cluster: PgCluster, pid: int) -> bool:
    return cluster.execute("select count(*) from pg_stat_activity where pid = %s", (pid,)) == [(1,)]


def test_release_lock_refuses_a_misspelt_name_and_says_when_there_is_nothing_to_release(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    inventory = make_inventory(tmp_path, fresh_pg)
    stuck, pid = hold_run_lock(db1, "equities")
    try:
        typo = run(inventory, "release_lock.yml", fresh_pg, "-l", "db1", "-e", "fleet_confirm=equitis")
        assert typo.rc == 2, typo.output[-3000:]
        assert refusal(typo) == (
            "fleet_confirm names 'equitis', which is not a database of db1 (equities, algorithms): check the spelling; nothing was touched."
        )
        assert alive(db1, pid)

        idle = run(inventory, "release_lock.yml", fresh_pg, "-l", "db1", "-e", "fleet_confirm=algorithms")
        assert idle.rc == 0, idle.output[-3000:]
        assert "db1/algorithms: holds no lock, nothing to release" in idle.output
        assert "db1/equities" not in idle.output, "a database not named was visited"
        assert alive(db1, pid)

        # fleet_only picks both; only the one whose lock is held needs (and has) the confirmation.
        both = ("-e", "fleet_only=equities,algorithms", "-e", "fleet_confirm=equities")
        released = run(inventory, "release_lock.yml", fresh_pg, "-l", "db1", *both)
        assert released.rc == 0, released.output[-3000:]
        assert "db1/equities: ended pid %d (run stuck-run" % pid in released.output
        assert "db1/algorithms: holds no lock, nothing to release" in released.output
        deadline = time.monotonic() + 5
        while alive(db1, pid):
            assert time.monotonic() < deadline, "the stuck session was not ended"
            time.sleep(0.2)
    finally:
        stuck.close()


def make_unversioned(cluster: PgCluster, name: str) -> None:
    """A database whose schema was made by other means: migrated, then its version and ledger tables dropped."""
    upgrade(cluster, name)
    cluster.execute("drop table alembic_version; drop table alembic_fleet_ledger", dbname=name)


def upgrade(cluster: PgCluster, name: str) -> None:
    done, result = module("alembic_upgrade", {"config": str(PROJECTS[name]), **conn_args(cluster, name), "target": "head"})
    assert done.rc == 0, result


def test_stamp_confirms_only_what_it_would_change_and_takes_fleet_only(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    db1, db2 = fresh_pg
    make_unversioned(db1, "equities")
    upgrade(db1, "algorithms")
    make_unversioned(db2, "equities")
    make_unversioned(db2, "algorithms")
    inventory = make_inventory(tmp_path, fresh_pg)
    eq, alg = head_of("equities"), head_of("algorithms")

    def versions() -> list[list[str]]:
        return [version_of(c, name) for c in fresh_pg for name in ("equities", "algorithms")]

    typo = run(inventory, "stamp.yml", fresh_pg, "-l", "prod", "-e", "fleet_only=equities,algoritms")
    assert typo.rc == 2, typo.output[-3000:]
    assert refusal(typo) == (
        "fleet_only names 'algoritms', which is not a database of db1 (equities, algorithms) or db2 (equities, "
        "algorithms): check the spelling; nothing was touched."
    )
    assert versions() == [[], [alg], [], []]

    # Only equities is picked, so db2's unversioned algorithms (unconfirmed) is not even looked at.
    picked = run(inventory, "stamp.yml", fresh_pg, "-l", "prod", "-e", "fleet_only=equities", "-e", "fleet_confirm=equities")
    assert picked.rc == 0, picked.output[-3000:]
    assert versions() == [[eq], [alg], [eq], []]
    assert "algorithms" not in "".join(line for line in picked.output.splitlines() if line.lstrip().startswith('"msg"'))

    # The README's command: equities (already stamped) and db1's algorithms (at head) need no confirmation.
    confirmed = run(inventory, "stamp.yml", fresh_pg, "-l", "prod", "-e", "fleet_stamp_target=head", "-e", "fleet_confirm=algorithms")
    assert confirmed.rc == 0, confirmed.output[-3000:]
    assert versions() == [[eq], [alg], [eq], [alg]]
    assert "db1/algorithms: already at %s, nothing to do" % alg in confirmed.output
    assert "db2/algorithms: stamped" in confirmed.output


def test_rollback_and_restore_check_take_fleet_only_and_migrate_refuses_it(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    inventory = make_inventory(tmp_path, fresh_pg)
    # A YAML list, as an inventory or -e @file would give it.
    rollback = run(inventory, "rollback.yml", fresh_pg, "-l", "db1", "-e", '{"fleet_only": ["algorithms"]}')
    assert rollback.rc == 0, rollback.output[-3000:]
    assert "db1/algorithms: nothing to undo" in rollback.output
    assert "db1/equities" not in rollback.output

    # No backup yet: the picked database's drill fails, the other one is not drilled.
    drill = run(inventory, "restore_check.yml", fresh_pg, "-l", "db1", "-e", "fleet_only=equities")
    assert drill.rc != 0
    assert "db1: 1 restore drill failed: equities: " in drill.output

    migrate = run(inventory, "migrate.yml", fresh_pg, "-l", "db1", "-e", "fleet_only=equities")
    assert migrate.rc == 2
    assert refusal(migrate).startswith("migrate.yml takes no fleet_only: it brings every database of the selected hosts")
    assert version_of(fresh_pg[0], "equities") == [] and version_of(fresh_pg[0], "algorithms") == []
    for name, does in (("status.yml", "reads"), ("review.yml", "reviews"), ("backup.yml", "backs up")):
        ignored = run(inventory, name, fresh_pg, "-l", "db1", "-e", "fleet_only=equities")
        assert ignored.rc == 2, ignored.output[-2000:]
        assert refusal(ignored).startswith("%s takes no fleet_only: it %s every database of the selected hosts" % (name, does)), ignored.output[-2000:]


def test_a_host_without_databases_is_an_error_in_prod_and_a_line_elsewhere(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    prod = make_inventory(tmp_path / "prod", fresh_pg)
    # db3 is in the inventory, but its host_vars file is misnamed: it has no databases.
    write_yaml(prod / "hosts.yml", {"all": {"children": {"prod": {"hosts": {"db1": None, "db3": None}}}}})
    (prod / "host_vars" / "db1.yml").rename(prod / "host_vars" / "db-3.yml")
    refused = run(prod, "rollback.yml", fresh_pg, "-l", "db3")
    assert refused.rc == 2, refused.output[-3000:]
    assert refusal(refused) == (
        "db3 has no databases: fleet_databases is empty or not set (is %s/host_vars/db3.yml missing or misnamed?); "
        "list its databases there, or leave the host out with -l; nothing was done on it." % prod
    )

    dev = make_inventory(tmp_path / "dev", fresh_pg, environment="dev")
    write_yaml(dev / "host_vars" / "db1.yml", {"fleet_databases": []})
    said = run(dev, "rollback.yml", fresh_pg, "-l", "db1")
    assert said.rc == 0, said.output[-3000:]
    assert "db1: no databases, nothing to do - fleet_databases is empty or not set" in said.output

"""Every bad input: one clear sentence saying what to do, a failed exit, nothing changed."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from support.ansible_run import REPO, module, playbook
from support.pgcluster import PgCluster

from .conftest import make_inventory, password_env
from .test_migrate_postgres import assert_no_secret, head_of, tables_of, version_of

pytestmark = pytest.mark.slow

EQUITIES_INI = REPO / "migrations" / "equities" / "alembic.ini"
FIRST = "a1c3e5f70b21"

REVISION_TEMPLATE = '''"""{message}

Revision ID: {rev}
Revises: {down}
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("{table}", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("{table}")
'''


def project_copy(tmp_path: Path, *revisions: tuple[str, str, str]) -> Path:
    """A copy of the equities project with extra (rev, down_revision, table) revisions."""
    target = tmp_path / "equities_copy"
    shutil.copytree(REPO / "migrations" / "equities", target, ignore=shutil.ignore_patterns("__pycache__"))
    for rev, down, table in revisions:
        (target / "versions" / ("20260101_0000_%s_extra_%s.py" % (rev, table))).write_text(
            REVISION_TEMPLATE.format(message="Extra %s" % table, rev=rev, down=down, table=table)
        )
    return target / "alembic.ini"


def conn_args(cluster: PgCluster, dbname: str = "equities", password: str | None = None) -> dict[str, Any]:
    return {
        "url": "postgresql://%s@127.0.0.1:%d/%s" % (cluster.app_user, cluster.port, dbname),
        "password": cluster.app_password if password is None else password,
    }


def fails_with(result: dict[str, Any], rc: int, *phrases: str) -> str:
    assert rc != 0, result
    message = result["msg"]
    assert "\n" not in message, message
    for phrase in phrases:
        assert phrase in message, message
    return message


@pytest.fixture()
def db1(fresh_pg: list[PgCluster]) -> PgCluster:
    return fresh_pg[0]


def test_unknown_revision(db1: PgCluster) -> None:
    run, result = module("alembic_upgrade", {"config": str(EQUITIES_INI), "target": "ffff0000", **conn_args(db1)})
    fails_with(result, run.rc, "unknown revision 'ffff0000'", "status module")
    assert tables_of(db1, "equities") == set()


def test_ambiguous_partial_id_lists_the_candidates(db1: PgCluster, tmp_path: Path) -> None:
    ini = project_copy(tmp_path, ("abcd1111aaaa", "e5f7293c4a65", "extra_one"), ("abcd2222bbbb", "abcd1111aaaa", "extra_two"))
    run, result = module("alembic_upgrade", {"config": str(ini), "target": "abcd", **conn_args(db1)})
    fails_with(result, run.rc, "ambiguous", "abcd1111aaaa", "abcd2222bbbb", "more characters")
    assert tables_of(db1, "equities") == set()
    run, result = module("alembic_upgrade", {"config": str(ini), "target": "abcd1", **conn_args(db1)})
    assert run.rc == 0 and result["after"] == ["abcd1111aaaa"], result


def test_missing_alembic_ini(db1: PgCluster, tmp_path: Path) -> None:
    run, result = module("alembic_upgrade", {"config": str(tmp_path / "nope" / "alembic.ini"), **conn_args(db1)})
    fails_with(result, run.rc, "does not exist", "alembic.ini")
    assert tables_of(db1, "equities") == set()


def test_missing_database_is_refused_unless_create_database(db1: PgCluster) -> None:
    db1.drop_database("brand_new")
    args = {"config": str(EQUITIES_INI), **conn_args(db1, "brand_new")}
    run, result = module("alembic_upgrade", args)
    fails_with(result, run.rc, "'brand_new' does not exist", "create_database: true")
    assert not db1.execute("select 1 from pg_database where datname = 'brand_new'")
    run, result = module("alembic_upgrade", {**args, "create_database": True}, "--check")
    assert run.rc == 0 and result["changed"] is True, result
    assert not db1.execute("select 1 from pg_database where datname = 'brand_new'"), "check mode created the database"
    run, result = module("alembic_upgrade", {**args, "create_database": True})
    assert run.rc == 0 and result["database_created"] is True, result
    assert version_of(db1, "brand_new") == [head_of("equities")]
    db1.drop_database("brand_new")


def test_unreachable_host(db1: PgCluster) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run, result = module(
        "alembic_status",
        {"config": str(EQUITIES_INI), "url": "postgresql://migrator@127.0.0.1:%d/equities" % port, "password": "x", "connect_timeout": 3},
    )
    fails_with(result, run.rc, "cannot reach PostgreSQL at 127.0.0.1:%d" % port, "server is running")


def test_wrong_password_never_shows_any_password(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    wrong = "Wr0ng-" + db1.app_password[::-1]
    run, result = module("alembic_upgrade", {"config": str(EQUITIES_INI), **conn_args(db1, password=wrong)}, "-vvv")
    fails_with(result, run.rc, "authentication failed for user 'migrator'", "check the password")
    assert wrong not in run.output
    assert_no_secret(run.output, fresh_pg)
    assert tables_of(db1, "equities") == set()

    # The same through the role, at -vvv: db1 gets a wrong password, db2 the right one.
    # Under dev policy a failing host does not stop the others (prod would stop).
    inventory = make_inventory(tmp_path, fresh_pg, environment="dev")
    env = password_env(fresh_pg)
    env["FLEET_TEST_DB1_PASSWORD"] = wrong
    play = playbook(REPO / "migrate.yml", inventory, "-l", "dev", "-vvv", env=env)
    assert play.rc != 0
    assert "authentication failed for user 'migrator'" in play.output
    assert wrong not in play.output
    assert_no_secret(play.output, fresh_pg)
    assert tables_of(db1, "equities") == set()
    assert version_of(fresh_pg[1], "equities") == [head_of("equities")], "the healthy host still migrates"


def test_multiple_heads_block_the_upgrade_and_the_role(db1: PgCluster, tmp_path: Path) -> None:
    ini = project_copy(tmp_path, ("f0f0f0f0f0f0", "d4f6182b3e54", "side_branch"))
    run, result = module("alembic_upgrade", {"config": str(ini), **conn_args(db1)})
    fails_with(result, run.rc, "2 heads", "merge them")
    assert tables_of(db1, "equities") == set()
    run, result = module("alembic_status", {"config": str(ini), **conn_args(db1)})
    assert run.rc == 0 and result["multiple_heads"] is True, result


def test_target_not_reachable_from_current(db1: PgCluster) -> None:
    args = {"config": str(EQUITIES_INI), **conn_args(db1)}
    run, result = module("alembic_upgrade", args)
    assert run.rc == 0, result
    run, result = module("alembic_upgrade", {**args, "target": FIRST})
    fails_with(result, run.rc, "cannot be reached by upgrading", "downgrade module")
    assert version_of(db1, "equities") == [head_of("equities")]


def test_password_in_url_is_refused_and_masked(db1: PgCluster) -> None:
    url = "postgresql://migrator:%s@127.0.0.1:%d/equities" % (db1.app_password, db1.port)
    run, result = module("alembic_status", {"config": str(EQUITIES_INI), "url": url})
    fails_with(result, run.rc, "contains a password", "'password' option")
    assert db1.app_password not in run.output

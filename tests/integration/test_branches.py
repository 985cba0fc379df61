"""Histories with branches, on real PostgreSQL through the playbooks (issue 14, points 1, 3, 11 and 12).

The project is written here: a000 -> (b100 -> b200, branch "one") and (c100 -> c200, branch "two") -> merge m000,
the shape of real projects' feature branches. A database taken to one branch's head and then to the other's holds
two heads; the run that took it there must verify, recover and roll back exactly what it added.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.ansible_run import REPO, module, playbook, write_yaml
from support.pgcluster import PgCluster

from .test_migrate_postgres import assert_no_secret, tables_of, version_of

pytestmark = pytest.mark.slow

DB = "forked"
LEDGER = "alembic_fleet_ledger"
PASSWORD_VAR = "FLEET_TEST_FORKED_PASSWORD"

ENV_PY = """
from alembic import context
from sqlalchemy import engine_from_config, pool

import forked_models

config = context.config
target_metadata = forked_models.metadata


def run_migrations_offline():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""

INI = """[alembic]
script_location = %(here)s
prepend_sys_path = .
path_separator = os
sqlalchemy.url = postgresql://nobody@127.0.0.1:1/not_this_one
"""

REVISION = '''"""{message}"""
from alembic import op
import sqlalchemy as sa

revision = "{revision}"
down_revision = {down}
branch_labels = {labels}
depends_on = None


def upgrade():
{upgrade}


def downgrade():
{downgrade}
'''

# revision -> (down_revision, branch_labels)
GRAPH: dict[str, tuple[Any, Any]] = {
    "a000aaaa": (None, None),
    "b100bbbb": ("a000aaaa", ("one",)),
    "b200bbbb": ("b100bbbb", None),
    "c100cccc": ("a000aaaa", ("two",)),
    "c200cccc": ("c100cccc", None),
    "m000mmmm": (("b200bbbb", "c200cccc"), None),
}


def table_ops(revision: str) -> tuple[str, str]:
    if revision.startswith("m"):
        return "    pass", "    pass"
    table = "t_" + revision[:4]
    return (
        '    op.create_table("%s", sa.Column("id", sa.Integer, primary_key=True))' % table,
        '    op.drop_table("%s")' % table,
    )


def write_project(
    root: Path,
    models_extra: str = "",
    downgrades: dict[str, str] | None = None,
    upgrades: dict[str, str] | None = None,
) -> Path:
    """The forked project under root; returns its alembic.ini."""
    versions = root / "versions"
    versions.mkdir(parents=True)
    (root / "alembic.ini").write_text(INI)
    (root / "env.py").write_text(ENV_PY)
    (root / "script.py.mako").write_text((REPO / "tests" / "fixtures" / "hazards" / "script.py.mako").read_text())
    tables = [rev[:4] for rev in GRAPH if not rev.startswith("m")]
    models = "import sqlalchemy as sa\n\nmetadata = sa.MetaData()\n" + "".join(
        'sa.Table("t_%s", metadata, sa.Column("id", sa.Integer, primary_key=True))\n' % name for name in tables
    )
    (root / "forked_models.py").write_text(models + models_extra)
    for revision, (down, labels) in GRAPH.items():
        up, down_body = table_ops(revision)
        up = (upgrades or {}).get(revision, up)
        down_body = (downgrades or {}).get(revision, down_body)
        (versions / ("%s.py" % revision)).write_text(
            REVISION.format(message="revision " + revision, revision=revision, down=repr(down), labels=repr(labels), upgrade=up, downgrade=down_body)
        )
    return root / "alembic.ini"


def inventory(root: Path, cluster: PgCluster, ini: Path, environment: str = "dev", entry: dict[str, Any] | None = None, **policy: Any) -> Path:
    inv = root / "inventory"
    write_yaml(inv / "hosts.yml", {"all": {"children": {environment: {"hosts": {"db1": None}}}}})
    write_yaml(
        inv / "group_vars" / "all.yml",
        {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "fleet_project_root": str(REPO),
            "fleet_backup_root": str(root / "backups"),
        },
    )

    group = yaml.safe_load((REPO / "inventory" / "group_vars" / ("%s.yml" % environment)).read_text())
    group.update(policy)
    write_yaml(inv / "group_vars" / ("%s.yml" % environment), group)
    database = {
        "name": DB,
        "alembic_ini": str(ini),
        "url": "postgresql://%s@127.0.0.1:%d/%s" % (cluster.app_user, cluster.port, DB),
        "password": "{{ lookup('ansible.builtin.env', '%s') }}" % PASSWORD_VAR,
    }
    database.update(entry or {})
    write_yaml(inv / "host_vars" / "db1.yml", {"fleet_databases": [database]})
    return inv


@pytest.fixture()
def cluster(pg_clusters: list[PgCluster]) -> PgCluster:
    pg_clusters[0].reset_database(DB)
    return pg_clusters[0]


def play(book: str, inv: Path, cluster: PgCluster, *args: str) -> Any:
    result = playbook(REPO / book, inv, *args, env={PASSWORD_VAR: cluster.app_password})
    assert_no_secret(result.output, [cluster])
    return result


def ledger_rows(cluster: PgCluster) -> list[dict[str, Any]]:
    columns = ("action", "outcome", "from_revision", "to_revision", "entry_id", "undone_by", "message", "revisions")
    rows = cluster.execute("select %s from %s order by id" % (", ".join(columns), LEDGER), dbname=DB)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_a_run_to_another_branch_is_verified_then_rolled_back_exactly(tmp_path: Path, cluster: PgCluster) -> None:
    ini = write_project(tmp_path / "project")
    inv = inventory(tmp_path, cluster, ini)
    first = play("migrate.yml", inv, cluster, "-e", "fleet_target=b200bbbb")
    assert first.rc == 0, first.output[-3000:]
    assert version_of(cluster, DB) == ["b200bbbb"]

    # The other branch's head: the database ends at both heads, which is what verification must expect.
    second = play("migrate.yml", inv, cluster, "-e", "fleet_target=c200cccc")
    assert second.rc == 0, second.output[-3000:]
    assert sorted(version_of(cluster, DB)) == ["b200bbbb", "c200cccc"]
    rows = ledger_rows(cluster)
    assert [(r["action"], r["outcome"]) for r in rows] == [("migrate", "succeeded"), ("migrate", "succeeded")]

    # rollback.yml undoes exactly what that run added: branch two goes, branch one stays.
    rolled = play("rollback.yml", inv, cluster)
    assert rolled.rc == 0, rolled.output[-3000:]
    assert version_of(cluster, DB) == ["b200bbbb"]
    assert tables_of(cluster, DB) >= {"t_a000", "t_b100", "t_b200"}
    assert not tables_of(cluster, DB) & {"t_c100", "t_c200"}
    rows = ledger_rows(cluster)
    assert [(r["action"], r["outcome"]) for r in rows] == [("migrate", "succeeded"), ("migrate", "rolled_back"), ("rollback", "succeeded")]
    assert rows[1]["undone_by"] == rows[2]["entry_id"]
    assert "rolled back by entry %s (downgrade by rollback run " % rows[2]["entry_id"] in rows[1]["message"], rows[1]["message"]
    assert "downgraded b200bbbb, c200cccc -> b200bbbb" in one_line(rolled.output), rolled.output[-3000:]

    # The rest of the way: head (the merge) from one branch head, then back to where it started.
    third = play("migrate.yml", inv, cluster)
    assert third.rc == 0, third.output[-3000:]
    assert version_of(cluster, DB) == ["m000mmmm"]
    back = play("rollback.yml", inv, cluster)
    assert back.rc == 0, back.output[-3000:]
    assert version_of(cluster, DB) == ["b200bbbb"]


def test_plus_one_at_a_branch_point_names_the_candidates(tmp_path: Path, cluster: PgCluster) -> None:
    ini = write_project(tmp_path / "project")
    args = {"config": str(ini), "url": cluster.url(DB), "password": cluster.app_password}
    run, result = module("alembic_upgrade", {**args, "target": "a000aaaa"})
    assert run.rc == 0, run.output[-2000:]
    run, result = module("alembic_upgrade", {**args, "target": "+1"})
    assert run.rc != 0
    message = one_line(result["msg"])
    assert "target '+1' is ambiguous" in message, message
    assert "b100bbbb (branch one" in message and "c100cccc (branch two" in message, message
    assert version_of(cluster, DB) == ["a000aaaa"]


def test_a_failed_verification_whose_downgrade_is_refused_restores_the_backup(tmp_path: Path, cluster: PgCluster) -> None:
    # The models know a table the migrations never create, so verification at head fails; the merge's branch
    # revision b200 cannot be downgraded (it raises), so the recovery must restore the backup taken before.
    ini = write_project(
        tmp_path / "project",
        models_extra='sa.Table("t_missing", metadata, sa.Column("id", sa.Integer, primary_key=True))\n',
        downgrades={"b200bbbb": '    raise RuntimeError("b200 cannot be undone")'},
    )
    inv = inventory(tmp_path, cluster, ini)
    first = play("migrate.yml", inv, cluster, "-e", "fleet_target=a000aaaa")
    assert first.rc == 0, first.output[-3000:]
    conn = cluster.connect(DB, superuser=False)  # the application's own data, written as the application would
    try:
        with conn, conn.cursor() as cur:
            cur.execute("create table app_rows (id int); insert into app_rows values (1), (2)")
    finally:
        conn.close()

    failed = play("migrate.yml", inv, cluster)
    assert failed.rc != 0
    text = one_line(failed.output)
    assert "t_missing" in text, failed.output[-3000:]
    assert "restored " in text and "(revision a000aaaa)" in text, failed.output[-3000:]
    assert "stopped part-way" not in text
    assert version_of(cluster, DB) == ["a000aaaa"]
    assert cluster.execute("select count(*) from app_rows", dbname=DB)[0][0] == 2
    rows = ledger_rows(cluster)
    # The failed run never says succeeded: it is marked rolled back by the restore, which is recorded itself.
    assert [(r["action"], r["outcome"]) for r in rows][1:] == [("migrate", "rolled_back"), ("rollback", "succeeded")]
    assert rows[1]["undone_by"] == rows[2]["entry_id"]
    assert "verification" in (rows[1]["message"] or ""), rows[1]
    assert "; rolled back by entry %s (restore of " % rows[2]["entry_id"] in rows[1]["message"], rows[1]["message"]


def test_a_failed_verification_that_cannot_be_brought_back_says_so_in_the_ledger(tmp_path: Path, cluster: PgCluster) -> None:
    # No backup (local policy on PostgreSQL) and an irreversible downgrade: the host fails loudly and the ledger row
    # says failed, with where the database is.
    ini = write_project(
        tmp_path / "project",
        models_extra='sa.Table("t_missing", metadata, sa.Column("id", sa.Integer, primary_key=True))\n',
        downgrades={"a000aaaa": '    raise RuntimeError("a000 cannot be undone")'},
    )
    inv = inventory(tmp_path, cluster, ini, environment="local")
    failed = play("migrate.yml", inv, cluster)
    assert failed.rc != 0
    text = one_line(failed.output)
    assert "NOT brought back" in text and "the database is at m000mmmm" in text, failed.output[-3000:]
    assert "no backup was taken" in text
    assert version_of(cluster, DB) == ["m000mmmm"]
    rows = ledger_rows(cluster)
    assert [(r["action"], r["outcome"]) for r in rows] == [("migrate", "failed")], rows
    assert rows[0]["to_revision"] == "m000mmmm"
    assert "verification" in rows[0]["message"] and "applied" in rows[0]["message"], rows[0]["message"]
    assert json.loads(rows[0]["revisions"]), "the applied revisions (and their checksums) stay recorded"


def test_a_project_with_several_heads_migrates_to_heads_and_refuses_head(tmp_path: Path, cluster: PgCluster) -> None:
    # Without the merge revision the project keeps two heads, as projects with permanent labelled branches do.
    project = tmp_path / "project"
    ini = write_project(project)
    (project / "versions" / "m000mmmm.py").unlink()
    inv = inventory(tmp_path, cluster, ini)
    refused = play("migrate.yml", inv, cluster)
    assert refused.rc != 0
    text = one_line(refused.output)
    assert "the target 'head' names none of them" in text and "heads, <branch>@head or a revision" in text, refused.output[-3000:]
    assert version_of(cluster, DB) == []

    inv = inventory(tmp_path, cluster, ini, entry={"target": "heads"})
    done = play("migrate.yml", inv, cluster)
    assert done.rc == 0, done.output[-3000:]
    assert sorted(version_of(cluster, DB)) == ["b200bbbb", "c200cccc"]
    again = play("migrate.yml", inv, cluster)
    assert again.rc == 0 and again.changed_total() == 0, again.output[-3000:]


def test_a_host_without_an_environment_is_refused(tmp_path: Path, cluster: PgCluster) -> None:
    ini = write_project(tmp_path / "project")
    inv = inventory(tmp_path, cluster, ini, environment="prod")
    (inv / "group_vars" / "prod.yml").unlink()  # an inventory without the repository's policy files
    refused = play("migrate.yml", inv, cluster)
    assert refused.rc != 0
    assert "db1 have no environment: set fleet_environment" in one_line(refused.output), refused.output[-3000:]
    assert version_of(cluster, DB) == [] and not (tmp_path / "backups").exists()


def test_rollback_to_base_in_prod_asks_no_confirmation_of_a_database_already_at_base(tmp_path: Path, cluster: PgCluster) -> None:
    ini = write_project(tmp_path / "project")
    inv = inventory(tmp_path, cluster, ini, environment="prod")
    done = play("rollback.yml", inv, cluster, "-e", "fleet_rollback_target=base")
    assert done.rc == 0, done.output[-3000:]
    assert "already at base, nothing to do" in one_line(done.output), done.output[-3000:]


def test_a_failed_post_upgrade_backup_never_undoes_the_verified_upgrade(tmp_path: Path, cluster: PgCluster) -> None:
    # The revision takes its own owner's SELECT away, so the post-upgrade pg_dump fails after the upgrade has been
    # committed and verified (the pre-upgrade backup ran before it). The upgrade stays; the host fails and says so.
    ini = write_project(
        tmp_path / "project",
        upgrades={
            "b100bbbb": '    op.create_table("t_b100", sa.Column("id", sa.Integer, primary_key=True))\n    op.execute("REVOKE ALL ON t_b100 FROM CURRENT_USER")'
        },
    )
    inv = inventory(tmp_path, cluster, ini, environment="prod")
    failed = play("migrate.yml", inv, cluster, "-e", "fleet_target=b100bbbb")
    assert failed.rc != 0
    text = one_line(failed.output)
    assert "is committed and verified and was NOT undone" in text and "backup.yml -l db1" in text, failed.output[-3000:]
    assert version_of(cluster, DB) == ["b100bbbb"]
    assert [(r["action"], r["outcome"]) for r in ledger_rows(cluster)] == [("migrate", "succeeded")]

    # Once the cause is fixed, the next run sees the post-upgrade backup is missing and takes it; then all is quiet.
    cluster.execute("GRANT ALL ON t_b100 TO %s" % cluster.app_user, dbname=DB)
    dumps = set((tmp_path / "backups").rglob("*.dump"))
    second = play("migrate.yml", inv, cluster, "-e", "fleet_target=b100bbbb")
    assert second.rc == 0, second.output[-3000:]
    taken = sorted(set((tmp_path / "backups").rglob("*.dump")) - dumps)
    assert len(taken) == 1 and taken[0].name.endswith("_b100bbbb.dump"), taken
    assert "post-upgrade backup the last run did not take %s" % taken[0] in one_line(second.output), second.output[-3000:]
    third = play("migrate.yml", inv, cluster, "-e", "fleet_target=b100bbbb")
    assert third.rc == 0 and third.changed_total() == 0, third.output[-3000:]


def test_a_lossy_rollback_takes_a_verified_backup_first(tmp_path: Path, cluster: PgCluster) -> None:
    ini = write_project(tmp_path / "project")
    inv = inventory(tmp_path, cluster, ini)  # dev: backups required, data loss allowed
    assert play("migrate.yml", inv, cluster, "-e", "fleet_target=b100bbbb").rc == 0
    cluster.execute("insert into t_b100 values (7)", dbname=DB)
    before = sorted((tmp_path / "backups").rglob("*.dump"))
    rolled = play("rollback.yml", inv, cluster)
    assert rolled.rc == 0, rolled.output[-3000:]
    assert version_of(cluster, DB) == []
    taken = sorted(set((tmp_path / "backups").rglob("*.dump")) - set(before))
    assert len(taken) == 1 and taken[0].name.endswith("_b100bbbb.dump"), taken
    rows = ledger_rows(cluster) if "alembic_fleet_ledger" in tables_of(cluster, DB) else []
    assert rows and rows[-1]["action"] == "rollback", rows
    assert "backup %s" % taken[0] in one_line(rolled.output), rolled.output[-3000:]


def test_an_edited_applied_revision_stops_the_preflight_before_any_backup(tmp_path: Path, cluster: PgCluster) -> None:
    project = tmp_path / "project"
    ini = write_project(project)
    inv = inventory(tmp_path, cluster, ini)
    assert play("migrate.yml", inv, cluster, "-e", "fleet_target=a000aaaa").rc == 0
    backups = sorted((tmp_path / "backups").rglob("*.dump"))
    edited = project / "versions" / "a000aaaa.py"
    edited.write_text(edited.read_text() + "\n# edited after it was applied\n")
    refused = play("migrate.yml", inv, cluster)
    assert refused.rc != 0
    text = one_line(refused.output)
    assert "nothing was changed: revision a000aaaa (a000aaaa.py) was changed after it was applied" in text, refused.output[-3000:]
    assert version_of(cluster, DB) == ["a000aaaa"]
    assert sorted((tmp_path / "backups").rglob("*.dump")) == backups
    assert [(r["action"], r["outcome"]) for r in ledger_rows(cluster)] == [("migrate", "succeeded")]


def test_stamp_of_a_database_at_an_unknown_revision_writes_nothing(tmp_path: Path, cluster: PgCluster) -> None:
    ini = write_project(tmp_path / "project")
    cluster.execute("create table alembic_version (version_num varchar(32) primary key); insert into alembic_version values ('ffff0000')", dbname=DB)
    cluster.execute("alter table alembic_version owner to %s" % cluster.app_user, dbname=DB)
    run_, result = module("alembic_stamp", {"config": str(ini), "url": cluster.url(DB), "password": cluster.app_password, "target": "a000aaaa"})
    assert run_.rc != 0
    assert "it is at revision ffff0000, which this project does not have" in one_line(result["msg"]), result
    assert LEDGER not in tables_of(cluster, DB)
    assert version_of(cluster, DB) == ["ffff0000"]


# -- the upgrade module dies (issue 15, point 5): the recovery reads back where the database is --------------------
SLEEPER_ENV = """
import os
import time

_marker = os.environ.get("FLEET_TEST_SLEEP_AFTER")
if _marker and os.path.exists(_marker):  # the revision below ran and committed: this is the probe after the commit
    open(_marker + ".sleeping", "w").close()
    time.sleep(60)
"""


def _kill_module_when(cluster: PgCluster, inv: Path, flag: Path, env: dict[str, str]) -> Any:
    from support.faults import module_process, start_playbook, wait_for

    job = start_playbook(REPO / "migrate.yml", inv, env={PASSWORD_VAR: cluster.app_password, **env})
    wait_for("the module to reach its sleep", lambda: flag.exists() or not job.running(), timeout=120)
    assert job.running(), job.wait().output[-3000:]
    os.kill(module_process(job), signal.SIGKILL)  # the module alone: its controller goes on to the recovery
    done = job.wait(timeout=180)
    assert_no_secret(done.output, [cluster])
    return done


def test_an_upgrade_module_killed_after_its_commit_is_reported_as_it_is(tmp_path: Path, cluster: PgCluster) -> None:
    marker = tmp_path / "committed"
    ini = write_project(
        tmp_path / "project",
        upgrades={
            "a000aaaa": '    op.create_table("t_a000", sa.Column("id", sa.Integer, primary_key=True))\n'
            '    if not op.get_context().as_sql:\n        open(%r, "w").close()' % str(marker)
        },
    )
    env_py = ini.parent / "env.py"
    env_py.write_text(SLEEPER_ENV + env_py.read_text())
    inv = inventory(tmp_path, cluster, ini, environment="prod")
    done = _kill_module_when(cluster, inv, Path(str(marker) + ".sleeping"), {"FLEET_TEST_SLEEP_AFTER": str(marker)})
    assert done.rc != 0
    text = one_line(done.output)
    assert "the upgrade module ended without a result after its commit: the database is at m000mmmm" in text, done.output[-3000:]
    assert "its ledger row says succeeded" in text and "object of type" not in text
    assert version_of(cluster, DB) == ["m000mmmm"], "the committed upgrade stays"
    assert [(r["action"], r["outcome"]) for r in ledger_rows(cluster)] == [("migrate", "succeeded")]


def test_an_upgrade_module_killed_before_its_commit_is_reported_as_it_is(tmp_path: Path, cluster: PgCluster) -> None:
    flag = tmp_path / "sleeping"
    ini = write_project(
        tmp_path / "project",
        upgrades={
            "b100bbbb": '    op.create_table("t_b100", sa.Column("id", sa.Integer, primary_key=True))\n'
            '    if not op.get_context().as_sql:\n        open(%r, "w").close()\n        __import__("time").sleep(60)' % str(flag)
        },
    )
    inv = inventory(tmp_path, cluster, ini)
    done = _kill_module_when(cluster, inv, flag, {})
    assert done.rc != 0
    text = one_line(done.output)
    assert "the upgrade module ended without a result before its commit: its transaction was rolled back" in text, done.output[-3000:]
    assert version_of(cluster, DB) == []

"""Issue 16 (points 2, 4, 5): refusals that used to pass in silence or speak in raw or wrong words.

Each case runs one module ad hoc through the real ``ansible`` CLI against db1 (a real PostgreSQL 15 cluster) or a
real SQLite file, and asserts a failed exit, the one line that names the thing, the reason and the fix, and that
nothing changed (the database's revision, or no file written).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from support.ansible_run import REPO, module
from support.pgcluster import PgCluster

from .test_bad_input import conn_args, fails_with
from .test_migrate_postgres import head_of, version_of

pytestmark = pytest.mark.slow

EQUITIES_INI = str(REPO / "migrations" / "equities" / "alembic.ini")
DB = "msgs_equities"
THIRD = "c3e5071a2d43"  # equities' third of five revisions


@pytest.fixture(scope="module")
def db1(pg_clusters: list[PgCluster]) -> Iterator[PgCluster]:
    cluster = pg_clusters[0]
    cluster.reset_database(DB)
    yield cluster
    cluster.drop_database(DB)


def at_revision(db1: PgCluster, target: str = "head") -> dict[str, Any]:
    """The module arguments for DB, which is brought to target first."""
    args = {"config": EQUITIES_INI, **conn_args(db1, DB)}
    db1.reset_database(DB)
    run, result = module("alembic_upgrade", {**args, "target": target})
    assert run.rc == 0, result
    return args


# -- point 2: relative targets below the current revision -------------------------------------------------------
@pytest.mark.parametrize("target", ["head-1", "head~2", "%s-1" % THIRD, "head-4"])
@pytest.mark.parametrize("flags", [(), ("--check",)], ids=["run", "check"])
def test_relative_target_below_the_current_revision_is_refused(db1: PgCluster, target: str, flags: tuple[str, ...]) -> None:
    args = at_revision(db1)
    run, result = module("alembic_upgrade", {**args, "target": target}, *flags)
    fails_with(result, run.rc, "target '%s' cannot be reached by upgrading from the current revision %s" % (target, head_of("equities")), "rollback.yml")
    assert result.get("changed") is not True, result
    assert version_of(db1, DB) == [head_of("equities")]


def test_relative_target_at_the_current_revision_is_nothing_to_do(db1: PgCluster) -> None:
    args = at_revision(db1, THIRD)
    run, result = module("alembic_upgrade", {**args, "target": "head-2"})  # head-2 is THIRD itself
    assert run.rc == 0 and result["changed"] is False, result
    run, result = module("alembic_upgrade", {**args, "target": "head-3"})
    fails_with(result, run.rc, "cannot be reached by upgrading from the current revision %s" % THIRD, "1 revision(s) behind it")
    assert version_of(db1, DB) == [THIRD]


@pytest.mark.parametrize("target", ["head-99", "head-5", "%s-9" % THIRD])
def test_upgrade_target_below_base_does_not_suggest_base(db1: PgCluster, target: str) -> None:
    args = at_revision(db1)
    run, result = module("alembic_upgrade", {**args, "target": target})
    message = fails_with(result, run.rc, "target '%s' goes past the end of the history" % target, "downgrade module")
    assert "head, or base" not in message and "or base." not in message, message
    assert version_of(db1, DB) == [head_of("equities")]


def test_upgrade_beyond_head_suggests_head(db1: PgCluster) -> None:
    args = at_revision(db1)
    run, result = module("alembic_upgrade", {**args, "target": "+1"})
    message = fails_with(result, run.rc, "target '+1' goes past the end of the history", "use a smaller step, or head.")
    assert "base" not in message, message


# -- point 4: an empty or missing password ----------------------------------------------------------------------
def test_empty_password_says_so(db1: PgCluster) -> None:
    db1.reset_database(DB)
    args = {"config": EQUITIES_INI, **conn_args(db1, DB, password="")}
    label = "migrator@127.0.0.1:%d/%s" % (db1.port, DB)
    for name in ("alembic_upgrade", "alembic_status"):
        run, result = module(name, args)
        message = fails_with(result, run.rc, "the password for %s is empty" % label, "set the password option", "database entry's password")
        assert "authentication failed" not in message, message
    assert version_of(db1, DB) == []


def test_missing_password_says_so(db1: PgCluster) -> None:
    args = {"config": EQUITIES_INI, "url": conn_args(db1, DB)["url"]}
    run, result = module("alembic_status", args)
    fails_with(result, run.rc, "no password was given for migrator@127.0.0.1:%d/%s" % (db1.port, DB), "set the password option")


def test_a_wrong_password_is_still_authentication_failed(db1: PgCluster) -> None:
    args = {"config": EQUITIES_INI, **conn_args(db1, DB, password="not-" + db1.app_password)}
    run, result = module("alembic_status", args)
    fails_with(result, run.rc, "authentication failed for user 'migrator'")


# -- point 5: weak or raw messages -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["alembic_status", "alembic_upgrade"])
def test_ledger_of_another_shape_names_the_missing_columns(db1: PgCluster, name: str) -> None:
    args = at_revision(db1, THIRD)
    db1.execute("drop table alembic_fleet_ledger", dbname=DB)
    db1.execute("create table alembic_fleet_ledger (id serial primary key, entry_id varchar(32), run_id varchar(64), action varchar(16))", dbname=DB)
    run, result = module(name, args)
    message = fails_with(result, run.rc, "the run ledger table alembic_fleet_ledger lacks the column(s) outcome, environment", "set ledger_table")
    assert "SELECT" not in message and "UPDATE" not in message and not message.startswith("unexpected"), message
    assert version_of(db1, DB) == [THIRD]


@pytest.mark.parametrize("name", ["alembic_status", "alembic_upgrade"])
def test_sqlite_path_that_is_a_directory(tmp_path: Path, name: str) -> None:
    path = tmp_path / "app.db"
    path.mkdir()
    run, result = module(name, {"config": EQUITIES_INI, "url": "sqlite:///%s" % path})
    fails_with(result, run.rc, "SQLite database path %s is a directory, not a file" % path, "point url at the database file")
    assert list(path.iterdir()) == []


def test_sqlite_whose_directory_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "app.db"
    run, result = module("alembic_status", {"config": EQUITIES_INI, "url": "sqlite:///%s" % path})
    if run.rc == 0:  # status reports a missing file without failing; what matters is no raw "unable to open"
        assert "unable to open" not in str(result), result
    else:
        fails_with(result, run.rc, str(path))
    assert not (tmp_path / "missing").exists()


def test_env_py_that_raises_is_named_with_its_line(db1: PgCluster, tmp_path: Path) -> None:
    project = tmp_path / "equities"
    shutil.copytree(REPO / "migrations" / "equities", project, ignore=shutil.ignore_patterns("__pycache__"))
    env_py = project / "env.py"
    lines = env_py.read_text().splitlines()
    env_py.write_text("\n".join([*lines, "raise RuntimeError('boom')", ""]))
    args = at_revision(db1, THIRD)
    for name in ("alembic_status", "alembic_upgrade"):
        run, result = module(name, {**args, "config": str(project / "alembic.ini")})
        message = fails_with(result, run.rc, "the project's env.py raised RuntimeError: boom", "(%s line %d)" % (env_py, len(lines) + 1), "fix it there")
        assert not message.startswith("unexpected"), message
    assert version_of(db1, DB) == [THIRD]


# A team's project imports packages of its own (geoalchemy2, sqlalchemy-utils, its models package): where one is not
# installed in the Python that runs the module, the message names it, the file that imports it and where to declare it.
@pytest.mark.parametrize("where", ["env.py", "revision"])
def test_a_package_the_project_imports_but_is_not_installed_is_named_with_where_to_declare_it(db1: PgCluster, tmp_path: Path, where: str) -> None:
    package = "geoalchemy2" if where == "env.py" else "sqlalchemy_utils"
    with pytest.raises(ImportError):  # not among our runtime requirements, nor installed by the tests
        __import__(package)
    project = tmp_path / "equities"
    shutil.copytree(REPO / "migrations" / "equities", project, ignore=shutil.ignore_patterns("__pycache__"))
    importer = project / "env.py" if where == "env.py" else sorted((project / "versions").glob("*.py"))[-1]
    lines = importer.read_text().splitlines()
    importer.write_text("\n".join([*lines, "import %s  # noqa" % package, ""]))
    args = at_revision(db1, THIRD)
    for name in ("alembic_status", "alembic_upgrade"):
        run, result = module(name, {**args, "config": str(project / "alembic.ini")})
        missing = "imports %s, which is not installed in the Python that runs the module" % package
        message = fails_with(result, run.rc, missing, "requirements.txt beside the project's alembic.ini")
        assert where != "env.py" or "(%s line %d)" % (importer, len(lines) + 1) in message, message
        assert where == "env.py" or str(project / "alembic.ini") in message, message
    assert version_of(db1, DB) == [THIRD]


def test_config_that_is_a_directory(db1: PgCluster) -> None:
    directory = REPO / "migrations" / "equities"
    run, result = module("alembic_status", {"config": str(directory), **conn_args(db1, DB)})
    message = fails_with(result, run.rc, "Alembic config %s is a directory, not a file" % directory, str(directory / "alembic.ini"))
    assert "does not exist" not in message, message


def test_url_given_as_a_list(db1: PgCluster) -> None:
    conn = conn_args(db1, DB)
    run, result = module("alembic_status", {"config": EQUITIES_INI, "url": [conn["url"]], "password": conn["password"]})
    message = fails_with(result, run.rc, "url is a list, not one URL", "give a single string")
    assert "dialect" not in message, message


@pytest.fixture()
def other_role(db1: PgCluster) -> Iterator[tuple[str, str]]:
    name, password = "fleet_msgs_other", "Other-" + db1.app_password[::-1]
    db1.execute("drop role if exists %s" % name)
    db1.execute("create role %s login password '%s'" % (name, password))
    yield name, password
    db1.execute("select pg_terminate_backend(pid) from pg_stat_activity where usename = %s", (name,))
    db1.execute("drop role if exists %s" % name)


def test_lock_held_by_another_users_tcp_session(db1: PgCluster, other_role: tuple[str, str]) -> None:
    from ansible.module_utils.fleet.core.common import parse_target
    from ansible.module_utils.fleet.state.lock import lock_key

    args = at_revision(db1, THIRD)
    user, password = other_role
    holder = psycopg2.connect(host="127.0.0.1", port=db1.port, dbname=DB, user=user, password=password)
    try:
        holder.autocommit = True
        with holder.cursor() as cur:
            cur.execute("select pg_advisory_lock(%s)", (lock_key(parse_target(args["url"], None)),))
            cur.execute("select pg_backend_pid()")
            pid = cur.fetchone()[0]
        run, result = module("alembic_upgrade", {**args, "lock_wait": 0})
        message = fails_with(result, run.rc, "locked by another alembic-fleet run (pid %d, user %s, from an address hidden from this user" % (pid, user))
        assert "local socket" not in message and "None" not in message, message
        assert "pg_read_all_stats" in message, message
    finally:
        holder.close()
    assert version_of(db1, DB) == [THIRD]


# -- point 1: negative waits and timeouts --------------------------------------------------------------------------
NEGATIVE_SECONDS = [
    # (module, option, value, the first words of the one line)
    ("alembic_upgrade", "lock_wait", -5, "lock_wait is -5.0: give 0 or more seconds to wait for another run's lock (0: do not wait)"),
    ("alembic_downgrade", "lock_wait", -0.5, "lock_wait is -0.5: give 0 or more seconds to wait for another run's lock"),
    ("alembic_upgrade", "connect_timeout", -1, "connect_timeout is -1: give 1 or more seconds to wait for the server (default 10)"),
    ("alembic_status", "connect_timeout", -30, "connect_timeout is -30: give 1 or more seconds to wait for the server"),
    ("db_backup", "connect_timeout", -2, "connect_timeout is -2: give 1 or more seconds to wait for the server"),
]


@pytest.mark.parametrize(("name", "option", "value", "first_words"), NEGATIVE_SECONDS, ids=["%s-%s" % (c[0], c[1]) for c in NEGATIVE_SECONDS])
def test_negative_wait_or_timeout_is_refused(db1: PgCluster, tmp_path: Path, name: str, option: str, value: float, first_words: str) -> None:
    args = at_revision(db1, THIRD)
    extra: dict[str, Any] = {"target": "head"} if name == "alembic_upgrade" else {"target": "-1"} if name == "alembic_downgrade" else {}
    if name == "db_backup":
        args = {k: v for k, v in args.items() if k != "config"}
        extra = {"backup_root": str(tmp_path / "backups"), "environment": "test", "host": "db1", "name": DB}
    run, result = module(name, {**args, **extra, option: value})
    message = fails_with(result, run.rc, first_words, "nothing was touched")
    assert message.startswith(first_words), message
    assert version_of(db1, DB) == [THIRD]
    assert not (tmp_path / "backups").exists()


def test_negative_lock_wait_on_sqlite_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "app.db"
    args = {"config": EQUITIES_INI, "url": "sqlite:///%s" % path}
    run, result = module("alembic_upgrade", {**args, "target": THIRD, "create_database": True})
    assert run.rc == 0, result
    run, result = module("alembic_upgrade", {**args, "target": "head", "lock_wait": -1})
    message = fails_with(result, run.rc, "lock_wait is -1.0: give 0 or more seconds", "nothing was touched")
    assert message.startswith("lock_wait is -1.0"), message
    with sqlite3.connect(path) as conn:
        assert [row[0] for row in conn.execute("select version_num from alembic_version")] == [THIRD]


ROLE_NEGATIVE = [
    # (-e variable=value, the one line that names it)
    ("fleet_lock_wait=-5", "fleet_lock_wait is -5: give 0 or more seconds to wait for another run's lock (0: do not wait)"),
    ("fleet_lock_timeout=-1", "fleet_lock_timeout is -1: give 0 or more seconds (0: no limit)"),
    ("fleet_preflight_wait=-10", "fleet_preflight_wait is -10: give 0 or more seconds"),
    ("fleet_lock_retries=-1", "fleet_lock_retries is -1: give 0 or more retries"),
]


@pytest.mark.parametrize(("variable", "line"), ROLE_NEGATIVE, ids=[case[0].split("=")[0] for case in ROLE_NEGATIVE])
@pytest.mark.parametrize("book", ["migrate.yml", "rollback.yml"])
def test_role_refuses_negative_waits_before_anything(tmp_path: Path, book: str, variable: str, line: str) -> None:
    from support.ansible_run import playbook

    dbdir = tmp_path / "db"
    env = {"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}  # each result on one line, its msg unwrapped
    run = playbook(REPO / book, REPO / "inventory" / "hosts.yml", "-l", "local", "-e", variable, "-e", "fleet_local_db_dir=%s" % dbdir, env=env)
    assert run.rc == 2, run.output[-3000:]
    failed = [json.loads(text.split(" => ", 1)[1]) for text in run.output.splitlines() if text.startswith("fatal: [localhost]: FAILED! => ")]
    assert len(failed) == 1, run.output[-3000:]
    message = failed[0]["msg"]
    assert message.startswith(line), message
    assert message.endswith("nothing was touched."), message
    assert not dbdir.exists(), "a database was created"


# -- a list cut short by a space -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("book", "variable"),
    [("rollback.yml", "fleet_only"), ("stamp.yml", "fleet_confirm"), ("release_lock.yml", "fleet_confirm")],
)
def test_a_list_cut_short_by_a_space_is_refused(tmp_path: Path, book: str, variable: str) -> None:
    """`-e "fleet_only=a, b"`: -e splits on spaces, the value is 'a,' and b is dropped without a word."""
    from support.ansible_run import playbook

    dbdir = tmp_path / "db"
    env = {"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    extra = ("-e", "fleet_stamp_target=head") if book == "stamp.yml" else ()
    argv = ("-l", "local", "-e", "%s=equities, algorithms" % variable, "-e", "fleet_local_db_dir=%s" % dbdir, *extra)
    run = playbook(REPO / book, REPO / "inventory" / "hosts.yml", *argv, env=env)
    assert run.rc == 2, run.output[-3000:]
    failed = [json.loads(text.split(" => ", 1)[1]) for text in run.output.splitlines() if text.startswith("fatal: [localhost]: FAILED! => ")]
    assert len(failed) == 1, run.output[-3000:]
    assert failed[0]["msg"].startswith("%s is 'equities,' ends with a comma: -e splits its key=value pairs on spaces" % variable), failed[0]["msg"]
    assert not dbdir.exists(), "a database was created"

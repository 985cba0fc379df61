"""Histories we did not write (issue 14, points 5, 6 and 10), through the modules on real SQLite.

Each case is a small project of its own written into tmp_path (tests/support/edge_projects.py): revision files in
a version location not called `versions`, a helper module beside alembic.ini, an ordinary env.py.

* point 5: `--check --diff` shows the SQL of every revision that renders offline and names the one that reads the
  database through op.get_bind();
* point 6: a failure is blamed on the revision file and line that failed (inside op.batch_alter_table too), or on
  the project's helper module or env.py that raised;
* point 10: an env.py whose target_metadata is an empty MetaData (kept for its naming convention) is not a model
  of the schema: verification passes at head and says once that nothing was compared.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ansible.module_utils.fleet.alembic.run import AlembicRun, explain_migration_failure, open_run
from support.ansible_run import module
from support.edge_projects import CREATE_ACCOUNT, DROP_ACCOUNT, EMPTY_METADATA, data_migration_chain, revision, write_project

pytestmark = pytest.mark.slow

SEED = """
op.create_table("account", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))
op.execute("insert into account (id, name) values (1, 'ann'), (2, 'bob'), (3, 'ann')")
"""
UNIQUE_NAMES = """
with op.batch_alter_table("account") as batch_op:
    batch_op.create_unique_constraint("uq_account_name", ["name"])
"""
HELPER = """
import sqlalchemy as sa


def require_unique_names(bind):
    if bind.execute(sa.text("select count(*) - count(distinct name) from account")).scalar():
        raise RuntimeError("account has duplicate names: merge them first")
"""


def sqlite_args(ini: Path, database: Path) -> dict[str, Any]:
    return {"config": str(ini), "url": "sqlite:///%s" % database, "create_database": True}


def tables(database: Path) -> set[str]:
    with sqlite3.connect(database) as conn:
        return {row[0] for row in conn.execute("select name from sqlite_master where type = 'table'")}


def versions(database: Path) -> list[str]:
    with sqlite3.connect(database) as conn:
        return [row[0] for row in conn.execute("select version_num from alembic_version")]


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


# -- point 5 ---------------------------------------------------------------------
def test_check_diff_shows_every_revision_that_renders_and_names_the_one_that_does_not(tmp_path: Path) -> None:
    ini = write_project(tmp_path / "proj", data_migration_chain())
    database = tmp_path / "db" / "app.db"
    run, result = module("alembic_upgrade", sqlite_args(ini, database), "--check", "--diff")
    assert run.rc == 0, run.output[-3000:]
    prepared = result["sql"]
    assert "-- revision bb02 (bb02_fix_names.py)" in run.output, "--diff prints the same SQL"
    assert "CREATE TABLE account" in prepared and "ALTER TABLE account ADD COLUMN email" in prepared
    assert "-- revision bb02 (bb02_fix_names.py) cannot run in offline mode (AttributeError: " in prepared
    assert "revision bb02 (bb02_fix_names.py) cannot run in offline mode" in result["sql_note"], result
    assert not database.exists(), "--check created the database"


# -- point 6 ---------------------------------------------------------------------
def test_a_failure_inside_batch_alter_table_names_the_revision_file_and_line(tmp_path: Path) -> None:
    ini = write_project(
        tmp_path / "proj",
        {"aa01_account": revision("aa01", None, SEED, DROP_ACCOUNT), "bb02_unique_names": revision("bb02", "aa01", UNIQUE_NAMES)},
    )
    database = tmp_path / "app.db"
    run, result = module("alembic_upgrade", {**sqlite_args(ini, database), "target": "aa01"})
    assert run.rc == 0, run.output[-3000:]
    run, result = module("alembic_upgrade", sqlite_args(ini, database))
    assert run.rc != 0, run.output[-3000:]
    line = line_of(tmp_path / "proj" / "migrations" / "revisions" / "bb02_unique_names.py", "batch_alter_table")
    assert "upgrade failed in bb02_unique_names.py line %d: IntegrityError: " % line in result["msg"], result["msg"]
    assert "contextlib" not in result["msg"]
    with sqlite3.connect(database) as conn:
        assert conn.execute("select count(*) from account").fetchone() == (3,), "the rows are kept"
    assert versions(database) == ["aa01"]


def failure_of(ini: Path, database: Path) -> tuple[BaseException, AlembicRun]:
    """Upgrade to head in this process and return what it raised, with the run (as the upgrade operation has them)."""
    run = open_run({"config": str(ini), "url": "sqlite:///%s" % database, "password": None})
    sqlite3.connect(database).close()
    with run.session():
        with pytest.raises(Exception) as raised:
            run.migrate("upgrade", run.parse("head", "upgrade"))
    return raised.value, run


def test_a_failure_in_a_helper_module_names_the_revision_and_the_helper(tmp_path: Path) -> None:
    check = "from fleet_helpers import require_unique_names\nrequire_unique_names(op.get_bind())"
    ini = write_project(
        tmp_path / "proj",
        {"aa01_account": revision("aa01", None, SEED, DROP_ACCOUNT), "bb02_check": revision("bb02", "aa01", check)},
        files={"fleet_helpers.py": HELPER},
    )
    exc, run = failure_of(ini, tmp_path / "app.db")
    message = explain_migration_failure(exc, run.target, "upgrade", run)
    revision_line = line_of(tmp_path / "proj" / "migrations" / "revisions" / "bb02_check.py", "require_unique_names(op")
    helper_line = line_of(tmp_path / "proj" / "fleet_helpers.py", "raise RuntimeError")
    assert message == (
        "upgrade failed in bb02_check.py line %d (raised in fleet_helpers.py line %d): RuntimeError: account has duplicate names: merge them first"
        % (revision_line, helper_line)
    )


def test_a_failure_raised_by_env_py_names_env_py(tmp_path: Path) -> None:
    refuse = 'target_metadata = None\n\n\ndef refuse(**kw):\n    raise RuntimeError("env.py refuses " + kw["step"].up_revision_id)\n'
    ini = write_project(
        tmp_path / "proj", {"aa01_account": revision("aa01", None, CREATE_ACCOUNT, DROP_ACCOUNT)}, metadata=refuse, configure=", on_version_apply=[refuse]"
    )
    exc, run = failure_of(ini, tmp_path / "app.db")
    line = line_of(tmp_path / "proj" / "migrations" / "env.py", "raise RuntimeError")
    assert explain_migration_failure(exc, run.target, "upgrade", run) == "upgrade failed in env.py line %d: RuntimeError: env.py refuses aa01" % line


# -- point 10 --------------------------------------------------------------------
def test_an_empty_target_metadata_is_no_model_of_the_schema(tmp_path: Path) -> None:
    ini = write_project(tmp_path / "proj", {"aa01_account": revision("aa01", None, CREATE_ACCOUNT, DROP_ACCOUNT)}, metadata=EMPTY_METADATA)
    database = tmp_path / "app.db"
    run, result = module("alembic_upgrade", sqlite_args(ini, database))
    assert run.rc == 0, run.output[-3000:]
    assert versions(database) == ["aa01"] and "account" in tables(database)

    args = {"config": str(ini), "url": "sqlite:///%s" % database}
    run, result = module("alembic_verify", args)
    assert run.rc == 0, run.output[-3000:]
    assert result["schema_compared"] is False
    assert result["schema_note"] == "env.py's target_metadata has no tables, so the schema was not compared with models"

    run, result = module("alembic_status", {**args, "drift": True})
    assert run.rc == 0, run.output[-3000:]
    model_drift = result["model_drift"]
    assert model_drift["checked"] is False and model_drift["differences"] == []
    assert "has no tables" in model_drift["note"]

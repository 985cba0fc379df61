"""Any ordinary Alembic project works, with its env.py unmodified.

Three layouts other teams really use, each against real PostgreSQL with a
password (so the password has to reach an env.py that builds its own engine):

* Alembic's stock ``generic`` env.py: ``engine_from_config(sqlalchemy.url)``;
* the trading team's guide: ``create_engine(os.environ["DATABASE_URL"])``;
* the analytics team's guide: ``alembic.ini`` under ``src/database/equities/``,
  ``script_location`` relative to the *project root*, and env.py importing
  ``src.database.tables`` (which only works from the project root).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support.ansible_run import REPO, module
from support.pgcluster import PgCluster

from .test_bad_input import conn_args
from .test_migrate_postgres import assert_no_secret, head_of, tables_of, version_of

pytestmark = pytest.mark.slow

STOCK_ENV = """
from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, pool

import equities_models

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)
target_metadata = equities_models.Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""

DATABASE_URL_ENV = STOCK_ENV.replace(
    'connectable = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool)',
    'import os\n    from sqlalchemy import create_engine\n    connectable = create_engine(os.environ["DATABASE_URL"], poolclass=pool.NullPool)',
).replace('url=config.get_main_option("sqlalchemy.url")', 'url=__import__("os").environ["DATABASE_URL"]')

INI = """[alembic]
script_location = {script_location}
prepend_sys_path = {prepend}
path_separator = os
sqlalchemy.url = postgresql://nobody@127.0.0.1:1/not_this_one

[loggers]
keys = root
[handlers]
keys = console
[formatters]
keys = generic
[logger_root]
level = WARNING
handlers = console
[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic
[formatter_generic]
format = %(levelname)s %(message)s
"""


def flat_project(root: Path, env_py: str) -> Path:
    """alembic.ini beside env.py, relative script_location (run-from-here style)."""
    source = REPO / "migrations" / "equities"
    shutil.copytree(source / "versions", root / "versions", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(source / "equities_models.py", root / "equities_models.py")
    shutil.copy(source / "script.py.mako", root / "script.py.mako")
    (root / "env.py").write_text(env_py)
    (root / "alembic.ini").write_text(INI.format(script_location=".", prepend="."))
    return root / "alembic.ini"


def project_root_layout(root: Path) -> Path:
    """The analytics guide's tree: run from the project root or nothing imports."""
    source = REPO / "migrations" / "equities"
    migrations = root / "src" / "database" / "migrations"
    tables = root / "src" / "database" / "tables"
    shutil.copytree(source / "versions", migrations / "versions", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(source / "script.py.mako", migrations / "script.py.mako")
    tables.mkdir(parents=True)
    for package in (root / "src", root / "src" / "database"):
        (package / "__init__.py").write_text("")
    (tables / "__init__.py").write_text((source / "equities_models.py").read_text())
    (migrations / "env.py").write_text(STOCK_ENV.replace("import equities_models", "from src.database import tables as equities_models"))
    ini = root / "src" / "database" / "equities" / "alembic.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(INI.format(script_location="src/database/migrations", prepend="."))
    return ini


@pytest.mark.parametrize("style", ["stock_generic_env", "database_url_env", "guide_project_root"])
def test_unmodified_env_py_reaches_the_target_with_its_password(style: str, fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    extra: dict[str, str] = {}
    if style == "stock_generic_env":
        ini = flat_project(tmp_path / "proj", STOCK_ENV)
    elif style == "database_url_env":
        ini = flat_project(tmp_path / "proj", DATABASE_URL_ENV)
    else:
        ini = project_root_layout(tmp_path / "proj")
        extra["project_dir"] = str(tmp_path / "proj")
    args = {"config": str(ini), **extra, **conn_args(db1)}

    run, result = module("alembic_upgrade", args, "--check", "--diff")
    assert run.rc == 0, run.output[-2000:]
    assert "CREATE TABLE companies" in result["sql"] and "CREATE TABLE companies" in run.output
    assert tables_of(db1, "equities") == set()

    run, result = module("alembic_upgrade", args)
    assert run.rc == 0, run.output[-2000:]
    assert result["changed"] is True
    assert version_of(db1, "equities") == [head_of("equities")]

    run, result = module("alembic_verify", args)
    assert run.rc == 0, run.output[-2000:]
    assert result["schema_compared"] is True and result["schema_differences"] == []
    assert_no_secret(run.output, fresh_pg)

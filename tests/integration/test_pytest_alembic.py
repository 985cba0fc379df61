"""pytest-alembic's standard tests for both bundled Alembic projects, on PostgreSQL 15.

The four built-in checks the guides' CI asks for (``test_single_head_revision``,
``test_upgrade``, ``test_model_definitions_match_ddl``,
``test_up_down_consistency``) are imported from ``pytest_alembic.tests``, as the
pytest-alembic docs show, and run once per project: the ``project`` fixture is
parametrized, and this module's ``alembic_config`` / ``alembic_engine`` override
the plugin's defaults for the plugin's ``alembic_runner`` fixture.  Each test gets
a freshly (re)created database named after the project on the suite's first
throwaway cluster (``pg_clusters``).

Nothing else in the suite is touched by the plugin: pytest.ini sets
``pytest_alembic_enabled`` empty, so its collector (the ``--test-alembic``
insertion of the built-in tests into tests/conftest.py, which crashes under
pytest 9 in 0.12.1) is never registered; its fixtures and marker still are.

Connection hand-off: pytest-alembic puts whatever ``alembic_engine`` yields into
``config.attributes["connection"]``.  Its docs expect that to be an *Engine* and
env.py to call ``connectable.connect()``; the bundled env.py files instead
require a live ``sqlalchemy.engine.Connection`` there and raise ``TypeError`` for
an Engine.  pytest-alembic also accepts a Connection as its connectable, so
``alembic_engine`` below yields one; env.py runs every migration on it inside its
own ``context.begin_transaction()``, which commits.

``configure_logger=False`` keeps env.py from running ``logging.config.fileConfig``
in the pytest process (which would replace the root logger's handlers).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import alembic.config
import pytest
import pytest_alembic
import sqlalchemy as sa
from pytest_alembic.config import Config as PytestAlembicConfig
from pytest_alembic.plugin.error import AlembicTestFailure

# Imported into this module so pytest collects them here (pytest-alembic docs).
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from sqlalchemy.engine import Connection

from support.pgcluster import PgCluster

from .conftest import PROJECTS

pytestmark = pytest.mark.slow


def _alembic_config(ini: Path) -> alembic.config.Config:
    config = alembic.config.Config(str(ini))
    config.attributes["configure_logger"] = False
    return config


@contextlib.contextmanager
def _fresh_connection(cluster: PgCluster, dbname: str) -> Iterator[Connection]:
    """A Connection (as the app role) to ``dbname``, dropped and recreated first."""
    cluster.reset_database(dbname)
    engine = sa.create_engine(
        cluster.url(dbname),
        connect_args={"password": cluster.app_password},
        poolclass=sa.pool.NullPool,
    )
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


# ------------------------------------------------------------------ fixtures
@pytest.fixture(params=list(PROJECTS))
def project(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture()
def alembic_config(project: str) -> alembic.config.Config:
    """The project's own alembic.ini (script_location and target_metadata come from it / env.py)."""
    return _alembic_config(PROJECTS[project])


@pytest.fixture()
def alembic_engine(project: str, pg_clusters: list[PgCluster]) -> Iterator[Connection]:
    """A fresh, empty database for the project; a Connection, as env.py requires (see module doc)."""
    with _fresh_connection(pg_clusters[0], project) as connection:
        yield connection


# ------------------------------------------- the checks can actually fail
EQUITIES_HEAD = "e5f7293c4a65"


def _drop_model_column(root: Path) -> None:
    models = root / "equities_models.py"
    text = models.read_text()
    new = re.sub(r"\n    sentiment_score: Mapped\[.*?\)\n", "\n", text, count=1, flags=re.S)
    assert new != text, "equities_models.py no longer has Company.sentiment_score"
    models.write_text(new)


def _add_second_head(root: Path) -> None:
    (root / "versions" / "20250301_0000_f0f0f0f0f0f0_second_head.py").write_text(
        '"""A second head branching off d4f6182b3e54 (as after an unresolved merge)."""\n'
        'revision = "f0f0f0f0f0f0"\n'
        'down_revision = "d4f6182b3e54"\n'
        "branch_labels = None\n"
        "depends_on = None\n\n\n"
        "def upgrade() -> None:\n    pass\n\n\n"
        "def downgrade() -> None:\n    pass\n"
    )


def _revision_file(root: Path, rev: str) -> Path:
    (path,) = (root / "versions").glob(f"*_{rev}_*.py")
    return path


def _break_upgrade(root: Path) -> None:
    path = _revision_file(root, EQUITIES_HEAD)
    text = path.read_text()
    new = text.replace('batch_alter_table("companies"', 'batch_alter_table("no_such_table"', 1)
    assert new != text
    path.write_text(new)


def _break_downgrade(root: Path) -> None:
    path = _revision_file(root, "d4f6182b3e54")
    text = path.read_text()
    new = text.replace('drop_column("stock_symbol_type")', 'drop_column("no_such_column")', 1)
    assert new != text
    path.write_text(new)


# check name: (mutation of an equities copy, the check, expected exception, fragments of its message)
BROKEN: dict[str, tuple[Callable[[Path], None], Callable[[Any], None], type[BaseException], list[str]]] = {
    "model_definitions_match_ddl": (
        _drop_model_column,
        test_model_definitions_match_ddl,
        AlembicTestFailure,
        ["out of sync", "op.drop_column('companies', 'sentiment_score')"],
    ),
    "single_head_revision": (
        _add_second_head,
        test_single_head_revision,
        AlembicTestFailure,
        ["Expected 1 head revision, found 2", "f0f0f0f0f0f0", EQUITIES_HEAD],
    ),
    # pytest-alembic's test_upgrade wraps only alembic CommandErrors in an
    # AlembicTestFailure; a migration failing in the database surfaces as is.
    "upgrade": (
        _break_upgrade,
        test_upgrade,
        sa.exc.ProgrammingError,
        ['relation "no_such_table" does not exist'],
    ),
    "up_down_consistency": (
        _break_downgrade,
        test_up_down_consistency,
        AlembicTestFailure,
        ["Failed to downgrade", "Failing Revision", "c3e5071a2d43", 'column "no_such_column"'],
    ),
}


@pytest.mark.parametrize("check", list(BROKEN))
def test_standard_check_fails_on_a_broken_equities_copy(check: str, tmp_path: Path, pg_clusters: list[PgCluster], monkeypatch: pytest.MonkeyPatch) -> None:
    mutate, check_fn, error, fragments = BROKEN[check]
    root = tmp_path / "equities"
    shutil.copytree(PROJECTS["equities"].parent, root, ignore=shutil.ignore_patterns("__pycache__"))
    mutate(root)

    # env.py does `import equities_models`: make it import the copy's module, not
    # a cached original, and leave neither the copy's module nor its directory
    # (prepended to sys.path by env.py and alembic) behind for other tests.
    # setitem + delitem: undone in reverse, this restores the original entry or,
    # if there was none, removes the copy's.
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setitem(sys.modules, "equities_models", None)
    monkeypatch.delitem(sys.modules, "equities_models")

    config = PytestAlembicConfig.from_raw_config(_alembic_config(root / "alembic.ini"))
    with _fresh_connection(pg_clusters[0], "equities") as connection:
        with pytest_alembic.runner(config=config, engine=connection) as runner:
            assert Path(runner.command_executor.script.dir).resolve() == root.resolve()
            with pytest.raises(error) as excinfo:
                check_fn(runner)
    models = sys.modules.get("equities_models")  # None if the check never ran env.py
    assert models is None or models.__file__ == str(root / "equities_models.py")
    message = str(excinfo.value)
    for fragment in fragments:
        assert fragment in message, message

"""End-to-end checks of the Alembic projects bundled under ``migrations/``.

Alembic is driven in-process through its Python API (``alembic.command``),
never through the ``alembic`` CLI, against a fresh SQLite file per test.  The
tests run from an unrelated working directory to prove that each project's
``env.py`` does not depend on the cwd, and both projects are exercised in the
same pytest process (their models modules have unique names).
"""

from __future__ import annotations

import importlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Engine, MetaData, create_engine, inspect
from sqlalchemy.pool import NullPool

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"

VERSION_FILE_RE = re.compile(r"^\d{8}_\d{4}_[0-9a-f]{12}_[a-z0-9_]+\.py$")

PG_OFFLINE_URL = "postgresql://x@localhost/db"


@dataclass(frozen=True)
class Project:
    name: str
    models_module: str
    tables: frozenset[str]
    min_revisions: int = 4

    @property
    def directory(self) -> Path:
        return MIGRATIONS_DIR / self.name

    @property
    def ini(self) -> Path:
        return self.directory / "alembic.ini"


PROJECTS: tuple[Project, ...] = (
    Project(
        name="equities",
        models_module="equities_models",
        tables=frozenset({"companies", "daily_ohlcv"}),
    ),
    Project(
        name="algorithms",
        models_module="algorithms_models",
        tables=frozenset({"strategies", "strategy_parameters", "signals", "backtest_runs"}),
    ),
)


@pytest.fixture(params=PROJECTS, ids=[p.name for p in PROJECTS])
def project(request: pytest.FixtureRequest) -> Project:
    param: Project = request.param
    return param


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Run from somewhere unrelated to the repo and its ini files.
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    # Never let a developer's DATABASE_URL leak into the tests.
    monkeypatch.delenv("DATABASE_URL", raising=False)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = create_engine(f"sqlite:///{tmp_path / 'test.db'}", poolclass=NullPool)
    try:
        yield eng
    finally:
        eng.dispose()


def make_config(project: Project, output_buffer: io.StringIO | None = None) -> Config:
    cfg = Config(file_=str(project.ini), stdout=io.StringIO(), output_buffer=output_buffer)
    cfg.attributes["configure_logger"] = False
    return cfg


def models(project: Project, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(project.directory))
    return importlib.import_module(project.models_module)


def revisions_base_to_head(cfg: Config) -> list[Script]:
    script = ScriptDirectory.from_config(cfg)
    return list(reversed(list(script.walk_revisions("base", "heads"))))


def upgrade(cfg: Config, engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        try:
            command.upgrade(cfg, revision)
        finally:
            del cfg.attributes["connection"]


def downgrade(cfg: Config, engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        try:
            command.downgrade(cfg, revision)
        finally:
            del cfg.attributes["connection"]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def user_tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def schema_diff(engine: Engine, metadata: MetaData) -> list[Any]:
    with engine.connect() as connection:
        mc = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(mc, metadata))


def test_single_linear_history(project: Project) -> None:
    cfg = make_config(project)
    script = ScriptDirectory.from_config(cfg)

    assert len(script.get_heads()) == 1
    assert len(script.get_bases()) == 1

    revisions = revisions_base_to_head(cfg)
    assert len(revisions) >= project.min_revisions
    previous: str | None = None
    for rev in revisions:
        assert re.fullmatch(r"[0-9a-f]{12}", rev.revision)
        assert rev.down_revision == previous, "history must be linear"
        assert rev.doc and rev.doc.strip(), f"{rev.revision} has no message"
        previous = rev.revision
    assert previous == script.get_current_head()


def test_version_file_names(project: Project) -> None:
    files = sorted(p.name for p in (project.directory / "versions").iterdir() if p.is_file())
    assert files, "no revision files"
    for name in files:
        assert VERSION_FILE_RE.match(name), name

    # The rev embedded in each file name is the revision the file declares.
    cfg = make_config(project)
    for rev in revisions_base_to_head(cfg):
        assert rev.path is not None
        assert Path(rev.path).name.split("_")[2] == rev.revision


def test_upgrade_head_matches_models(project: Project, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config(project)
    upgrade(cfg, engine, "head")

    assert user_tables(engine) == project.tables
    assert current_revision(engine) == ScriptDirectory.from_config(cfg).get_current_head()

    metadata = models(project, monkeypatch).Base.metadata
    assert set(metadata.tables) == project.tables
    assert schema_diff(engine, metadata) == []


def test_downgrade_base_removes_everything(project: Project, engine: Engine) -> None:
    cfg = make_config(project)
    upgrade(cfg, engine, "head")
    downgrade(cfg, engine, "base")

    assert user_tables(engine) == set()
    assert current_revision(engine) is None


def test_step_by_step_up_and_down(project: Project, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config(project)
    revisions = revisions_base_to_head(cfg)

    seen_tables: list[set[str]] = [user_tables(engine)]
    for rev in revisions:
        upgrade(cfg, engine, "+1")
        assert current_revision(engine) == rev.revision
        seen_tables.append(user_tables(engine))
    assert seen_tables[-1] == project.tables

    # Walk back down, checking each step restores the previous table set.
    for index in range(len(revisions) - 1, -1, -1):
        downgrade(cfg, engine, "-1")
        expected = revisions[index - 1].revision if index > 0 else None
        assert current_revision(engine) == expected
        assert user_tables(engine) == seen_tables[index]

    # And every single revision survives a down/up round trip at its position.
    for rev in revisions:
        upgrade(cfg, engine, rev.revision)
        downgrade(cfg, engine, "-1")
        upgrade(cfg, engine, "+1")
        assert current_revision(engine) == rev.revision
    # SQLite downgrades rebuild tables (batch "move and copy"); make sure the
    # rebuilt tables still match the models exactly.
    assert schema_diff(engine, models(project, monkeypatch).Base.metadata) == []


def test_offline_sql_for_postgresql(project: Project) -> None:
    buffer = io.StringIO()
    cfg = make_config(project, output_buffer=buffer)
    cfg.attributes["url"] = PG_OFFLINE_URL
    command.upgrade(cfg, "base:head", sql=True)
    sql = buffer.getvalue()

    assert "CREATE TABLE alembic_version" in sql
    for table in project.tables:
        assert re.search(rf"CREATE TABLE {table}\b", sql), table
    # PostgreSQL-specific rendering, not SQLite's.
    assert "BEGIN;" in sql and "COMMIT;" in sql
    assert "now()" in sql

    down_buffer = io.StringIO()
    cfg = make_config(project, output_buffer=down_buffer)
    cfg.attributes["url"] = PG_OFFLINE_URL
    command.downgrade(cfg, "head:base", sql=True)
    down_sql = down_buffer.getvalue()
    for table in project.tables:
        assert re.search(rf"DROP TABLE {table}\b", down_sql), table


def test_url_precedence(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a shared connection: attributes["url"] beats $DATABASE_URL."""
    from_attr = tmp_path / "from_attribute.db"
    from_env = tmp_path / "from_env.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{from_env}")

    cfg = make_config(project)
    cfg.attributes["url"] = f"sqlite:///{from_attr}"
    command.upgrade(cfg, "head")
    assert from_attr.exists()
    assert not from_env.exists()

    cfg = make_config(project)
    command.upgrade(cfg, "head")
    assert from_env.exists()

    for path in (from_attr, from_env):
        eng = create_engine(f"sqlite:///{path}", poolclass=NullPool)
        try:
            assert user_tables(eng) == project.tables
        finally:
            eng.dispose()

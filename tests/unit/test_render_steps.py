"""The review renders a plan's SQL in one offline pass and cuts it per revision: the pieces must be exactly what
rendering each revision on its own gives (squawk's findings and line numbers depend on it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible.module_utils.fleet.alembic.run import open_run
from support.ansible_run import REPO
from support.edge_projects import data_migration_chain, write_project

PROJECTS = [
    REPO / "migrations" / "equities" / "alembic.ini",
    REPO / "migrations" / "algorithms" / "alembic.ini",
    REPO / "tests" / "fixtures" / "hazards" / "alembic.ini",
]


@pytest.mark.parametrize("url", ["postgresql://migrator@127.0.0.1:1/offline", "sqlite:////nonexistent/offline.db"])
@pytest.mark.parametrize("ini", PROJECTS, ids=lambda p: p.parent.name)
def test_one_pass_equals_rendering_each_revision_alone(ini: Path, url: str) -> None:
    run = open_run({"config": str(ini), "url": url, "password": None})
    steps = run.plan("upgrade", run.parse("head", "upgrade"), [])
    assert len(steps) > 1
    alone = [run.render_sql("upgrade", run.parse(step.revision, "upgrade"), list(step.down_revision)) for step in steps]
    assert same_sql(run.render_steps_sql(steps), alone)
    # From a revision in the middle, too.
    rest = steps[2:]
    alone_rest = alone[2:]
    assert same_sql(run.render_steps_sql(rest), alone_rest)


def same_sql(rendered: list[tuple[str | None, str | None]], alone: list[tuple[str | None, str | None]]) -> bool:
    """The same SQL per step, and a note exactly where there is none; the one pass names the revision that
    could not render where rendering it alone can only say "a revision after X"."""
    return [sql for sql, _ in rendered] == [sql for sql, _ in alone] and [note is None for _, note in rendered] == [note is None for _, note in alone]


@pytest.mark.parametrize("url", ["postgresql://migrator@127.0.0.1:1/offline", "sqlite:////nonexistent/offline.db"])
def test_one_pass_equals_each_revision_alone_with_a_transaction_per_migration(tmp_path: Path, url: str) -> None:
    """env.py with transaction_per_migration=True frames every revision in its own BEGIN/COMMIT: the pieces
    are cut before each BEGIN, not wrapped in the pass's framing again."""
    chain = {name: source for name, source in data_migration_chain().items() if not name.startswith("bb02")}
    chain["cc03_email"] = chain["cc03_email"].replace("down_revision = 'bb02'", "down_revision = 'aa01'")
    ini = write_project(tmp_path, chain, offline=", transaction_per_migration=True")
    run = open_run({"config": str(ini), "url": url, "password": None})
    with run.session():
        steps = run.plan("upgrade", run.parse("head", "upgrade"), [])
        alone = [run.render_sql("upgrade", run.parse(step.revision, "upgrade"), list(step.down_revision)) for step in steps]
        assert len(steps) == 2 and all(sql for sql, _ in alone)
        assert run.render_steps_sql(steps) == alone


FORKED = REPO / "tests" / "fixtures" / "histories" / "forked" / "alembic.ini"


def test_a_plan_with_branches_and_a_merge_is_rendered_run_by_run_and_names_each_unrenderable_revision() -> None:
    """A real history's plan is not one line: it takes up two branches and merges them. Each linear run is one
    offline pass (the merge alone), so every piece is still what its revision renders alone, and a revision that
    reads the database through op.get_bind() is named itself, not as "a revision after" its parent."""
    run = open_run({"config": str(FORKED), "url": "postgresql://migrator@127.0.0.1:1/offline", "password": None})
    steps = run.plan("upgrade", run.parse("heads", "upgrade"), [])
    assert any(len(step.down_revision) > 1 for step in steps)  # the merge
    assert any(tuple(step.down_revision) != (steps[i - 1].revision,) for i, step in enumerate(steps) if i)  # a branch taken up
    rendered = run.render_steps_sql(steps)
    alone = [run.render_sql("upgrade", run.parse(step.revision, "upgrade"), list(step.down_revision)) for step in steps]
    assert same_sql(rendered, alone)
    unrenderable = [(step, note) for step, (sql, note) in zip(steps, rendered, strict=True) if sql is None and len(step.down_revision) == 1]
    assert unrenderable, "the fixture's data migrations read the database through op.get_bind()"
    for step, note in unrenderable:
        assert note is not None and ("revision %s (" % step.revision) in note, note

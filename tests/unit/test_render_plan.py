"""`--check --diff` shows the SQL of a whole plan even when a revision cannot render offline (issue 14, point 5).

A revision that reads the database through op.get_bind() cannot run in offline mode; the SQL of every other
revision is still shown, and that one is named (id, file, why) in an SQL comment and a note. Branches and merges
render from the heads the plan really starts at, upgrades and downgrades alike. No database is needed: offline
mode only renders.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible.module_utils.fleet.alembic.run import AlembicRun, open_run
from support.ansible_run import REPO
from support.edge_projects import branch_and_merge, data_migration_chain, write_project

URLS = ["sqlite:////nonexistent/offline.db", "postgresql://migrator@127.0.0.1:1/offline"]
BUNDLED = [
    REPO / "migrations" / "equities" / "alembic.ini",
    REPO / "migrations" / "algorithms" / "alembic.ini",
    REPO / "tests" / "fixtures" / "hazards" / "alembic.ini",
]


def opened(ini: Path, url: str) -> Iterator[AlembicRun]:
    run = open_run({"config": str(ini), "url": url, "password": None})
    with run.session():
        yield run


@pytest.fixture(params=URLS, ids=["sqlite", "postgresql"])
def chain(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AlembicRun]:
    yield from opened(write_project(tmp_path, data_migration_chain()), request.param)


@pytest.fixture(params=URLS, ids=["sqlite", "postgresql"])
def branches(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AlembicRun]:
    yield from opened(write_project(tmp_path, branch_and_merge()), request.param)


def comment_lines(sql: str) -> list[str]:
    return [line for line in sql.splitlines() if line.startswith("-- revision ")]


def test_the_plan_shows_every_renderable_revision_and_names_the_one_that_is_not(chain: AlembicRun) -> None:
    steps = chain.plan("upgrade", chain.parse("head", "upgrade"), [])
    sql, notes = chain.render_plan_sql(steps, [])
    assert "CREATE TABLE account" in sql
    assert "ALTER TABLE account ADD COLUMN email VARCHAR(80)" in sql and "CREATE INDEX ix_account_email" in sql
    assert "select id, name from account" not in sql, "half of bb02's SQL must not read as all of it"
    [comment] = comment_lines(sql)
    assert comment.startswith("-- revision bb02 (bb02_fix_names.py) cannot run in offline mode (AttributeError: ")
    assert "op.get_bind()" in comment
    # The version table still moves through bb02: the rest of the script is what Alembic would run.
    assert "UPDATE alembic_version SET version_num='bb02'" in sql and "UPDATE alembic_version SET version_num='cc03'" in sql
    assert sql.index("CREATE TABLE account") < sql.index(comment) < sql.index("ADD COLUMN email")
    [note] = notes
    assert "bb02" in note and "bb02_fix_names.py" in note and "AttributeError" in note and "\n" not in note


def test_a_downgrade_plan_names_the_revision_that_cannot_render(chain: AlembicRun) -> None:
    steps = chain.plan("downgrade", chain.parse("base", "downgrade"), ["cc03"])
    sql, notes = chain.render_plan_sql(steps, ["cc03"])
    assert "DROP INDEX" in sql and "ix_account_email" in sql and "DROP TABLE account" in sql
    [comment] = comment_lines(sql)
    assert comment.startswith("-- revision bb02 (bb02_fix_names.py) cannot run in offline mode (AttributeError: ") and "scalar" in comment
    assert len(notes) == 1


def test_the_start_is_read_from_the_steps_when_not_given(chain: AlembicRun) -> None:
    steps = chain.plan("upgrade", chain.parse("head", "upgrade"), ["aa01"])
    assert chain.render_plan_sql(steps) == chain.render_plan_sql(steps, ["aa01"])
    assert "CREATE TABLE alembic_version" not in chain.render_plan_sql(steps)[0]


@pytest.mark.parametrize("url", URLS, ids=["sqlite", "postgresql"])
@pytest.mark.parametrize("ini", BUNDLED, ids=lambda p: p.parent.name)
def test_the_plan_is_alembics_own_sql_with_the_unrenderable_revisions_named(ini: Path, url: str) -> None:
    for run in opened(ini, url):
        steps = run.plan("upgrade", run.parse("head", "upgrade"), [])
        head = [steps[-1].revision]
        back = run.plan("downgrade", run.parse("base", "downgrade"), head)
        for plan, current, whole in (
            (steps, [], run.render_sql("upgrade", run.parse("head", "upgrade"), [])),
            (back, head, run.render_sql("downgrade", run.parse("base", "downgrade"), head)),
        ):
            sql, notes = run.render_plan_sql(plan, current)
            if whole[0] is not None:  # every revision renders: exactly what Alembic's --sql prints
                assert (sql, notes) == (whole[0], [])
                continue
            # Alembic's --sql gives nothing at all; here each revision that cannot render is named, the rest shown.
            assert notes and len(comment_lines(sql)) == len(notes)
            assert sql.count("-- Running ") == len(plan)


def test_a_branch_point_and_a_merge_render_from_the_real_heads(branches: AlembicRun) -> None:
    steps = branches.plan("upgrade", branches.parse("heads", "upgrade"), [])
    assert [step.revision for step in steps][-1] == "ee05"
    sql, notes = branches.render_plan_sql(steps, [])
    assert "ADD COLUMN email" in sql and "CREATE TABLE audit" in sql and len(notes) == 1
    # The second branch is a new row of the version table, and the merge folds the two rows into one.
    second = steps[3].revision
    assert "INSERT INTO alembic_version (version_num) VALUES ('%s')" % second in sql
    merge = sql[sql.index("-- Running upgrade cc03, dd04 -> ee05") :]
    assert "DELETE FROM alembic_version" in merge and "version_num='ee05'" in merge


def test_a_merge_alone_renders_from_several_heads(branches: AlembicRun) -> None:
    """command.upgrade(cfg, "a:b", sql=True) takes one start; Alembic's offline context takes several."""
    steps = branches.plan("upgrade", branches.parse("heads", "upgrade"), ["cc03", "dd04"])
    assert [step.revision for step in steps] == ["ee05"]
    sql, notes = branches.render_plan_sql(steps, ["cc03", "dd04"])
    assert notes == []
    assert "DELETE FROM alembic_version WHERE alembic_version.version_num = 'cc03'" in sql
    assert "UPDATE alembic_version SET version_num='ee05' WHERE alembic_version.version_num = 'dd04'" in sql
    assert branches.render_plan_sql(steps) == (sql, notes)
    rendered, note = branches.render_sql("upgrade", branches.parse("heads", "upgrade"), ["cc03", "dd04"])
    assert (rendered, note) == (sql, None)


def test_a_downgrade_through_a_merge_and_both_branches(branches: AlembicRun) -> None:
    steps = branches.plan("downgrade", branches.parse("bb02", "downgrade"), ["ee05"])
    assert {step.revision for step in steps} == {"ee05", "cc03", "dd04"}
    sql, notes = branches.render_plan_sql(steps, ["ee05"])
    assert notes == []
    assert "DROP TABLE audit" in sql and "DROP COLUMN email" in sql
    assert "-- Running downgrade ee05 -> cc03, dd04" in sql


def test_the_review_renders_a_merge_step_too(branches: AlembicRun) -> None:
    steps = branches.plan("upgrade", branches.parse("heads", "upgrade"), [])
    rendered = branches.render_steps_sql(steps)
    sql, note = rendered[-1]
    assert note is None and sql is not None and "version_num='ee05'" in sql


def test_the_review_still_gets_every_other_revision_when_one_cannot_render(chain: AlembicRun) -> None:
    steps = chain.plan("upgrade", chain.parse("head", "upgrade"), [])
    rendered = chain.render_steps_sql(steps)
    alone = [chain.render_sql("upgrade", chain.parse(step.revision, "upgrade"), list(step.down_revision)) for step in steps]
    assert [rendered[0], rendered[2]] == [alone[0], alone[2]]
    sql, note = rendered[1]
    assert sql is None and note is not None
    assert note.startswith("SQL not rendered: revision bb02 (bb02_fix_names.py) cannot run in offline mode (AttributeError: ") and note.endswith(".")

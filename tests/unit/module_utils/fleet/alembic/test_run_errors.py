"""Unit tests of module_utils/fleet/alembic/run.py's error paths and planning:
the alembic.ini checks of load_project, AlembicRun.plan/parse against the real
equities project (and a small branched project built in tmp_path), the
wording of explain_revision_error, and describe_diff on real autogenerate
diffs from SQLite."""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from ansible.module_utils.fleet.alembic.revision import TargetSpec
from ansible.module_utils.fleet.alembic.revision import parse_target_spec as parse_revision
from ansible.module_utils.fleet.alembic.run import (
    AlembicProject,
    AlembicRun,
    Step,
    describe_diff,
    explain_revision_error,
    load_project,
)
from ansible.module_utils.fleet.core.common import FleetError, parse_target

REPO = Path(__file__).resolve().parents[5]
EQUITIES_INI = REPO / "migrations" / "equities" / "alembic.ini"
FIRST = "a1c3e5f70b21"


def one_line(exc: pytest.ExceptionInfo[FleetError]) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text))
    return path


# -- load_project ----------------------------------------------------------------
def test_load_project_accepts_the_bundled_project() -> None:
    project = load_project(str(EQUITIES_INI))
    assert project == AlembicProject(config_path=str(EQUITIES_INI), project_dir=str(EQUITIES_INI.parent), ini_section="alembic")


def test_load_project_makes_paths_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "proj" / "alembic.ini", "[alembic]\nscript_location = %(here)s\n")
    (tmp_path / "root").mkdir()
    monkeypatch.chdir(tmp_path)
    project = load_project("proj/alembic.ini", project_dir="root")
    assert project.config_path == str(tmp_path / "proj" / "alembic.ini")
    assert project.project_dir == str(tmp_path / "root")


def test_load_project_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "alembic.ini", "[alembic]\nscript_location = %(here)s\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_project("~/alembic.ini").config_path == str(tmp_path / "alembic.ini")


def test_load_project_honours_another_ini_section(tmp_path: Path) -> None:
    ini = write(tmp_path / "alembic.ini", "[equities]\nscript_location = migrations\n")
    assert load_project(str(ini), ini_section="equities").ini_section == "equities"


def test_missing_config_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "alembic.ini"
    with pytest.raises(FleetError) as caught:
        load_project(str(missing))
    message = one_line(caught)
    assert "Alembic config %s does not exist" % missing in message
    assert "set config (alembic_ini)" in message


def test_directory_given_as_config_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FleetError) as caught:
        load_project(str(tmp_path))
    message = one_line(caught)
    assert "Alembic config %s is a directory, not a file" % tmp_path in message, message
    assert str(tmp_path / "alembic.ini") in message and "does not exist" not in message, message


def _load_project_as_nobody(ini: Path) -> str:
    """load_project's message in a forked child that dropped root (root reads anything)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: already has the code in memory, so no venv access is needed
        os.close(read_end)
        message = "no error"
        try:
            os.setgid(65534)
            os.setuid(65534)
            load_project(str(ini))
        except FleetError as exc:
            message = str(exc)
        except BaseException as exc:  # noqa: BLE001 - report anything to the parent
            message = "unexpected %r" % exc
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        message = reader.read()
    os.waitpid(pid, 0)
    return message


def test_unreadable_config_is_reported() -> None:
    directory = Path(tempfile.mkdtemp(prefix="fleet-unreadable-"))
    try:
        directory.chmod(0o755)  # traversable by the unprivileged child
        ini = write(directory / "alembic.ini", "[alembic]\nscript_location = %(here)s\n")
        ini.chmod(0)
        if os.geteuid() == 0:
            message = _load_project_as_nobody(ini)
        else:
            with pytest.raises(FleetError) as caught:
                load_project(str(ini))
            message = str(caught.value)
    finally:
        shutil.rmtree(directory)
    assert "\n" not in message
    assert "is not readable" in message, message
    assert "read access" in message


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("script_location = %(here)s\n", id="no-section-header"),
        pytest.param("[alembic]\nscript_location = a\n[alembic]\nscript_location = b\n", id="duplicate-section"),
        pytest.param("[alembic]\nscript_location = a\nscript_location = b\n", id="duplicate-option"),
        pytest.param("[alembic]\nscript_location = a\nthis line is not ini\n", id="line-without-equals"),
        pytest.param("[alembic\nscript_location = a\n", id="unclosed-section"),
        pytest.param(b"[alembic]\nscript_location = \xff\xfe\n", id="not-utf8"),
    ],
)
def test_invalid_ini_is_reported(tmp_path: Path, content: str | bytes) -> None:
    ini = write(tmp_path / "alembic.ini", content)
    with pytest.raises(FleetError) as caught:
        load_project(str(ini))
    message = one_line(caught)
    assert "Alembic config %s is not a valid ini file" % ini in message
    assert message.endswith("fix its syntax.")


@pytest.mark.parametrize("section", ["alembic", "custom"])
def test_missing_section_is_reported(tmp_path: Path, section: str) -> None:
    ini = write(tmp_path / "alembic.ini", "[other]\nscript_location = %(here)s\n")
    with pytest.raises(FleetError) as caught:
        load_project(str(ini), ini_section=section)
    message = one_line(caught)
    assert "has no [%s] section" % section in message
    assert "set ini_section" in message


@pytest.mark.parametrize("content", ["", "# only a comment\n"])
def test_empty_config_has_no_section(tmp_path: Path, content: str) -> None:
    ini = write(tmp_path / "alembic.ini", content)
    with pytest.raises(FleetError) as caught:
        load_project(str(ini))
    assert "has no [alembic] section" in one_line(caught)


def test_missing_script_location_is_reported(tmp_path: Path) -> None:
    ini = write(tmp_path / "alembic.ini", "[alembic]\nsqlalchemy.url = sqlite:///x.db\n")
    with pytest.raises(FleetError) as caught:
        load_project(str(ini))
    message = one_line(caught)
    assert "has no script_location in [alembic]" in message
    assert "script_location = %(here)s" in message


def test_missing_project_dir_is_reported(tmp_path: Path) -> None:
    ini = write(tmp_path / "alembic.ini", "[alembic]\nscript_location = %(here)s\n")
    with pytest.raises(FleetError) as caught:
        load_project(str(ini), project_dir=str(tmp_path / "gone"))
    message = one_line(caught)
    assert "project_dir %s does not exist" % (tmp_path / "gone") in message


# -- AlembicRun on the bundled equities project ----------------------------------
@pytest.fixture(scope="module")
def history() -> list[str]:
    """The equities revisions oldest first, as Alembic itself sees them."""
    script = ScriptDirectory(str(EQUITIES_INI.parent))
    revisions = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert revisions[0] == FIRST
    assert len(revisions) >= 5
    return revisions


@pytest.fixture()
def run(tmp_path: Path) -> Iterator[AlembicRun]:
    alembic_run = AlembicRun(load_project(str(EQUITIES_INI)), parse_target("sqlite:///" + str(tmp_path / "x.db"), None))
    with alembic_run.session():
        yield alembic_run


def planned(run: AlembicRun, direction: str, target: str, current: tuple[str, ...]) -> list[str]:
    return [step.revision for step in run.plan(direction, run.parse(target, direction), current)]


def plan_error(run: AlembicRun, direction: str, target: str, current: tuple[str, ...]) -> str:
    with pytest.raises(FleetError) as caught:
        run.plan(direction, parse_revision(target, direction), current)
    return one_line(caught)


def test_script_heads_and_ids(run: AlembicRun, history: list[str]) -> None:
    assert run.script_heads() == [history[-1]]
    assert sorted(run.revision_ids()) == sorted(history)


def test_plan_from_empty_to_head_lists_every_revision_in_order(run: AlembicRun, history: list[str]) -> None:
    steps = run.plan("upgrade", run.parse("head", "upgrade"), ())
    assert [step.revision for step in steps] == history
    assert all(isinstance(step, Step) and step.direction == "upgrade" for step in steps)
    assert steps[0].down_revision == ()
    for before, step in itertools.pairwise(steps):
        assert step.down_revision == (before.revision,)
    for step in steps:
        data = step.as_dict()
        assert data["revision"] == step.revision
        assert data["file"] == os.path.basename(step.path)
        assert "_%s_" % step.revision in data["file"] and data["file"].endswith(".py")
        assert data["message"] and "\n" not in data["message"]


@pytest.mark.parametrize("target, count", [("+1", 1), ("+2", 2), ("heads", None), ("head", None)])
def test_plan_upgrade_from_empty(run: AlembicRun, history: list[str], target: str, count: int | None) -> None:
    expected = history if count is None else history[:count]
    assert planned(run, "upgrade", target, ()) == expected


@pytest.mark.parametrize("target", ["head-1", "head~1", "HEAD~1"])
def test_plan_head_minus_one_stops_before_the_last(run: AlembicRun, history: list[str], target: str) -> None:
    assert planned(run, "upgrade", target, ()) == history[:-1]


def test_plan_upgrade_from_the_middle(run: AlembicRun, history: list[str]) -> None:
    assert planned(run, "upgrade", "+1", (history[1],)) == [history[2]]
    assert planned(run, "upgrade", "head", (history[1],)) == history[2:]
    assert planned(run, "upgrade", history[3][:4], (history[1],)) == history[2:4]
    assert planned(run, "upgrade", "%s+2" % FIRST[:4], ()) == history[:3]


def test_plan_at_head_is_empty(run: AlembicRun, history: list[str]) -> None:
    assert planned(run, "upgrade", "head", (history[-1],)) == []
    assert planned(run, "downgrade", "base", ()) == []


def test_plan_upgrade_to_an_older_revision_cannot_be_reached(run: AlembicRun, history: list[str]) -> None:
    message = plan_error(run, "upgrade", FIRST, (history[-1],))
    assert "cannot be reached" in message


@pytest.mark.parametrize("target", ["+9", "+%d"])
def test_plan_upgrade_past_the_end_of_history(run: AlembicRun, history: list[str], target: str) -> None:
    if "%d" in target:
        target = target % (len(history) + 1)
    message = plan_error(run, "upgrade", target, ())
    assert "target '%s' goes past the end of the history" % target in message
    assert "base (empty)" in message


def test_plan_upgrade_past_head_from_head(run: AlembicRun, history: list[str]) -> None:
    message = plan_error(run, "upgrade", "+1", (history[-1],))
    assert "goes past the end of the history from the current revision %s" % history[-1] in message


@pytest.mark.parametrize("target", ["head-9", "base+9", FIRST + "+9"])
def test_plan_upgrade_past_the_history_from_an_anchor(run: AlembicRun, target: str) -> None:
    message = plan_error(run, "upgrade", target, ())
    assert "goes past the end of the history" in message


def test_plan_refuses_a_current_revision_the_project_does_not_have(run: AlembicRun, history: list[str]) -> None:
    for direction, target in (("upgrade", "head"), ("downgrade", "-1")):
        message = plan_error(run, direction, target, ("deadbeef0000",))
        assert "at revision deadbeef0000, which this project does not have" in message
        assert "deploy the missing migration files" in message
    message = plan_error(run, "upgrade", "head", (history[-1], "deadbeef0000"))
    assert "at revision deadbeef0000," in message
    assert history[-1] not in message


def test_plan_unknown_target_revision(run: AlembicRun) -> None:
    message = plan_error(run, "upgrade", "zzzzzz", ())
    assert "unknown revision in target 'zzzzzz'" in message
    assert "run the status module" in message


def test_plan_downgrade_one_step_from_head(run: AlembicRun, history: list[str]) -> None:
    steps = run.plan("downgrade", run.parse("-1", "downgrade"), (history[-1],))
    assert [step.revision for step in steps] == [history[-1]]
    assert steps[0].direction == "downgrade"
    assert steps[0].as_dict()["direction"] == "downgrade"


def test_plan_downgrade_to_base_lists_every_revision_newest_first(run: AlembicRun, history: list[str]) -> None:
    steps = run.plan("downgrade", run.parse("base", "downgrade"), (history[-1],))
    assert [step.revision for step in steps] == list(reversed(history))
    assert {step.direction for step in steps} == {"downgrade"}


def test_plan_downgrade_to_a_revision(run: AlembicRun, history: list[str]) -> None:
    assert planned(run, "downgrade", history[1], (history[-1],)) == list(reversed(history[2:]))
    assert planned(run, "downgrade", "head-2", (history[-1],)) == [history[-1], history[-2]]
    assert planned(run, "downgrade", "head~2", (history[-1],)) == [history[-1], history[-2]]


def test_plan_downgrade_to_a_later_revision_cannot_be_reached(run: AlembicRun, history: list[str]) -> None:
    message = plan_error(run, "downgrade", history[-1], (FIRST,))
    assert "target '%s' cannot be reached by downgrading from the current revision %s" % (history[-1], FIRST) in message
    assert "use the upgrade module" in message


@pytest.mark.parametrize("current", [(), (FIRST,)])
def test_plan_downgrade_past_base(run: AlembicRun, current: tuple[str, ...]) -> None:
    message = plan_error(run, "downgrade", "-2", current)
    assert "target '-2' goes past the end of the history" in message


def test_parse_expands_a_unique_prefix(run: AlembicRun) -> None:
    assert run.parse("a1c3", "upgrade").alembic == FIRST
    assert run.parse("a1c3+1", "upgrade").alembic == FIRST + "+1"
    assert run.parse("HEAD~1", "upgrade").alembic == "head-1"


def test_parse_rejects_an_unknown_revision(run: AlembicRun) -> None:
    with pytest.raises(FleetError) as caught:
        run.parse("zzzz", "upgrade")
    assert "unknown revision 'zzzz'" in one_line(caught)


def test_parse_still_applies_the_grammar(run: AlembicRun) -> None:
    with pytest.raises(FleetError, match="goes down"):
        run.parse("-1", "upgrade")


def test_session_restores_cwd_and_environment_and_captures_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "sqlite:///elsewhere.db")
    monkeypatch.delenv("PGPASSFILE", raising=False)
    alembic_run = AlembicRun(load_project(str(EQUITIES_INI)), parse_target("sqlite:///" + str(tmp_path / "x.db"), None))
    with alembic_run.session():
        assert os.getcwd() == str(EQUITIES_INI.parent)
        assert os.environ["DATABASE_URL"] == "sqlite:///" + str(tmp_path / "x.db")
        assert "PGPASSFILE" not in os.environ  # no password, no passfile
        assert str(EQUITIES_INI.parent) in sys.path
        sys.stdout.write("to stdout\n")
        sys.stderr.write("to stderr\n\n")
    assert os.getcwd() == str(tmp_path)
    assert os.environ["DATABASE_URL"] == "sqlite:///elsewhere.db"
    assert alembic_run.log_lines() == ["to stdout", "to stderr"]


def test_session_restores_sys_path(tmp_path: Path) -> None:
    project_dir = str(EQUITIES_INI.parent)
    before = list(sys.path)
    alembic_run = AlembicRun(load_project(str(EQUITIES_INI)), parse_target("sqlite:///" + str(tmp_path / "x.db"), None))
    with alembic_run.session():
        alembic_run.script_heads()
    assert sys.path.count(project_dir) == before.count(project_dir)
    assert sys.path == before


# -- a branched project built in tmp_path ----------------------------------------
def branched_project(root: Path) -> Path:
    """alpha: aaaa11110000 -> aaaa11110001; beta: bbbb22220000 (two heads)."""
    ini = write(root / "alembic.ini", "[alembic]\nscript_location = %(here)s\n")
    revisions = [
        ("aaaa11110000", None, ("alpha",), "alpha root"),
        ("aaaa11110001", "aaaa11110000", None, "alpha second"),
        ("bbbb22220000", None, ("beta",), "beta root"),
    ]
    for rev, down, labels, doc in revisions:
        write(
            root / "versions" / ("%s.py" % rev),
            '"""%s\n\nMore text.\n"""\nrevision = %r\ndown_revision = %r\nbranch_labels = %r\ndepends_on = None\n\n'
            "def upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n" % (doc, rev, down, labels),
        )
    return ini


@pytest.fixture()
def branched(tmp_path: Path) -> Iterator[AlembicRun]:
    ini = branched_project(tmp_path / "project")
    alembic_run = AlembicRun(load_project(str(ini)), parse_target("sqlite:///" + str(tmp_path / "x.db"), None))
    with alembic_run.session():
        yield alembic_run


def test_branched_head_is_ambiguous(branched: AlembicRun) -> None:
    with pytest.raises(FleetError) as caught:
        branched.plan("upgrade", branched.parse("head", "upgrade"), ())
    message = one_line(caught)
    assert "the project has 2 heads (aaaa11110001, bbbb22220000)" in message
    assert "target 'head' is ambiguous" in message
    assert "alembic merge heads" in message


def test_branched_plans(branched: AlembicRun) -> None:
    assert sorted(planned(branched, "upgrade", "heads", ())) == ["aaaa11110000", "aaaa11110001", "bbbb22220000"]
    assert planned(branched, "upgrade", "alpha@head", ()) == ["aaaa11110000", "aaaa11110001"]
    assert planned(branched, "upgrade", "beta@head", ()) == ["bbbb22220000"]
    assert planned(branched, "upgrade", "alpha", ()) == ["aaaa11110000"]
    steps = branched.plan("upgrade", branched.parse("alpha@head", "upgrade"), ())
    assert steps[1].message == "alpha second"


def test_branched_parse(branched: AlembicRun) -> None:
    assert branched.parse("alpha", "upgrade").alembic == "alpha"
    assert branched.parse("bbbb", "upgrade").alembic == "bbbb22220000"
    assert branched.parse("alpha@aaaa11110001", "upgrade").alembic == "alpha@aaaa11110001"
    with pytest.raises(FleetError) as caught:
        branched.parse("aaaa1111", "upgrade")
    assert "it matches aaaa11110000, aaaa11110001;" in one_line(caught)


def test_branched_downgrade_to_the_other_branch_cannot_be_reached(branched: AlembicRun) -> None:
    message = plan_error(branched, "downgrade", "bbbb22220000", ("aaaa11110001",))
    assert "cannot be reached by downgrading from the current revision aaaa11110001" in message


def test_unloadable_scripts_are_reported(tmp_path: Path) -> None:
    ini = write(tmp_path / "alembic.ini", "[alembic]\nscript_location = %(here)s/nowhere\n")
    alembic_run = AlembicRun(load_project(str(ini)), parse_target("sqlite:///" + str(tmp_path / "x.db"), None))
    with alembic_run.session():
        with pytest.raises(FleetError) as caught:
            alembic_run.script_heads()
    message = one_line(caught)
    assert "cannot load the migration scripts of %s" % ini in message
    assert "check script_location and project_dir" in message


def test_broken_revision_file_is_reported(tmp_path: Path) -> None:
    ini = branched_project(tmp_path / "project")
    write(tmp_path / "project" / "versions" / "cccc33330000.py", 'revision = "cccc33330000"\ndown_revision = (\n')
    alembic_run = AlembicRun(load_project(str(ini)), parse_target("sqlite:///" + str(tmp_path / "x.db"), None))
    with alembic_run.session():
        with pytest.raises(FleetError) as caught:
            alembic_run.revision_ids()
    message = str(caught.value)
    assert "cannot load the migration scripts" in message
    assert "SyntaxError" in message
    assert "fix the revision file" in message


# -- explain_revision_error ---------------------------------------------------------
@pytest.mark.parametrize(
    "alembic_text, phrase",
    [
        ("Multiple head revisions are present for given argument 'head'; please specify", "the project has 2 heads (h1, h2)"),
        ("Destination x is not a valid upgrade target from current head(s)", "cannot be reached by upgrading"),
        ("Revision x is not an ancestor of revision y (upgrade)", "cannot be reached by upgrading"),
        ("Destination x is not a valid downgrade target from current head(s)", "cannot be reached by downgrading"),
        ("Revision x is not an ancestor of revision y", "cannot be reached by downgrading"),
        ("Relative revision +9 didn't produce 9 migrations", "goes past the end of the history"),
        ("Walked too far", "goes past the end of the history"),
        ("Can't locate revision identified by 'x'", "unknown revision in target 'T' (Can't locate revision identified by 'x')"),
        ("No such revision or branch 'x'", "unknown revision in target 'T'"),
        ("something\n   entirely\tdifferent", "Alembic cannot plan target 'T' from c1, c2: something entirely different"),
    ],
)
def test_explain_revision_error(alembic_text: str, phrase: str) -> None:
    spec = TargetSpec(given="T", alembic="T", branch=None, ref="T", offset=0)
    error = explain_revision_error(CommandError(alembic_text), spec, ["c1", "c2"], ["h1", "h2"])
    assert isinstance(error, FleetError)
    assert "\n" not in str(error)
    assert phrase in str(error)


def test_explain_revision_error_names_an_empty_database() -> None:
    error = explain_revision_error(CommandError("Walked too far"), parse_revision("+3", "upgrade"), [], ["h"])
    assert "from the current revision base (empty)" in str(error)


# -- describe_diff ----------------------------------------------------------------
def database_diffs(tmp_path: Path, ddl: list[str], metadata: sa.MetaData) -> list[Any]:
    engine = sa.create_engine("sqlite:///" + str(tmp_path / "schema.db"))
    try:
        with engine.begin() as conn:
            for statement in ddl:
                conn.exec_driver_sql(statement)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def sentences(tmp_path: Path, ddl: list[str], metadata: sa.MetaData) -> list[str]:
    return [describe_diff(diff) for diff in database_diffs(tmp_path, ddl, metadata)]


def test_describe_missing_and_extra_columns(tmp_path: Path) -> None:
    metadata = sa.MetaData()
    sa.Table(
        "prices",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("close", sa.Numeric(12, 4)),
    )
    found = sentences(tmp_path, ["CREATE TABLE prices (id INTEGER NOT NULL PRIMARY KEY, legacy TEXT)"], metadata)
    assert sorted(found) == [
        "column prices.close is in the models but not in the database",
        "column prices.legacy is in the database but not in the models",
    ]


def test_describe_extra_and_missing_tables(tmp_path: Path) -> None:
    metadata = sa.MetaData()
    sa.Table("companies", metadata, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("signals", metadata, sa.Column("id", sa.Integer, primary_key=True))
    ddl = [
        "CREATE TABLE companies (id INTEGER NOT NULL PRIMARY KEY)",
        "CREATE TABLE obsolete (id INTEGER NOT NULL PRIMARY KEY)",
    ]
    assert sorted(sentences(tmp_path, ddl, metadata)) == [
        "table obsolete is in the database but not in the models",
        "table signals is in the models but not in the database",
    ]


def test_describe_type_and_nullable_changes(tmp_path: Path) -> None:
    metadata = sa.MetaData()
    sa.Table(
        "companies",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("symbol", sa.String(12), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
    )
    ddl = ["CREATE TABLE companies (id INTEGER NOT NULL PRIMARY KEY, symbol INTEGER NOT NULL, name VARCHAR(200))"]
    diffs = database_diffs(tmp_path, ddl, metadata)
    found = sorted(describe_diff(diff) for diff in diffs)
    assert found == [
        "column companies.name nullable differs: database has True, models have False",
        (
            "column companies.symbol type differs: database has INTEGER, models have VARCHAR(12); "
            "column companies.symbol nullable differs: database has False, models have True"
        ),
    ]
    grouped = [diff for diff in diffs if isinstance(diff, list) and len(diff) == 2]
    assert grouped, "compare_metadata groups the changes of one column"


def test_describe_indexes_and_constraints(tmp_path: Path) -> None:
    metadata = sa.MetaData()
    sa.Table(
        "prices",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("symbol", sa.String(12)),
        sa.Column("legacy", sa.Text),
        sa.Index("ix_prices_symbol", "symbol"),
        sa.UniqueConstraint("symbol", name="uq_prices_symbol"),
    )
    ddl = [
        "CREATE TABLE prices (id INTEGER NOT NULL PRIMARY KEY, symbol VARCHAR(12), legacy TEXT)",
        "CREATE INDEX ix_prices_legacy ON prices (legacy)",
    ]
    found = sentences(tmp_path, ddl, metadata)
    assert "index ix_prices_legacy on prices(legacy) is in the database but not in the models" in found
    assert "index ix_prices_symbol on prices(symbol) is in the models but not in the database" in found
    assert "constraint uq_prices_symbol on prices is in the models but not in the database" in found


def test_describe_named_foreign_key(tmp_path: Path) -> None:
    metadata = sa.MetaData()
    sa.Table("companies", metadata, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table(
        "prices",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("company_id", sa.Integer, sa.ForeignKey("companies.id", name="fk_prices_company")),
    )
    ddl = [
        "CREATE TABLE companies (id INTEGER NOT NULL PRIMARY KEY)",
        "CREATE TABLE prices (id INTEGER NOT NULL PRIMARY KEY, company_id INTEGER)",
    ]
    assert sentences(tmp_path, ddl, metadata) == ["foreign key fk_prices_company on prices is in the models but not in the database"]


def test_describe_unnamed_foreign_key(tmp_path: Path) -> None:
    metadata = sa.MetaData()
    sa.Table("companies", metadata, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table(
        "prices",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("company_id", sa.Integer),
    )
    ddl = [
        "CREATE TABLE companies (id INTEGER NOT NULL PRIMARY KEY)",
        "CREATE TABLE prices (id INTEGER NOT NULL PRIMARY KEY, company_id INTEGER REFERENCES companies (id))",
    ]
    assert sentences(tmp_path, ddl, metadata) == ["foreign key (unnamed) on prices is in the database but not in the models"]


def test_describe_unknown_difference_falls_back_to_repr() -> None:
    assert describe_diff(("add_table_comment", "prices")) == "difference ('add_table_comment', 'prices')"


def test_describe_identical_schema_has_no_diffs(tmp_path: Path) -> None:
    metadata = sa.MetaData()
    sa.Table("companies", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(200)))
    ddl = ["CREATE TABLE companies (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(200))"]
    assert sentences(tmp_path, ddl, metadata) == []

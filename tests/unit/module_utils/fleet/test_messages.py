"""Issue 16: the helpers behind one-line refusals, on real SQLite files and real Alembic errors (no mocks)."""

from __future__ import annotations

import json
import os
import runpy
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.util import CommandError
from ansible.module_utils.common.validation import check_type_list

from ansible.module_utils.fleet.alembic.revision import parse_target_spec as parse_revision
from ansible.module_utils.fleet.alembic.run import explain_revision_error
from ansible.module_utils.fleet.core.common import FleetError, parse_target
from ansible.module_utils.fleet.core.db import connect, create_engine, explain_connect_error, sqlite_path_problem
from ansible.module_utils.fleet.core.module import plain_type_message, project_error_message, project_site
from ansible.module_utils.fleet.state.ledger import Ledger

REPO = Path(__file__).resolve().parents[4]


# -- head-N past base, +N past head: a fix that fits the direction ------------------------------------------------
def test_upgrade_below_base_sends_to_the_downgrade_module() -> None:
    error = explain_revision_error(CommandError("Walked too far"), parse_revision("head-99", "upgrade"), ["c1"], ["h"], "upgrade")
    message = str(error)
    assert "target 'head-99' goes past the end of the history from the current revision c1" in message
    assert "downgrade module (or rollback.yml)" in message and "or base" not in message


def test_upgrade_past_head_suggests_head_only() -> None:
    message = str(explain_revision_error(CommandError("Walked too far"), parse_revision("+3", "upgrade"), ["c1"], ["h"], "upgrade"))
    assert message.endswith("use a smaller step, or head.") and "base" not in message


def test_downgrade_past_base_suggests_base() -> None:
    message = str(explain_revision_error(CommandError("Walked too far"), parse_revision("-9", "downgrade"), ["c1"], ["h"], "downgrade"))
    assert message.endswith("use a smaller step, or base."), message


# -- empty and missing passwords ------------------------------------------------------------------------------------
def test_empty_password_is_remembered_but_never_sent() -> None:
    target = parse_target("postgresql://deploy@db1/equities", "")
    assert target.password is None and target.password_empty
    assert not parse_target("postgresql://deploy@db1/equities", None).password_empty
    assert not parse_target("postgresql://deploy@db1/equities", "s3cret").password_empty


@pytest.mark.parametrize("server_says", ["fe_sendauth: no password supplied", 'password authentication failed for user "deploy"'])
def test_empty_password_is_named_instead_of_authentication_failed(server_says: str) -> None:
    message = str(explain_connect_error(parse_target("postgresql://deploy@db1/equities", ""), Exception(server_says)))
    assert message.startswith("the password for deploy@db1:5432/equities is empty and the server asks for one: set the password option"), message
    message = str(explain_connect_error(parse_target("postgresql://deploy@db1/equities", None), Exception(server_says)))
    assert message.startswith("no password was given for deploy@db1:5432/equities"), message


def test_a_given_password_that_fails_is_still_authentication_failed() -> None:
    message = str(explain_connect_error(parse_target("postgresql://deploy@db1/equities", "wrong"), Exception("password authentication failed")))
    assert message.startswith("authentication failed for user 'deploy'"), message


# -- url of the wrong type ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("url", "kind"), [(["postgresql://a@b/c"], "list"), ("['postgresql://a@b/c']", "list"), ("{'x': 1}", "mapping")])
def test_url_of_the_wrong_type(url: object, kind: str) -> None:
    with pytest.raises(FleetError) as caught:
        parse_target(url, "pw")  # type: ignore[arg-type]  # what Ansible hands over for a list given to a str option
    assert str(caught.value).startswith("url is a %s, not one URL: give a single string" % kind)


# -- SQLite files that cannot be opened ------------------------------------------------------------------------------
def test_sqlite_path_problems(tmp_path: Path) -> None:
    assert sqlite_path_problem(str(tmp_path / "ok.db")) is None
    assert "is a directory, not a file" in str(sqlite_path_problem(str(tmp_path)))
    missing = tmp_path / "nodir" / "app.db"
    assert "its directory %s does not exist" % missing.parent in str(sqlite_path_problem(str(missing)))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_sqlite_directory_not_writable(tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    assert "is not writable by this user" in str(sqlite_path_problem(str(locked / "app.db")))


def test_unable_to_open_names_the_path_and_reason(tmp_path: Path) -> None:
    (tmp_path / "app.db").mkdir()
    target = parse_target("sqlite:///%s" % (tmp_path / "app.db"), None)
    engine = create_engine(target)
    try:
        with pytest.raises(FleetError) as caught:
            connect(engine, target).close()
    finally:
        engine.dispose()
    assert str(caught.value).startswith("SQLite database path %s is a directory, not a file" % (tmp_path / "app.db"))


# -- a ledger table of another shape -------------------------------------------------------------------------------
def test_ledger_of_another_shape_is_refused_naming_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as raw:
        raw.execute("create table alembic_fleet_ledger (id integer primary key, entry_id text, run_id text, action text, outcome text)")
    engine = sa.create_engine("sqlite:///%s" % path)
    try:
        with engine.connect() as conn:
            for read in (Ledger().read, Ledger().running, Ledger().last_change, Ledger().ensure):
                with pytest.raises(FleetError) as caught:
                    read(conn)
                message = str(caught.value)
                assert message.startswith("the run ledger table alembic_fleet_ledger lacks the column(s) environment, host, name, operator"), message
                assert "SELECT" not in message
    finally:
        engine.dispose()


def test_ledger_of_our_shape_is_accepted(tmp_path: Path) -> None:
    engine = sa.create_engine("sqlite:///%s" % (tmp_path / "app.db"))
    try:
        with engine.begin() as conn:
            Ledger().ensure(conn)
            Ledger().ensure(conn)
            assert Ledger().read(conn) == []
    finally:
        engine.dispose()


# -- errors raised by the project's own code ----------------------------------------------------------------------
def test_an_error_from_env_py_is_named_with_file_and_line(tmp_path: Path) -> None:
    exc = _call_through_ours(tmp_path)
    site = project_site(exc)
    assert site == (str(tmp_path / "env.py"), 2), site
    message = project_error_message(exc, site)
    assert message.startswith("the project's env.py raised RuntimeError: boom (%s line 2): fix it there" % (tmp_path / "env.py")), message


def test_an_error_of_ours_is_not_blamed_on_the_project() -> None:
    try:
        Ledger("not a name; drop table x")
    except FleetError as exc:
        assert project_site(exc) is None
    try:
        {}["missing"]  # raised here: a test file is neither ours nor the project's, and no module_utils frame is on the way
    except KeyError as exc:
        assert project_site(exc) is None


def _call_through_ours(tmp_path: Path) -> BaseException:
    """An exception raised in a project's env.py that was called by one of our module_utils functions."""
    env_py = tmp_path / "env.py"
    env_py.write_text("x = 1\nraise RuntimeError('boom')\n")
    # A real call path: core.db's connect() calls engine.connect(); the engine's "connect" event runs the project's code.
    engine = sa.create_engine("sqlite:///%s" % (tmp_path / "x.db"))
    sa.event.listen(engine, "connect", lambda *_args: runpy.run_path(str(env_py)))
    try:
        connect(engine, parse_target("sqlite:///%s" % (tmp_path / "x.db"), None))
    except RuntimeError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("env.py did not raise")


# -- ansible-core's internal class names in argument errors ---------------------------------------------------------
class _AnsibleTaggedDict(dict[str, object]):
    """Named as ansible-core's tagged mapping of a playbook variable is."""


def test_a_mapping_where_a_list_is_due_is_named_plainly() -> None:
    try:
        check_type_list(_AnsibleTaggedDict(name="equities"))
    except TypeError as exc:
        raw = "argument 'databases' is of type dict and we were unable to convert to list: %s" % exc
    assert "_AnsibleTaggedDict" in raw
    message = plain_type_message(raw)
    assert message == (
        "argument 'databases' is of type dict and we were unable to convert to list: a mapping cannot be converted to a list: "
        "write it as a YAML list (each item on its own line, starting with '- ')"
    ), message


def test_messages_without_class_names_are_kept() -> None:
    assert plain_type_message("url is empty") == "url is empty"


def test_fleet_module_rewrites_its_own_argument_errors(tmp_path: Path) -> None:
    script = tmp_path / "probe_module.py"
    script.write_text(
        "import ansible.module_utils\n"
        "ansible.module_utils.__path__.append(%r)\n"
        "from ansible.module_utils.fleet.core.module import FleetModule\n"
        "FleetModule(argument_spec={'databases': {'type': 'list', 'elements': 'dict'}})\n" % str(REPO / "module_utils")
    )
    args = {"ANSIBLE_MODULE_ARGS": {"databases": {"name": "equities"}}}
    done = subprocess.run([sys.executable, str(script)], input=json.dumps(args), capture_output=True, text=True, timeout=60)
    result = json.loads(done.stdout)
    assert result["failed"] is True and "<class" not in result["msg"], result
    assert "a mapping cannot be converted to a list: write it as a YAML list" in result["msg"], result

"""Unit tests of the typed entry points of module_utils/fleet/ops/operations.py: the options each operation reads
once from its params, and the decisions status, the migrations (in check mode) and verify take on a real SQLite file
with the bundled equities project (five revisions in a line). No database server, no ansible-playbook.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ansible.module_utils.fleet.core.common import FleetError
from ansible.module_utils.fleet.core.db import DatabaseMissing
from ansible.module_utils.fleet.core.options import AlembicOptions
from ansible.module_utils.fleet.ops.operations import (
    MigrateOptions,
    VerifyOptions,
    _verify,
    _verify_after,
    make_migrate,
    status,
    verify,
)

REPO = Path(__file__).resolve().parents[5]
EQUITIES_INI = str(REPO / "migrations" / "equities" / "alembic.ini")
HISTORY = ["a1c3e5f70b21", "b2d4f6081c32", "c3e5071a2d43", "d4f6182b3e54", "e5f7293c4a65"]  # oldest first


def empty_database(tmp_path: Path) -> Path:
    path = tmp_path / "live.db"
    sqlite3.connect(path).close()
    return path


def tables(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return sorted(row[0] for row in conn.execute("select name from sqlite_master where type = 'table'"))
    finally:
        conn.close()


def params_for(path: Path, **extra: Any) -> dict[str, Any]:
    return {"url": "sqlite:///%s" % path, "config": EQUITIES_INI, **extra}


# -- the options -------------------------------------------------------------------------------
def test_migrate_options_defaults(tmp_path: Path) -> None:
    options = MigrateOptions.from_params(params_for(tmp_path / "x.db"))
    assert (options.backup, options.verify, options.refuse, options.floor, options.undo_entry_id) == (None, None, frozenset(), None, None)
    assert options.alembic.connection.maintenance_db == "postgres"


def test_migrate_options_as_given(tmp_path: Path) -> None:
    options = MigrateOptions.from_params(params_for(tmp_path / "x.db", refuse=["lossy", "irreversible"], floor="a1c3", undo_entry_id=""))
    assert options.refuse == frozenset({"lossy", "irreversible"})
    assert options.floor == "a1c3"
    assert options.undo_entry_id is None  # empty: no entry to mark undone


@pytest.mark.parametrize(
    "backup, message",
    [
        ({"backup_root": " ", "environment": "prod", "host": "db1", "name": "equities"}, "backup_root is empty"),
        ({"backup_root": "/b", "environment": "prod", "host": "db1", "name": "equities", "compress_level": 12}, "compress_level 12 is out of range"),
    ],
)
def test_migrate_options_refuse_a_bad_backup_before_the_url(backup: dict[str, Any], message: str) -> None:
    with pytest.raises(FleetError, match=r"^" + message):
        MigrateOptions.from_params({"url": "mysql://x/y", "config": EQUITIES_INI, "backup": backup})


def test_verify_options_defaults(tmp_path: Path) -> None:
    options = VerifyOptions.from_params(params_for(tmp_path / "x.db", revision="", expected_heads=[]))
    assert (options.revision, options.expected_heads, options.check_files, options.compare_schema) == ("head", None, True, True)
    given = VerifyOptions.from_params(params_for(tmp_path / "x.db", revision="base", expected_heads=["a", "b"], compare_schema=False))
    assert (given.revision, given.expected_heads, given.compare_schema) == ("base", ("a", "b"), False)


# -- status ------------------------------------------------------------------------------------------
def test_status_of_an_empty_database_lists_every_revision_pending(tmp_path: Path) -> None:
    path = empty_database(tmp_path)
    result: dict[str, Any] = {}
    status(params_for(path, backup_dir=None), False, False, result)
    assert (result["exists"], result["current"], result["target"], result["target_ambiguous"]) == (True, [], "head", False)
    assert [entry["revision"] for entry in result["pending"]] == HISTORY
    assert (result["pending_count"], result["at_target"], result["post_backup_missing"]) == (5, False, False)
    assert result["last_runs"] == [] and result["lock_holder"] is None
    assert tables(path) == []  # status reads only


def test_status_to_an_explicit_target(tmp_path: Path) -> None:
    result: dict[str, Any] = {}
    status(params_for(empty_database(tmp_path), target=HISTORY[1]), False, False, result)
    assert [entry["revision"] for entry in result["pending"]] == HISTORY[:2]


def test_status_of_a_missing_database(tmp_path: Path) -> None:
    with pytest.raises(DatabaseMissing):
        status(params_for(tmp_path / "gone.db"), False, False, {})
    result: dict[str, Any] = {}
    status(params_for(tmp_path / "gone.db", create_database=True), False, False, result)
    assert (result["exists"], result["pending_count"]) == (False, 5)
    assert not (tmp_path / "gone.db").exists()


def test_status_refuses_a_negative_wait_before_reading(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match=r"^wait_for_quiet is -1"):
        status(params_for(tmp_path / "gone.db", wait_for_quiet=-1), False, False, {})


# -- the migrations, in check mode ----------------------------------------------------------------------
def test_upgrade_in_check_mode_predicts_and_writes_nothing(tmp_path: Path) -> None:
    path = empty_database(tmp_path)
    result: dict[str, Any] = {}
    make_migrate("upgrade")(params_for(path, target="+2"), True, False, result)
    assert (result["changed"], result["before"], result["after"]) == (True, [], [HISTORY[1]])
    assert [entry["revision"] for entry in result["pending"]] == HISTORY[:2]
    assert tables(path) == []


def test_upgrade_of_a_missing_database_needs_create_database(tmp_path: Path) -> None:
    with pytest.raises(DatabaseMissing):
        make_migrate("upgrade")(params_for(tmp_path / "gone.db", target="head"), True, False, {})
    result: dict[str, Any] = {}
    make_migrate("upgrade")(params_for(tmp_path / "gone.db", target="head", create_database=True), True, False, result)
    assert result["after"] == [HISTORY[-1]]
    assert not (tmp_path / "gone.db").exists()


def test_upgrade_refuses_a_negative_lock_timeout_before_reaching_the_database(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match=r"^lock_timeout -1 is negative"):
        make_migrate("upgrade")(params_for(tmp_path / "gone.db", target="head", lock_timeout=-1), True, False, {})


# -- verify ----------------------------------------------------------------------------------------------
def test_verify_an_empty_database_at_base(tmp_path: Path) -> None:
    result: dict[str, Any] = {}
    verify(params_for(empty_database(tmp_path), revision="base", compare_schema=False), False, False, result)
    assert (result["current"], result["expected"], result["problems"], result["heads"]) == ([], [], [], [HISTORY[-1]])


def test_verify_at_head_of_an_empty_database_fails(tmp_path: Path) -> None:
    path = empty_database(tmp_path)
    result: dict[str, Any] = {}
    with pytest.raises(FleetError) as caught:
        _verify(VerifyOptions(AlembicOptions.from_params(params_for(path))), result)
    assert str(caught.value) == "verification of sqlite:%s failed: the database is at base, expected %s." % (path, HISTORY[-1])
    assert result["schema_compared"] is False  # a failed revision check skips the schema comparison


def test_verify_names_unexpected_project_heads(tmp_path: Path) -> None:
    options = AlembicOptions.from_params(params_for(empty_database(tmp_path)))
    with pytest.raises(FleetError, match="the project's heads are %s, expected %s" % (HISTORY[-1], HISTORY[0])):
        _verify(VerifyOptions(options, revision="base", expected_heads=(HISTORY[0],), compare_schema=False), {})


def test_verify_of_a_missing_database(tmp_path: Path) -> None:
    with pytest.raises(DatabaseMissing):
        verify(params_for(tmp_path / "gone.db"), False, False, {})


def test_verify_after_a_run_to_an_explicit_target_checks_where_it_ended(tmp_path: Path) -> None:
    """Not "head": the revisions the run ended at (here none: base), with the project's heads as the run saw them."""
    options = AlembicOptions.from_params(params_for(empty_database(tmp_path)))
    result: dict[str, Any] = {"after": []}
    _verify_after(options, {"compare_schema": False}, "base", [HISTORY[-1]], result)
    assert result["verify"]["expected"] == [] and "verify_failed" not in result


def test_verify_after_a_run_to_head_checks_head(tmp_path: Path) -> None:
    options = AlembicOptions.from_params(params_for(empty_database(tmp_path)))
    result: dict[str, Any] = {"after": []}
    with pytest.raises(FleetError, match="the database is at base, expected %s" % HISTORY[-1]):
        _verify_after(options, {"compare_schema": False}, "head", [HISTORY[-1]], result)
    assert result["verify_failed"] is True
    assert result["verify"]["expected"] == [HISTORY[-1]]

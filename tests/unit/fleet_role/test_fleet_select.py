"""The fleet role's decisions (roles/fleet/filter_plugins/fleet_select.py): fast, no Ansible run, no database."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

PLUGIN = Path(__file__).resolve().parents[3] / "roles" / "fleet" / "filter_plugins" / "fleet_select.py"


def load_plugin() -> ModuleType:
    # A role's filter_plugins folder is no package: load the file as Ansible does, by its path.
    spec = importlib.util.spec_from_file_location("fleet_select", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fs: Any = load_plugin()

DATABASES = [
    {"name": "equities", "alembic_ini": "migrations/equities/alembic.ini", "url": "postgresql://u@h/e", "password": "s3cret"},
    {"name": "algorithms", "alembic_ini": "/abs/alembic.ini", "url": "postgresql://u@h/a", "target": "ab12", "create_database": "yes"},
    {"name": "reports", "alembic_ini": "r/alembic.ini", "url": "sqlite:////tmp/r.db", "project_dir": "/src/r", "drift_allow": ["t"]},
]


def status(**fields: Any) -> dict[str, Any]:
    return {"failed": False, "target_ambiguous": False, "pending_count": 0, "current": ["c0ffee"], **fields}


# ------------------------------------------------------------------------------------------------ picking by name


def test_pick_takes_every_entry_when_no_name_is_given() -> None:
    assert fs.fleet_pick(DATABASES) == [0, 1, 2]
    assert fs.fleet_pick(DATABASES, []) == [0, 1, 2]
    assert fs.fleet_pick([]) == []


def test_pick_keeps_inventory_order_whatever_the_order_of_the_names() -> None:
    assert fs.fleet_pick(DATABASES, ["reports", "equities"]) == [0, 2]
    assert fs.fleet_pick(DATABASES, ["nowhere"]) == []


# --------------------------------------------------------------------------------------- which databases have work


@pytest.mark.parametrize(
    ("fields", "post_backup", "work"),
    [
        ({}, False, False),
        ({"pending_count": 2}, False, True),
        ({"failed": True, "pending_count": None}, False, True),
        ({"target_ambiguous": True}, False, True),
        ({"post_backup_missing": True}, False, False),
        ({"post_backup_missing": True}, True, True),
    ],
    ids=["idle", "pending", "unreadable", "ambiguous", "post-backup-off", "post-backup-owed"],
)
def test_with_work_and_idle_are_complements(fields: dict[str, Any], post_backup: bool, work: bool) -> None:
    statuses = [status(), status(**fields)]
    assert fs.fleet_with_work([0, 1], statuses, post_backup) == ([1] if work else [])
    assert fs.fleet_idle(statuses, post_backup) == ([statuses[0]] if work else statuses)


def test_with_work_only_looks_at_the_picked_indexes() -> None:
    statuses = [status(pending_count=1), status(), status(pending_count=3)]
    assert fs.fleet_with_work([1, 2], statuses) == [2]


def test_idle_reads_multiple_heads_when_the_status_has_no_target_ambiguous() -> None:
    old = {"failed": False, "multiple_heads": True, "pending_count": 0}
    assert fs.fleet_idle([old]) == []


def test_plan_names_host_and_database_in_visit_order() -> None:
    assert fs.fleet_plan([2, 0], DATABASES, "db1") == ["db1/reports", "db1/equities"]


def test_idle_lines_and_outcomes() -> None:
    statuses = [status(name="equities"), status(name="fresh", current=[])]
    assert fs.fleet_idle_lines(statuses, "db1") == ["db1/equities: at c0ffee, nothing to do", "db1/fresh: at base, nothing to do"]
    outcomes = fs.fleet_idle_outcomes(statuses, "db1", {"check_mode": True, "environment": "dev", "run_id": ""})
    assert set(outcomes) == {"db1/equities", "db1/fresh"}
    assert outcomes["db1/equities"] == {
        "outcome": "unchanged",
        "check_mode": True,
        "environment": "dev",
        "run_id": None,
        "before": ["c0ffee"],
        "after": ["c0ffee"],
        "revisions": 0,
        "duration": None,
        "backup": None,
        "post_upgrade_backup": None,
        "ledger_entry_id": None,
    }


# ------------------------------------------------------------------------------------------ one entry, resolved once


def entry(index: int, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "project_root": "/repo",
        "target": "head",
        "create_database": False,
        "backup_root": "/repo/var/backups",
        "environment": "prod",
        "host": "db1",
        "run_id": "20260101T000000Z-abc123",
        "operator": "ops@control",
        **overrides,
    }
    resolved: dict[str, Any] = fs.fleet_entry(DATABASES[index], **args)
    return resolved


def test_entry_resolves_a_relative_alembic_ini_from_the_project_root(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    resolved = fs.fleet_entry({"name": "x", "alembic_ini": "link/../real/alembic.ini"}, str(tmp_path), "head", False, "/b", "dev", "h")
    assert resolved["config"] == str((tmp_path / "real" / "alembic.ini").resolve())
    assert entry(1)["config"] == "/abs/alembic.ini", "an absolute path is taken as given"


def test_entry_applies_the_role_defaults_and_the_entry_s_own_settings() -> None:
    assert (entry(0)["target"], entry(0)["create_database"]) == ("head", False)
    assert (entry(1)["target"], entry(1)["create_database"]) == ("ab12", True), "create_database: 'yes' is a bool as | bool reads it"
    assert entry(0, create_database=True)["create_database"] is True
    assert "project_dir" not in entry(0) and entry(2)["project_dir"] == "/src/r"


def test_entry_names_the_backup_dir_and_the_ledger_record() -> None:
    resolved = entry(0)
    assert resolved["backup_dir"] == "/repo/var/backups/prod/db1/equities"
    assert resolved["record"] == {"run_id": "20260101T000000Z-abc123", "environment": "prod", "host": "db1", "name": "equities", "operator": "ops@control"}
    assert "run_id" not in entry(0, run_id="")["record"], "an empty run id is left out, as default(omit, true) did"


def test_entry_never_holds_the_url_or_the_password() -> None:
    # The role keeps the resolved entry as a fact, and facts are printed at -v.
    resolved = entry(0)
    assert "s3cret" not in repr(resolved) and "url" not in resolved and "password" not in resolved


# ---------------------------------------------------------------------------------- the host's one alembic_status call


def test_status_entries_carry_what_the_module_reads() -> None:
    entries = fs.fleet_status_entries(DATABASES, "/repo", "head", False, None, "prod", "db1", drift_allow=["x"])
    assert [e["name"] for e in entries] == ["equities", "algorithms", "reports"]
    first, second, third = entries
    assert first["password"] == "s3cret" and second["password"] is None
    assert first["backup_dir"] is None, "without backup_root the call does not look at backups"
    assert (second["target"], second["create_database"], second["config"]) == ("ab12", True, "/abs/alembic.ini")
    assert third["drift_allow"] == ["x", "t"] and third["project_dir"] == "/src/r" and first["project_dir"] is None
    with_backups = fs.fleet_status_entries(DATABASES[:1], "/repo", "head", False, "/b", "prod", "db1")
    assert with_backups[0]["backup_dir"] == "/b/prod/db1/equities"


def test_missing_ini_names_the_entry_the_path_and_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "ok.ini").write_text("[alembic]\n")
    (tmp_path / "dir.ini").mkdir()
    entries = [
        {"name": "good", "alembic_ini": "ok.ini"},
        {"name": "folder", "alembic_ini": "dir.ini"},
        {"name": "gone", "alembic_ini": str(tmp_path / "gone.ini")},
        {"name": "unset"},
    ]
    assert fs.fleet_missing_ini(entries, str(tmp_path)) == [
        "the alembic_ini of folder, dir.ini, is a directory: %s/dir.ini" % tmp_path,
        "the alembic_ini of gone, {0}/gone.ini, is not there: {0}/gone.ini".format(tmp_path),
    ]


# ------------------------------------------------------------------------------------------------- the run's plans


@pytest.mark.parametrize("only", ["", None, [], "reports,equities", ["reports", " equities"], "equities,reports,"])
def test_plans_of_every_host_narrowed_by_fleet_only(only: Any) -> None:
    databases_of = {"db1": DATABASES, "db2": [{"name": "equities"}, {"name": ""}], "db3": []}
    plans = fs.fleet_plans(["db1", "db2", "db3", "db4"], databases_of, only)
    if only:
        assert plans == {"db1": ["db1/equities", "db1/reports"], "db2": ["db2/equities"], "db3": [], "db4": []}
    else:
        assert plans == {"db1": ["db1/equities", "db1/algorithms", "db1/reports"], "db2": ["db2/equities"], "db3": [], "db4": []}


def test_plans_take_an_inventory_the_argument_spec_has_not_judged_yet() -> None:
    # plan_run runs before any entry point's argument spec: a fleet_databases that is no list of mappings plans nothing.
    assert fs.fleet_plans(["db1"], {"db1": "not-a-list"}) == {"db1": []}
    assert fs.fleet_plans(["db1"], {"db1": [["x"], 3, {"name": "e"}]}) == {"db1": ["db1/e"]}


def test_rows_put_the_result_over_the_context_without_ansible_s_keys() -> None:
    rows = fs.fleet_rows(
        [{"name": "e", "host": "db9", "changed": False, "invocation": {}}], {"host": "db1", "environment": "dev"}, drop=["changed", "invocation"]
    )
    assert rows == [{"host": "db9", "environment": "dev", "name": "e"}]


def test_negative_names_each_negative_option_with_its_fix() -> None:
    fixes = {"lock_wait": "give 0 or more seconds", "lock_retries": "give 0 or more retries", "backup_keep_days": "give 0 or more days"}
    assert fs.fleet_negative(fixes, [-1, "x", 0]) == ["fleet_lock_wait is -1: give 0 or more seconds"]
    assert fs.fleet_negative(fixes, ["-2.5", None, -0.5]) == [
        "fleet_lock_wait is -2.5: give 0 or more seconds",
        "fleet_backup_keep_days is -0.5: give 0 or more days",
    ]
    assert fs.fleet_negative(fixes, [0, 3, 1.5]) == []


def test_every_filter_is_registered() -> None:
    filters = fs.FilterModule().filters()
    assert {name for name in vars(fs) if name.startswith("fleet_")} == set(filters)


def test_the_planned_upgrades_get_their_connection_only_in_the_call() -> None:
    planned = [
        {"index": 2, "name": "reports", "config": "/r/alembic.ini", "target": "head", "record": {"name": "reports"}},
        {"index": 0, "name": "equities", "config": "/e/alembic.ini", "target": "head", "backup": None},
    ]
    calls = fs.fleet_with_connection(planned, DATABASES)
    assert [call["name"] for call in calls] == ["reports", "equities"]
    reports = {"name": "reports", "config": "/r/alembic.ini", "target": "head", "record": {"name": "reports"}}
    assert calls[0] == {**reports, "url": "sqlite:////tmp/r.db", "password": None}
    assert (calls[1]["url"], calls[1]["password"], "index" in calls[1]) == ("postgresql://u@h/e", "s3cret", False)
    assert "password" not in planned[1] and "url" not in planned[1]  # the fact itself holds no secret

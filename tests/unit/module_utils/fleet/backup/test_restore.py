"""Unit tests of the decisions in module_utils/fleet/backup/restore.py, without a database server.

The pg_restore listing is parsed from lines as `pg_restore --list` prints them; the rights a restore needs are
judged from role facts given as data; the backup checks and plan() run on files written to tmp_path (SQLite is
embedded; a PostgreSQL plan is driven only as far as the refusals made before any connection).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ansible.module_utils.fleet.backup.catalog import MANIFEST_SUFFIX
from ansible.module_utils.fleet.backup.restore import (
    DATABASE_OWNER_ROLE,
    Setting,
    _access_problems,
    _access_refusal,
    _direct_writers,
    _entry_text,
    _grant_role,
    _literal,
    _locale_provider,
    _owner_problems,
    _RestoreCounter,
    _settings_problems,
    _sql_name,
    check_backup,
    dump_owners,
    entry_owner,
    expected_heads,
    guc_list,
    plan,
    restore_jobs,
    restore_passes,
)
from ansible.module_utils.fleet.core.common import FleetError, parse_target
from ansible.module_utils.fleet.core.progress import Progress

# name -> (is superuser, the user may become it, the user has its privileges)
Facts = dict[str, tuple[bool, bool, bool]]


# -- expected_heads -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "revision, heads",
    [(None, set()), ("", set()), ("a1", {"a1"}), ("a1+b2", {"a1", "b2"}), ("a1 b2", {"a1", "b2"}), ("a1, b2", {"a1", "b2"}), ("+a1+", {"a1"})],
)
def test_expected_heads(revision: str | None, heads: set[str]) -> None:
    assert expected_heads(revision) == heads


# -- the pg_restore listing ----------------------------------------------------------------
LISTING = [
    "5; 2615 2200 SCHEMA - public pg_database_owner",
    "6; 2615 16390 SCHEMA - app app owner",
    "2; 3079 16384 EXTENSION - pgcrypto ",
    "217; 1259 16397 TABLE public t2 owner2",
    "218; 1259 16400 TABLE app trades app owner",
    "3360; 0 16397 TABLE DATA public t2 owner2",
    "3361; 0 0 ACL - SCHEMA app app owner",
    "3362; 0 0 ACL - SCHEMA public pg_database_owner",
    "3363; 0 16400 ACL app TABLE trades app owner",
    "3364; 0 16397 COMMENT public TABLE t2 reader",
]


def test_entry_text() -> None:
    assert _entry_text("217; 1259 16397 TABLE public t2 owner2") == "TABLE public t2 owner2"
    assert _entry_text("217;") == ""


def test_entry_owner_is_the_last_word() -> None:
    assert entry_owner("217; 1259 16397 TABLE public t2 owner2", []) == "owner2"


def test_entry_owner_of_an_extension_is_none() -> None:
    assert entry_owner("2; 3079 16384 EXTENSION - pgcrypto ", []) is None


def test_entry_owner_with_a_space_is_recognised_from_the_server_roles() -> None:
    line = "218; 1259 16400 TABLE app trades app owner"
    assert entry_owner(line, []) == "owner"
    assert entry_owner(line, ["app owner"]) == "app owner"
    # the longest role that fits wins
    assert entry_owner(line, ["owner", "app owner", "s app owner"]) == "app owner"


def test_dump_owners_names_the_objects_each_owns() -> None:
    owners = dump_owners(LISTING, ["app owner"])
    assert owners == {
        "pg_database_owner": ["SCHEMA - public"],
        "app owner": ["SCHEMA - app", "TABLE app trades"],
        "owner2": ["TABLE public t2"],
        "reader": ["COMMENT public TABLE t2"],  # owns only a part: named by it
    }


def test_restore_passes_give_schema_privileges_first() -> None:
    early, rest = restore_passes(LISTING)
    assert early == [LISTING[0], LISTING[1], LISTING[6], LISTING[7]]
    assert rest == [line for line in LISTING if line not in early]


def test_restore_passes_without_schema_privileges_is_one_run() -> None:
    entries = [line for line in LISTING if " ACL - SCHEMA " not in line]
    assert restore_passes(entries) == [entries]


def test_restore_passes_ignore_privileges_of_a_schema_the_dump_does_not_create() -> None:
    entries = ["6; 2615 16390 SCHEMA - app app", "3361; 0 0 ACL - SCHEMA other other", "218; 1259 16400 TABLE app trades app"]
    assert restore_passes(entries) == [entries]


# -- SQL text ---------------------------------------------------------------------------
def test_literal_doubles_quotes() -> None:
    assert _literal("it's") == "'it''s'"
    assert _literal(5) == "'5'"


@pytest.mark.parametrize("name, sql", [("app", "app"), ("app_2$", "app_2$"), ("App", '"App"'), ("app owner", '"app owner"'), ('a"b', '"a""b"')])
def test_sql_name(name: str, sql: str) -> None:
    assert _sql_name(name) == sql


def test_locale_provider() -> None:
    assert _locale_provider(()) == ""
    assert _locale_provider(("c", None)) == ""  # libc
    assert _locale_provider(("i", None)) == ""
    assert _locale_provider(("i", "en-US")) == " LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
    assert _locale_provider(("b", "C.UTF-8")) == " LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8'"


@pytest.mark.parametrize(
    "value, items",
    [
        ('"$user", public', ["$user", "public"]),
        ("public", ["public"]),
        ('"a ""quoted"" name", b', ['a "quoted" name', "b"]),
        ("a,b ,  c", ["a", "b", "c"]),
        ("", []),
        ('"unterminated', ['"unterminated']),  # not as the server writes a list: kept whole
    ],
)
def test_guc_list(value: str, items: list[str]) -> None:
    assert guc_list(value) == items


# -- the rights a restore needs ------------------------------------------------------------------
def test_grant_role() -> None:
    facts: Facts = {"app": (False, False, False), "admin": (True, False, False)}
    assert _grant_role("app", "deployer", facts) == "GRANT app TO deployer"
    assert _grant_role("App Owner", "deployer", facts) == 'GRANT "App Owner" TO deployer'
    assert _grant_role("admin", "deployer", facts) == ""  # membership of a superuser role would make the user one
    assert _grant_role("unknown", "deployer", facts) == "GRANT unknown TO deployer"


def test_owner_problems() -> None:
    owners = {
        "deployer": ["TABLE public a"],
        DATABASE_OWNER_ROLE: ["SCHEMA - public"],
        "app": ["TABLE public t1", "TABLE public t2", "TABLE public t3"],
        "ghost": ["TABLE public g"],
        "member": ["TABLE public m"],
    }
    facts: Facts = {"app": (False, False, False), "member": (False, True, True)}
    assert _owner_problems("deployer", owners, facts) == [
        ("objects owned by app (TABLE public t1 and 2 more)", "GRANT app TO deployer"),
        ("objects owned by ghost, which is no role on this server (TABLE public g)", "CREATE ROLE ghost"),
    ]


def test_direct_writers() -> None:
    facts: Facts = {"app": (False, True, True), "admin": (True, False, False)}
    assert _direct_writers("u", True, False, facts, 16) == {"u", "app", "admin"}
    assert _direct_writers("u", False, True, facts, 15) == {"u", "app"}  # CREATEROLE before 16, never a superuser's
    assert _direct_writers("u", False, True, facts, 16) == {"u"}  # 16 asks ADMIN OPTION as well
    assert _direct_writers("u", False, True, facts, None) == {"u", "app"}
    assert _direct_writers("u", False, False, facts, 15) == {"u"}


def test_settings_problems() -> None:
    settings = (
        Setting("", "work_mem", "64MB"),
        Setting("app", "search_path", "app"),
        Setting("reporter", "statement_timeout", "5s"),
        Setting("reporter", "lock_timeout", "1s"),
        Setting("direct", "work_mem", "1MB"),
    )
    facts: Facts = {"app": (False, True, True), "reporter": (False, False, True), "direct": (False, False, False)}
    assert _settings_problems("u", settings, {"u", "direct"}, facts, ["auto_explain.log_min_duration"]) == [
        ("the settings of ALTER ROLE reporter IN DATABASE", "GRANT reporter TO u"),
        ("the superuser-only setting auto_explain.log_min_duration", "GRANT SET ON PARAMETER auto_explain.log_min_duration TO u"),
    ]
    assert _settings_problems("u", settings, {"u", "direct"}, {**facts, "reporter": (False, True, False)}, []) == []


def test_access_problems_database_owner() -> None:
    # the user must be able to become the owner (SET) and hold its privileges (USAGE)
    assert _access_problems("u", "u", {}, (), {"u"}, {}, []) == []
    assert _access_problems("u", "own", {}, (), {"u"}, {"own": (False, True, True)}, []) == []
    for facts in ({"own": (False, True, False)}, {"own": (False, False, True)}, {}):
        assert _access_problems("u", "own", {}, (), {"u"}, facts, []) == [("the database's owner own", "GRANT own TO u")]


def test_access_problems_in_order() -> None:
    problems = _access_problems("u", "own", {"app": ["TABLE public t"]}, (Setting("app", "work_mem", "1MB"),), {"u"}, {"app": (False, False, False)}, ["x.y"])
    assert [fix for _, fix in problems] == ["GRANT own TO u", "GRANT app TO u", "GRANT app TO u", "GRANT SET ON PARAMETER x.y TO u"]


def test_access_refusal_lists_each_fix_once() -> None:
    message = _access_refusal("/b/x.dump", "db1", "u", [("p1", "GRANT app TO u"), ("p2", "GRANT app TO u"), ("p3", "")])
    assert message == (
        "restoring /b/x.dump into db1 needs rights u lacks to give the copy what the original has: p1; p2; p3; "
        "GRANT app TO u, or restore as a superuser; nothing was touched."
    )


def test_access_refusal_with_no_fix_but_a_superuser() -> None:
    assert _access_refusal("/b/x.dump", "db1", "u", [("p", "")]).endswith(": p; restore as a superuser; nothing was touched.")


# -- check_backup and plan() on files ---------------------------------------------------------
def write_backup(path: Path, content: bytes = b"backup bytes", **manifest: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    written = {"name": "equities", "dialect": "sqlite", "size": len(content), "sha256": hashlib.sha256(content).hexdigest(), "revision": "a1"}
    written.update(manifest)
    Path(str(path) + MANIFEST_SUFFIX).write_text(json.dumps({k: v for k, v in written.items() if v is not None}))
    return path


def sqlite_target(tmp_path: Path) -> Any:
    return parse_target("sqlite:///" + str(tmp_path / "live.db"), None)


def test_check_backup_accepts_its_own_backup(tmp_path: Path) -> None:
    path = write_backup(tmp_path / "b.sqlite3")
    sha = hashlib.sha256(b"backup bytes").hexdigest()
    assert check_backup(str(path), "equities", sqlite_target(tmp_path), sha.upper())["revision"] == "a1"


@pytest.mark.parametrize(
    "manifest, name, sha, message",
    [
        ({"name": "algorithms"}, "equities", None, "is a backup of 'algorithms', not of 'equities'"),
        ({"dialect": "postgresql"}, "equities", None, "is a postgresql backup but url points to a sqlite database"),
        ({}, "equities", "abc", "expected_sha256 'abc' is not a SHA-256 checksum"),
        ({}, "equities", "0" * 64, "but expected_sha256 is " + "0" * 64),
        ({"size": 3}, "equities", None, "does not match its manifest's checksum: it is damaged"),
        ({"sha256": None}, "equities", None, "lacks sha256: it was not written by db_backup"),
        ({"size": "12"}, "equities", None, "lacks size"),
    ],
)
def test_check_backup_refuses(tmp_path: Path, manifest: dict[str, Any], name: str, sha: str | None, message: str) -> None:
    path = write_backup(tmp_path / "b.sqlite3", **manifest)
    with pytest.raises(FleetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_backup(str(path), name, sqlite_target(tmp_path), sha)


def test_check_backup_without_a_manifest(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    path.write_bytes(b"x")
    with pytest.raises(FleetError, match="has no manifest"):
        check_backup(str(path), "equities", sqlite_target(tmp_path), None)


def test_check_backup_of_a_directory_or_nothing(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="does not exist"):
        check_backup(str(tmp_path / "none.sqlite3"), "equities", sqlite_target(tmp_path), None)
    with pytest.raises(FleetError, match="is not a file"):
        check_backup(str(tmp_path), "equities", sqlite_target(tmp_path), None)


def live_database(tmp_path: Path, heads: list[str]) -> Path:
    path = tmp_path / "live.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
    conn.executemany("INSERT INTO alembic_version VALUES (?)", [(head,) for head in heads])
    conn.commit()
    conn.close()
    return path


def test_plan_of_a_sqlite_restore(tmp_path: Path) -> None:
    live = live_database(tmp_path, ["b2", "a1"])
    backup = write_backup(tmp_path / "backups" / "b.sqlite3", revision="c3+d4", environment="prod", host="db1")
    step = plan({"url": "sqlite:///" + str(live), "path": str(backup), "name": "equities", "record": {"run_id": "r1"}})
    assert step.current == ["a1", "b2"]
    assert step.expected == {"c3", "d4"}
    assert step.revision == "c3+d4"
    assert (step.record.action, step.record.name, step.record.environment, step.record.host) == ("restore", "equities", "prod", "db1")
    assert step.record.backup_path == str(backup)
    assert step.record.backup_sha256 == hashlib.sha256(b"backup bytes").hexdigest()


def test_plan_of_an_unversioned_backup(tmp_path: Path) -> None:
    live = live_database(tmp_path, [])
    backup = write_backup(tmp_path / "b.sqlite3", revision="")
    step = plan({"url": "sqlite:///" + str(live), "path": str(backup), "name": "equities"})
    assert (step.revision, step.expected, step.current) == (None, set(), [])


def test_plan_refuses_an_empty_path(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="path is empty"):
        plan({"url": "sqlite:///" + str(tmp_path / "live.db"), "path": "  ", "name": "equities"})


def test_plan_refuses_a_missing_sqlite_database(tmp_path: Path) -> None:
    backup = write_backup(tmp_path / "b.sqlite3")
    with pytest.raises(FleetError, match=r"SQLite database file .* does not exist: db_restore only replaces an existing database"):
        plan({"url": "sqlite:///" + str(tmp_path / "gone.db"), "path": str(backup), "name": "equities"})


def test_plan_refuses_an_undo_entry_the_ledger_does_not_hold(tmp_path: Path) -> None:
    live = live_database(tmp_path, ["a1"])
    backup = write_backup(tmp_path / "b.sqlite3")
    with pytest.raises(FleetError, match="undo_entry_id 0123 is not in the ledger table alembic_fleet_ledger"):
        plan({"url": "sqlite:///" + str(live), "path": str(backup), "name": "equities", "undo_entry_id": "0123"})


def test_plan_refuses_a_bad_version_table(tmp_path: Path) -> None:
    backup = write_backup(tmp_path / "b.sqlite3")
    with pytest.raises(FleetError, match="version_table"):
        plan({"url": "sqlite:///" + str(tmp_path / "live.db"), "path": str(backup), "name": "equities", "version_table": "a; drop"})


@pytest.mark.parametrize("maintenance_db", [None, "postgres"])
def test_plan_refuses_restoring_the_maintenance_database_before_connecting(tmp_path: Path, maintenance_db: str | None) -> None:
    backup = write_backup(tmp_path / "b.dump", dialect="postgresql", name="postgres")
    params = {"url": "postgresql://nobody@127.0.0.1:1/postgres", "path": str(backup), "name": "postgres", "maintenance_db": maintenance_db}
    with pytest.raises(FleetError, match="maintenance_db is the database being restored \\(postgres\\)"):
        plan(params)


def test_restore_jobs_is_the_given_number_or_one_per_core_at_most_four() -> None:
    assert restore_jobs(3) == 3 and restore_jobs(1) == 1
    assert restore_jobs(None) == restore_jobs(0) == max(1, min(4, os.cpu_count() or 1))
    with pytest.raises(FleetError, match="jobs is -1: give 1 or more"):
        restore_jobs(-1)


class _Recorded(Progress):
    """Every line the counter writes, unthrottled."""

    def __init__(self) -> None:
        super().__init__("/nonexistent/progress.json")
        self.details: list[str] = []

    def _write(self, detail: str, facts: dict[str, Any]) -> None:
        self.details.append(detail)


PARALLEL_LINES = [
    "pg_restore: entering main parallel loop",
    "pg_restore: launching item 3340 TABLE DATA filler",
    'pg_restore: processing data for table "archive.filler"',
    "pg_restore: launching item 3341 TABLE DATA small",
    'pg_restore: processing data for table "public.small"',
    "pg_restore: finished item 3341 TABLE DATA small",
    "pg_restore: launching item 3197 INDEX small_idx",
    'pg_restore: creating INDEX "public.small_idx"',
    "pg_restore: finished item 3340 TABLE DATA filler",
    'pg_restore: creating INDEX "archive.filler_id_idx"',
]


def test_with_jobs_the_table_whose_data_is_loading_stays_the_line_until_its_worker_is_done() -> None:
    recorded = _Recorded()
    counter = _RestoreCounter(recorded, 10, parallel=True)
    for line in PARALLEL_LINES:
        counter.line(line)
    assert recorded.details[0] == "restoring the data of table archive.filler (entry 1 of 10)"
    assert "creating INDEX public.small_idx (entry 4 of 10)" not in recorded.details  # filler is still loading
    assert counter.loading == []
    one_job = _Recorded()
    serial = _RestoreCounter(one_job, 10)
    for line in ['pg_restore: processing data for table "archive.filler"', 'pg_restore: creating INDEX "archive.filler_id_idx"']:
        serial.line(line)
    # One job: the next object starts when the last one is done (the recorder keeps every line, unthrottled).
    assert one_job.details == ["restoring the data of table archive.filler (entry 1 of 10)", "creating INDEX archive.filler_id_idx (entry 2 of 10)"]

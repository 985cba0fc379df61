"""Unit tests of the decisions in module_utils/fleet/backup/drill.py, without a database server.

Backups are laid out in tmp_path as db_backup writes them (names from the catalog), the project is the bundled
equities one, and the databases are SQLite files (embedded): which backup is drilled, what plan() refuses, the
checksum, manifest-table and row-count checks, how a check's failure is recorded, and the drill's verdict.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ansible.module_utils.fleet.backup.catalog import MANIFEST_SUFFIX, PG_NAME_LIMIT, backup_filename, is_side_name, side_name, side_prefix
from ansible.module_utils.fleet.backup.drill import (
    CheckFailed,
    Drill,
    _check_checksum,
    _check_row_counts,
    _choose_backup,
    _manifest_tables,
    _run_check,
    _usable_manifest,
    _verdict,
    plan,
)
from ansible.module_utils.fleet.core.common import FleetError, parse_target

REPO = Path(__file__).resolve().parents[5]
EQUITIES_INI = str(REPO / "migrations" / "equities" / "alembic.ini")
NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
CONTENT = b"backup bytes"


def write_backup(directory: Path, days_old: float = 0, content: bytes = CONTENT, manifest: dict[str, Any] | None = None, with_manifest: bool = True) -> Path:
    """A backup named as db_backup names it, days_old days before NOW, with its manifest (fields overridden by manifest)."""
    directory.mkdir(parents=True, exist_ok=True)
    when = NOW - timedelta(days=days_old)
    path = directory / backup_filename(when, "e5f7293c4a65", "sqlite")
    path.write_bytes(content)
    if with_manifest:
        written: dict[str, Any] = {
            "name": "equities",
            "dialect": "sqlite",
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
            "revision": "e5f7293c4a65",
            "created_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "environment": "prod",
            "host": "db1",
        }
        written.update(manifest or {})
        Path(str(path) + MANIFEST_SUFFIX).write_text(json.dumps(written))
    return path


@pytest.fixture()
def live(tmp_path: Path) -> Path:
    path = tmp_path / "live.db"
    sqlite3.connect(path).close()
    return path


def drill_plan(live: Path, **params: Any) -> Drill:
    return plan({"url": "sqlite:///" + str(live), "config": EQUITIES_INI, **params})


# -- which backup ------------------------------------------------------------------------
def test_choose_backup_needs_exactly_one_of_path_and_backup_dir(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match=r"give either path .* or backup_dir .*, not both"):
        _choose_backup("/x", "/y", "equities")
    with pytest.raises(FleetError, match=r"give backup_dir .* or path"):
        _choose_backup(" ", None, "equities")


def test_choose_backup_takes_the_newest_with_a_manifest(tmp_path: Path) -> None:
    directory = tmp_path / "backups"
    write_backup(directory, days_old=3)
    newest = write_backup(directory, days_old=1)
    write_backup(directory, days_old=0, with_manifest=False)  # a db_backup that did not finish: skipped
    assert _choose_backup(None, str(directory), "equities") == str(newest)


def test_choose_backup_of_an_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match=r"no backup of equities under .*: run backup.yml first"):
        _choose_backup(None, str(tmp_path), "equities")


def test_choose_backup_by_path(tmp_path: Path) -> None:
    path = write_backup(tmp_path)
    assert _choose_backup(str(path), None, "equities") == str(path)
    with pytest.raises(FleetError, match="does not exist"):
        _choose_backup(str(tmp_path / "gone.sqlite3"), None, "equities")
    bare = write_backup(tmp_path / "bare", with_manifest=False)
    with pytest.raises(FleetError, match="has no manifest"):
        _choose_backup(str(bare), None, "equities")


# -- the manifest ------------------------------------------------------------------------
def test_usable_manifest(tmp_path: Path) -> None:
    path = write_backup(tmp_path)
    manifest, problem = _usable_manifest(str(path))
    assert problem is None and manifest is not None and manifest["name"] == "equities"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[1, 2]", "is not a JSON object"),
        ("{not json", "cannot be read"),
        ('{"name": "equities", "dialect": "sqlite", "size": true, "sha256": "x"}', "lacks size: it was not written by db_backup"),
    ],
)
def test_unusable_manifest_is_a_problem_not_an_error(tmp_path: Path, text: str, problem: str) -> None:
    path = write_backup(tmp_path)
    Path(str(path) + MANIFEST_SUFFIX).write_text(text)
    manifest, found = _usable_manifest(str(path))
    assert manifest is None and found is not None and problem in found


# -- plan() ----------------------------------------------------------------------------
def test_plan_fills_the_record_from_the_manifest(tmp_path: Path, live: Path) -> None:
    path = write_backup(tmp_path / "backups", manifest={"revision": "a1+b2"})
    step = drill_plan(live, backup_dir=str(tmp_path / "backups"))
    assert step.path == str(path)
    assert (step.record.action, step.record.name, step.record.environment, step.record.host) == ("drill", "equities", "prod", "db1")
    assert step.record.backup_path == str(path)
    assert step.revision == "a1+b2" and step.heads == ["a1", "b2"]
    assert step.maintenance_db == "postgres"


def test_plan_keeps_a_damaged_manifest_for_the_checksum_check(tmp_path: Path, live: Path) -> None:
    path = write_backup(tmp_path)
    Path(str(path) + MANIFEST_SUFFIX).write_text("[]")
    step = drill_plan(live, path=str(path))
    assert step.manifest is None and step.revision is None and step.heads == []
    assert step.manifest_problem is not None and "is not a JSON object" in step.manifest_problem


def test_plan_refuses_another_action(tmp_path: Path, live: Path) -> None:
    path = write_backup(tmp_path)
    with pytest.raises(FleetError, match=r"record.action 'restore' is not allowed for a restore drill"):
        drill_plan(live, path=str(path), record={"action": "restore"})


def test_plan_refuses_a_backup_of_another_dialect(tmp_path: Path, live: Path) -> None:
    path = write_backup(tmp_path, manifest={"dialect": "postgresql"})
    with pytest.raises(FleetError, match="is a postgresql backup but url points to a sqlite database"):
        drill_plan(live, path=str(path))


def test_plan_refuses_a_missing_target(tmp_path: Path) -> None:
    path = write_backup(tmp_path)
    with pytest.raises(FleetError, match=r"SQLite database file .* does not exist: the drill is recorded in the ledger"):
        drill_plan(tmp_path / "gone.db", path=str(path))


# -- the checks that need no restore -------------------------------------------------------------
def test_check_checksum_passes(tmp_path: Path, live: Path) -> None:
    step = drill_plan(live, path=str(write_backup(tmp_path)))
    result: dict[str, Any] = {}
    detail = _check_checksum(step, result)
    assert result["sha256"] == hashlib.sha256(CONTENT).hexdigest()
    assert detail == "sha256 %s and size %d bytes match the manifest" % (result["sha256"], len(CONTENT))


def test_check_checksum_of_a_damaged_file(tmp_path: Path, live: Path) -> None:
    path = write_backup(tmp_path)
    step = drill_plan(live, path=str(path))
    path.write_bytes(b"backup bytez")  # same size, other bytes
    with pytest.raises(CheckFailed, match="the backup is damaged"):
        _check_checksum(step, {})


def test_check_checksum_of_an_unusable_manifest_fails_with_its_problem(tmp_path: Path, live: Path) -> None:
    path = write_backup(tmp_path)
    Path(str(path) + MANIFEST_SUFFIX).write_text("[]")
    step = drill_plan(live, path=str(path))
    result: dict[str, Any] = {}
    with pytest.raises(CheckFailed, match="is not a JSON object"):
        _check_checksum(step, result)
    assert result["sha256"] == hashlib.sha256(CONTENT).hexdigest()  # still reported


def test_manifest_tables(tmp_path: Path, live: Path) -> None:
    tables = [{"schema": "app", "table": "trades", "rows": 3}, {"schema": "", "table": "companies", "rows": 0}, {"table": "t", "rows": 1}]
    step = drill_plan(live, path=str(write_backup(tmp_path, manifest={"tables": tables})))
    assert _manifest_tables(step) == [("app", "trades", 3), (None, "companies", 0), (None, "t", 1)]


@pytest.mark.parametrize("entry", [{"table": "t"}, {"table": "t", "rows": "3"}, {"table": 5, "rows": 3}, "t"])
def test_manifest_tables_refuses_a_malformed_entry(tmp_path: Path, live: Path, entry: Any) -> None:
    step = drill_plan(live, path=str(write_backup(tmp_path, manifest={"tables": [entry]})))
    with pytest.raises(CheckFailed, match="is not \\{schema, table, rows\\}"):
        _manifest_tables(step)


def copy_with_rows(tmp_path: Path, rows: int) -> Any:
    path = tmp_path / "copy.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE companies (id INTEGER PRIMARY KEY)")
    conn.executemany("INSERT INTO companies VALUES (?)", [(n,) for n in range(rows)])
    conn.commit()
    conn.close()
    return parse_target("sqlite:///" + str(path), None)


def test_row_counts_match(tmp_path: Path, live: Path) -> None:
    step = drill_plan(live, path=str(write_backup(tmp_path, manifest={"tables": [{"table": "companies", "rows": 3}]})))
    assert _check_row_counts(copy_with_rows(tmp_path, 3), step) == "exact row counts of 1 table(s) match the manifest: companies 3"


def test_row_counts_differ_or_tables_are_missing(tmp_path: Path, live: Path) -> None:
    tables = [{"table": "companies", "rows": 3}, {"table": "daily_ohlcv", "rows": 7}]
    step = drill_plan(live, path=str(write_backup(tmp_path, manifest={"tables": tables})))
    with pytest.raises(CheckFailed) as caught:
        _check_row_counts(copy_with_rows(tmp_path, 2), step)
    assert str(caught.value) == (
        "row counts differ from the manifest: companies has 2 rows, the manifest says 3; daily_ohlcv is missing (the manifest says 7 rows)"
    )


def test_row_counts_without_counts_in_the_manifest(tmp_path: Path, live: Path) -> None:
    step = drill_plan(live, path=str(write_backup(tmp_path)))
    assert _check_row_counts(copy_with_rows(tmp_path, 2), step).startswith("not compared: the manifest has no row counts")


# -- how checks are recorded, and the verdict ---------------------------------------------------
def test_run_check_records_pass_and_failure(tmp_path: Path) -> None:
    target = parse_target("sqlite:///" + str(tmp_path / "x.db"), None)
    checks: list[dict[str, Any]] = []

    def fails() -> str:
        raise CheckFailed("the copy is at a1,\n  not b2.")

    def breaks() -> str:
        raise sqlite3.OperationalError("no such table: t")

    assert _run_check(checks, "one", lambda: "fine", target)
    assert not _run_check(checks, "two", fails, target)
    assert not _run_check(checks, "three", breaks, target)
    assert checks[:2] == [{"check": "one", "ok": True, "detail": "fine"}, {"check": "two", "ok": False, "detail": "the copy is at a1, not b2"}]
    assert checks[2]["ok"] is False and checks[2]["detail"].startswith("OperationalError: ")


def test_run_check_lets_an_unexpected_error_through(tmp_path: Path) -> None:
    target = parse_target("sqlite:///" + str(tmp_path / "x.db"), None)

    def bug() -> str:
        raise KeyError("x")

    with pytest.raises(KeyError):
        _run_check([], "one", bug, target)


PASSED = [
    {"check": "checksum", "ok": True, "detail": "sha256 ok"},
    {"check": "restore", "ok": True, "detail": "restored"},
    {"check": "revision", "ok": True, "detail": "at e5"},
    {"check": "schema", "ok": True, "detail": "same"},
    {"check": "row_counts", "ok": True, "detail": "companies 3"},
]


def test_verdict_passed_names_revision_and_row_counts() -> None:
    assert _verdict("/b/x.sqlite3", PASSED, 0.25, 0.5) == (
        True,
        "restore drill of /b/x.sqlite3 passed: restored in 0.25 s, recovery time 0.5 s; revision: at e5; row_counts: companies 3",
    )


def test_verdict_failed_names_each_failed_check() -> None:
    checks = [*PASSED[:3], {"check": "schema", "ok": False, "detail": "differs"}, {"check": "row_counts", "ok": False, "detail": "2 not 3"}]
    assert _verdict("/b/x.sqlite3", checks, 0.25, 0.5) == (False, "restore drill of /b/x.sqlite3 failed: schema: differs; row_counts: 2 not 3")


def test_verdict_of_no_check_is_a_failure() -> None:
    assert _verdict("/b/x.sqlite3", [], None, 0.0)[0] is False


# -- the copy's name -----------------------------------------------------------------------
def test_drill_copy_name() -> None:
    name = side_name("equities", "drill")
    assert name.startswith("equities_drill_") and is_side_name(name, side_prefix("equities", "drill"))
    assert not is_side_name(name, side_prefix("equities", "restore"))
    assert side_name("equities", "drill") != name


def test_drill_copy_name_of_a_long_database_fits_postgresql() -> None:
    long_name = "é" * 40  # 80 bytes
    name = side_name(long_name, "drill")
    assert len(name.encode()) <= PG_NAME_LIMIT
    assert is_side_name(name, side_prefix(long_name, "drill"))

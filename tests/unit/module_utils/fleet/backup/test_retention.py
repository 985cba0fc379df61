"""Unit tests of backup retention (module_utils/fleet/backup/retention.py and catalog.py).

Backups are laid out as db_backup writes them (names from the catalog's
backup_filename), with manifests of chosen ages, judged against a fixed now.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ansible.module_utils.fleet.backup.catalog import MANIFEST_SUFFIX, backup_directory, backup_filename
from ansible.module_utils.fleet.backup.retention import (
    PROTECTED,
    UNKNOWN_AGE,
    RetentionPlan,
    apply_retention,
    plan_retention,
)
from ansible.module_utils.fleet.core.common import FleetError
from ansible.module_utils.fleet.ops.drift import newest_backup_status

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture()
def directory(tmp_path: Path) -> Path:
    path = Path(backup_directory(str(tmp_path / "backups"), "prod", "db1", "equities"))
    path.mkdir(parents=True)
    return path


def make_backup(directory: Path, days_old: float, revision: str = "e5f7293c4a65", manifest: bool = True, dialect: str = "postgresql") -> str:
    """A backup file (and its manifest) created days_old days before NOW."""
    when = NOW - timedelta(days=days_old)
    path = directory / backup_filename(when, revision, dialect)
    assert not path.exists()
    path.write_bytes(b"dump")
    if manifest:
        payload = {"created_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "sha256": "0" * 64, "file": path.name}
        Path(str(path) + MANIFEST_SUFFIX).write_text(json.dumps(payload))
    return str(path)


def tree(directory: Path) -> set[str]:
    return {entry.name for entry in directory.iterdir()}


def plan(directory: Path, keep_last: int, keep_days: float, **kwargs: object) -> RetentionPlan:
    return plan_retention(str(directory), keep_last, keep_days, now=NOW, **kwargs)  # type: ignore[arg-type]


# -- the policy --------------------------------------------------------------
def test_only_keep_last(directory: Path) -> None:
    ages = [0.5, 3, 10, 40, 100]
    paths = [make_backup(directory, age) for age in ages]
    result = plan(directory, keep_last=2, keep_days=0)
    assert result.keep == paths[:2]  # newest first
    assert result.delete == paths[2:]


def test_only_keep_days(directory: Path) -> None:
    paths = [make_backup(directory, age) for age in (0.5, 6.9, 7.1, 30)]
    result = plan(directory, keep_last=1, keep_days=7)
    assert result.keep == paths[:2]
    assert result.delete == paths[2:]


def test_keep_days_is_a_strict_bound(directory: Path) -> None:
    newest = make_backup(directory, 1)
    exactly = make_backup(directory, 7)
    result = plan(directory, keep_last=1, keep_days=7)
    assert (result.keep, result.delete) == ([newest], [exactly])


def test_both_keep_the_union(directory: Path) -> None:
    # keep_last=3 keeps the three newest; keep_days=20 also keeps the 15-day-old one.
    paths = [make_backup(directory, age) for age in (1, 2, 3, 15, 25, 60)]
    result = plan(directory, keep_last=3, keep_days=20)
    assert result.keep == paths[:4]
    assert result.delete == paths[4:]
    # and the other way round: keep_days covers fewer than keep_last
    result = plan(directory, keep_last=5, keep_days=1.5)
    assert result.keep == paths[:5]
    assert result.delete == paths[5:]


def test_protected_old_backup_is_kept(directory: Path) -> None:
    paths = [make_backup(directory, age) for age in (1, 50, 90)]
    result = plan(directory, keep_last=1, keep_days=0, protect=[paths[2], "", "/elsewhere/x.dump"])
    assert result.keep == [paths[0], paths[2]]
    assert result.delete == [paths[1]]
    assert result.reasons[paths[2]] == PROTECTED


def test_protect_matches_relative_and_symlinked_paths(directory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [make_backup(directory, age) for age in (1, 50)]
    link = tmp_path / "link"
    link.symlink_to(directory)
    monkeypatch.chdir(directory)
    by_relative = plan(directory, keep_last=1, keep_days=0, protect=[os.path.basename(paths[1])])
    by_link = plan(directory, keep_last=1, keep_days=0, protect=[str(link / os.path.basename(paths[1]))])
    assert by_relative.delete == by_link.delete == []


def test_newest_is_always_kept(directory: Path) -> None:
    paths = [make_backup(directory, age) for age in (400, 500)]
    result = plan(directory, keep_last=1, keep_days=0)
    assert result.keep == [paths[0]]
    assert result.delete == [paths[1]]
    assert result.reasons[paths[0]] == "newest backup"


def test_newest_is_decided_by_the_manifest_not_the_name(directory: Path) -> None:
    # The name says older, the manifest (which wins) says newer.
    renamed = make_backup(directory, 30)
    other = make_backup(directory, 10)
    manifest = Path(renamed + MANIFEST_SUFFIX)
    manifest.write_text(json.dumps({"created_at": "2025-03-01T11:00:00Z"}))
    result = plan(directory, keep_last=1, keep_days=0)
    assert (result.keep, result.delete) == ([renamed], [other])


def test_name_timestamp_is_the_fallback(directory: Path) -> None:
    newest = make_backup(directory, 1, manifest=False)
    broken = make_backup(directory, 20)
    Path(broken + MANIFEST_SUFFIX).write_text("{not json")
    no_date = make_backup(directory, 30)
    Path(no_date + MANIFEST_SUFFIX).write_text(json.dumps({"created_at": "yesterday", "sha256": "0" * 64}))
    result = plan(directory, keep_last=1, keep_days=25)
    assert result.keep == [newest, broken]
    assert result.delete == [no_date]


def test_unknown_age_is_kept(directory: Path) -> None:
    old = make_backup(directory, 100)
    newest = make_backup(directory, 1)
    mystery = directory / "restored-by-hand.dump"
    mystery.write_bytes(b"dump")
    bad_stamp = directory / "20251399T250000Z_e5f7293c4a65.sqlite3"
    bad_stamp.write_bytes(b"db")
    result = plan(directory, keep_last=1, keep_days=0)
    assert result.keep == [newest, str(bad_stamp), str(mystery)]
    assert result.delete == [old]
    assert result.reasons[str(mystery)] == result.reasons[str(bad_stamp)] == UNKNOWN_AGE


def test_only_backups_are_considered(directory: Path) -> None:
    newest = make_backup(directory, 1, dialect="sqlite")
    old = make_backup(directory, 100, dialect="sqlite")
    partial = directory / (".%s.x1y2z3.partial" % os.path.basename(old))
    partial.write_bytes(b"half")
    (directory / ".manifest.abc.partial").write_text("{}")
    (directory / "notes.txt").write_text("hello")
    (directory / "orphan.dump.manifest.json").write_text(json.dumps({"created_at": "2020-01-01T00:00:00Z"}))
    (directory / "20200101T000000Z_nested.dump").mkdir()  # a directory, not a backup
    os.symlink(old, directory / "20200101T000000Z_link.sqlite3")
    deeper = directory / "sub"
    deeper.mkdir()
    make_backup(deeper, 500)
    result = plan(directory, keep_last=1, keep_days=0)
    assert (result.keep, result.delete) == ([newest], [old])
    before = tree(directory)
    assert apply_retention(result) == [old]
    assert tree(directory) == before - {os.path.basename(old), os.path.basename(old) + MANIFEST_SUFFIX}
    assert len(list(deeper.iterdir())) == 2


def test_same_second_copies_are_ordered_by_their_suffix(directory: Path) -> None:
    first = make_backup(directory, 5)
    second = first.replace(".dump", "-1.dump")
    third = first.replace(".dump", "-2.dump")
    for path in (second, third):
        Path(path).write_bytes(b"dump")
        Path(path + MANIFEST_SUFFIX).write_text(Path(first + MANIFEST_SUFFIX).read_text())
    result = plan(directory, keep_last=2, keep_days=0)
    assert result.keep == [third, second]
    assert result.delete == [first]


def test_same_second_backups_of_two_revisions_are_ordered_by_when_they_were_written(directory: Path) -> None:
    # The backup before a quick upgrade of an empty database and the one after it, in one second: 'base' sorts after
    # the head's id by name, so only the write time can say which is newer.
    before = make_backup(directory, 5, revision="base")
    after = make_backup(directory, 5, revision="0a1b2c3d4e5f")
    written = os.stat(before).st_mtime_ns
    os.utime(after, ns=(written + 1000, written + 1000))
    assert sorted([before, after]) == [after, before]
    result = plan(directory, keep_last=1, keep_days=0)
    assert result.keep == [after] and result.delete == [before]
    newest = newest_backup_status(str(directory))
    assert newest is not None and newest["path"] == after and newest["revision"] is None


def test_missing_directory_plans_nothing(tmp_path: Path) -> None:
    result = plan(tmp_path / "never-backed-up", keep_last=1, keep_days=0)
    assert result == RetentionPlan(keep=[], delete=[])


def test_paths_are_absolute(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    newest = make_backup(directory, 1)
    monkeypatch.chdir(directory.parent)
    result = plan_retention(directory.name, 1, 0, now=NOW)
    assert result.keep == [newest]


def test_default_now_is_the_current_time(directory: Path) -> None:
    newest = make_backup(directory, 1)
    old = make_backup(directory, 3)
    result = plan_retention(str(directory), 1, 0)  # NOW is in the past, ages only grow
    assert (result.keep, result.delete) == ([newest], [old])


def test_naive_now_is_taken_as_utc(directory: Path) -> None:
    paths = [make_backup(directory, age) for age in (1, 2.5)]
    naive = plan_retention(str(directory), 1, 2, now=NOW.replace(tzinfo=None))
    assert naive.delete == [paths[1]]


# -- applying ------------------------------------------------------------------
def test_apply_removes_files_with_their_manifests_and_is_idempotent(directory: Path) -> None:
    paths = [make_backup(directory, age) for age in (1, 10, 20)]
    result = plan(directory, keep_last=1, keep_days=0)
    assert apply_retention(result) == paths[1:]
    assert tree(directory) == {os.path.basename(paths[0]), os.path.basename(paths[0]) + MANIFEST_SUFFIX}
    assert apply_retention(result) == []
    assert plan(directory, keep_last=1, keep_days=0).delete == []


def test_apply_removes_a_backup_without_manifest(directory: Path) -> None:
    make_backup(directory, 1)
    bare = make_backup(directory, 10, manifest=False)
    assert apply_retention(plan(directory, keep_last=1, keep_days=0)) == [bare]
    assert not os.path.exists(bare)


def test_apply_refuses_paths_that_are_not_backups(directory: Path) -> None:
    precious = directory / "alembic.ini"
    precious.write_text("[alembic]\n")
    with pytest.raises(FleetError, match="is not a backup file"):
        apply_retention(RetentionPlan(keep=[], delete=[str(precious)]))
    assert precious.exists()


def test_as_dict(directory: Path) -> None:
    paths = [make_backup(directory, age) for age in (1, 10)]
    assert plan(directory, keep_last=1, keep_days=5).as_dict() == {
        "keep": [paths[0]],
        "delete": [paths[1]],
        "reasons": {paths[0]: "newest backup", paths[1]: "older than 5 days and not one of the newest 1"},
    }


# -- bad arguments -------------------------------------------------------------
@pytest.mark.parametrize(
    "keep_last, keep_days, option",
    [
        (0, 7, "keep_last"),
        (-3, 7, "keep_last"),
        (1.5, 7, "keep_last"),
        (True, 7, "keep_last"),
        (1, -1, "keep_days"),
        (1, -0.5, "keep_days"),
        (1, float("nan"), "keep_days"),
        (1, "7", "keep_days"),
    ],
)
def test_bad_arguments(directory: Path, keep_last: object, keep_days: object, option: str) -> None:
    make_backup(directory, 100)
    with pytest.raises(FleetError) as caught:
        plan_retention(str(directory), keep_last, keep_days, now=NOW)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith(option) and message.endswith(".") and "\n" not in message


def test_infinite_keep_days_keeps_everything(directory: Path) -> None:
    paths = [make_backup(directory, age) for age in (1, 1000, 5000)]
    result = plan(directory, keep_last=1, keep_days=float("inf"))
    assert (result.keep, result.delete) == (paths, [])

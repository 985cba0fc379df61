"""Each module's one-line summary, from its result and check mode alone (report.summary): the words the fleet role
prints after "<host>/<database>: "."""

from __future__ import annotations

from typing import Any

import pytest

from ansible.module_utils.fleet.report import summary

BACKUP = "/srv/backups/prod/db1/equities/20261123T172600Z_c3e5071a2d43.dump"
STEP = {"revision": "e5f7293c4a65"}


def test_upgrade_names_both_revisions_the_count_and_the_backup() -> None:
    done = {"changed": True, "before": ["c3e5071a2d43"], "after": ["e5f7293c4a65"], "applied": [STEP, STEP], "backup": {"path": BACKUP}}
    assert summary.upgrade_summary(done, False) == "upgraded c3e5071a2d43 -> e5f7293c4a65 (2 revisions), backup %s" % BACKUP
    planned = {"changed": True, "before": [], "after": ["e5f7293c4a65"], "pending": [STEP], "backup": {"path": BACKUP}}
    assert summary.upgrade_summary(planned, True) == "would upgrade base -> e5f7293c4a65 (1 revision), would back up to /srv/backups/prod/db1/equities"
    created = {"changed": True, "before": [], "after": ["a", "b"], "applied": [STEP], "exists": False}
    assert summary.upgrade_summary(created, False) == "upgraded base -> a, b (1 revision), new database (nothing to back up)"
    existing = {"changed": True, "before": ["a"], "after": ["b"], "applied": [STEP], "exists": True}
    assert summary.upgrade_summary(existing, False) == "upgraded a -> b (1 revision)"
    assert summary.upgrade_summary({"changed": False, "before": ["b"], "after": ["b"]}, False) == "at b, nothing to do"


def test_upgrade_of_several_databases_says_each_by_name() -> None:
    done = {"changed": True, "before": ["a"], "after": ["b"], "applied": [STEP], "exists": True}
    failed = {"failed": True, "msg": "target 'ffff' is not a revision\nof this project", "changed": False}
    result = {"changed": True, "databases": [dict(done, name="equities"), dict(failed, name="algorithms")]}
    line = summary.upgrade_many_summary(result, False)
    assert line == "equities: upgraded a -> b (1 revision); algorithms: upgrade failed: target 'ffff' is not a revision of this project"
    assert [entry["summary"] for entry in result["databases"]] == ["upgraded a -> b (1 revision)", line.split("; algorithms: ")[1]]
    assert summary.upgrade_many_summary({"changed": False, "databases": []}, False) == "no database"


def test_downgrade_and_stamp() -> None:
    undone = {"changed": True, "before": ["b"], "after": ["a"], "applied": [STEP]}
    assert summary.downgrade_summary(undone, False) == "downgraded b -> a (1 revision undone)"
    planned = {"changed": True, "before": ["b"], "after": [], "pending": [STEP, STEP], "backup": {"path": BACKUP}}
    assert summary.downgrade_summary(planned, True) == "would downgrade b -> base (2 revisions undone), would back up to /srv/backups/prod/db1/equities"
    assert summary.downgrade_summary({"changed": False, "after": ["a"]}, False) == "already at a, nothing to do"

    stamped = {"changed": True, "before": [], "after": ["b"], "schema_differences": []}
    assert summary.stamp_summary(stamped, False) == "stamped unversioned -> b (schema verified equal)"
    assert summary.stamp_summary({"changed": True, "before": ["a"], "after": ["b"]}, True) == "would stamp a -> b"
    assert summary.stamp_summary({"changed": False, "before": ["b"], "after": ["b"]}, False) == "already at b, nothing to do"


def test_backup_with_manifest_and_retention() -> None:
    done = {
        "changed": True,
        "path": BACKUP,
        "manifest": {"revision": "e5f7293c4a65", "size": 2048, "sha256": "0123456789abcdef0123"},
        "retention": {"deleted": ["x"], "would_delete": []},
    }
    assert summary.backup_summary(done, False) == "backed up e5f7293c4a65 to %s (2048 bytes, sha256 0123456789ab), retention deleted 1 old backup" % BACKUP
    planned = {"changed": True, "path": BACKUP, "retention": {"deleted": [], "would_delete": ["x", "y"]}}
    expected = "would back up e5f7 to /srv/backups/prod/db1/equities/, retention would delete 2 old backups"
    assert summary.backup_summary(planned, True, revision="e5f7") == expected
    assert summary.backup_summary(planned, True, revision="").startswith("would back up base to ")
    assert summary.backup_summary(planned, True).startswith("would back up the current revision to ")
    unversioned = {"changed": True, "path": BACKUP, "manifest": {"revision": None, "size": 1, "sha256": "ab"}}
    assert summary.backup_summary(unversioned, False) == "backed up base to %s (1 bytes, sha256 ab)" % BACKUP


def test_restore_drill_and_unlock() -> None:
    assert summary.restore_summary({"path": BACKUP, "revision": "a"}, False) == "restored %s (revision a)" % BACKUP
    assert summary.restore_summary({"path": BACKUP, "revision": ""}, True) == "would restore %s (revision base)" % BACKUP

    drilled = {"path": BACKUP, "revision": "a", "restore_seconds": 1.25, "checks": [{"ok": True}] * 5}
    assert summary.drill_summary(drilled, False) == "restored %s (revision a) into a scratch database in 1.25 s; all 5 checks passed" % BACKUP
    assert summary.drill_summary({"path": BACKUP}, True) == "would drill %s" % BACKUP
    assert summary.drill_summary({}, True) == "would drill the newest backup"

    holder = {"pid": 42, "run_id": None, "since": "2026-03-01T02:00:00Z"}
    assert summary.unlock_summary({"holder": holder}, False) == "ended pid 42 (run ?, since 2026-03-01T02:00:00Z)"
    assert summary.unlock_summary({"holder": dict(holder, run_id="r-1")}, True) == "would end pid 42 (run r-1, since 2026-03-01T02:00:00Z)"
    assert summary.unlock_summary({"holder": None}, False) == "holds no lock, nothing to release"


def test_review_lines() -> None:
    none: dict[str, Any] = {"current": ["b"], "revisions": [], "summary": {"errors": 0, "warnings": 0, "acknowledged": 0}, "blocked": False}
    assert summary.lint_summary(none, False) == "at b, nothing pending, nothing to review"
    mixed = {"current": [], "revisions": [{}, {}], "summary": {"errors": 1, "warnings": 2, "acknowledged": 1}, "blocked": False}
    assert summary.lint_summary(mixed, False) == "2 pending revisions from base reviewed: 1 error, 2 warnings, 1 acknowledged (not blocking)"
    clean = {"current": ["a"], "revisions": [{}], "summary": {"errors": 0, "warnings": 0, "acknowledged": 0}}
    assert summary.lint_summary(clean, True) == "1 pending revision from a reviewed: clean"
    blocked = dict(mixed, blocked=True)
    assert summary.lint_summary(blocked, False) == "NEEDS ATTENTION - the review blocks 2 pending revisions: 1 error, 2 warnings, 1 acknowledged"


def test_status_verify_and_report() -> None:
    assert summary.status_summary({"exists": True, "current": ["a"], "pending_count": 0}, False) == "at a, nothing pending"
    assert summary.status_summary({"exists": True, "current": [], "pending_count": 3}, False) == "at base, 3 revisions pending"
    many = {"databases": [{"name": "equities", "exists": False, "pending_count": 1}, {"name": "algorithms", "failed": True, "msg": "cannot\n connect"}]}
    assert summary.status_summary(many, False) == "equities: does not exist yet, 1 revision pending; algorithms: status failed: cannot connect"

    verified = {"current": ["b"], "schema_compared": True, "schema_compared_with": "models"}
    assert summary.verify_summary(verified, False) == "verified at b, schema equal to models"
    assert summary.verify_summary({"current": ["b"], "schema_compared": False}, False) == "verified at b, schema not compared"

    judged = {"summary": {"databases": 4, "red": 1, "amber": 1, "green": 2}, "paths": {"json": "/r/status.json"}}
    assert summary.report_summary(judged, False) == "4 databases: 1 red, 1 amber, 2 green; report /r/status.json"


@pytest.mark.parametrize(
    ("builder", "what"),
    [
        (summary.upgrade_summary, "upgrade"),
        (summary.downgrade_summary, "downgrade"),
        (summary.stamp_summary, "stamp"),
        (summary.backup_summary, "backup"),
        (summary.drill_summary, "restore drill"),
        (summary.unlock_summary, "release of the run lock"),
        (summary.lint_summary, "review"),
    ],
)
def test_a_failure_is_one_line_with_its_message(builder: Any, what: str) -> None:
    line = builder({"failed": True, "msg": "it went\n  wrong: do this", "changed": True}, False)
    assert line == "%s failed: it went wrong: do this" % what

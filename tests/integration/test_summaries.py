"""Every procedure ends with exactly one summary line per database, on a 2 x 2 fleet on real PostgreSQL, and the hosts
whose databases need attention are the ones that fail (each in its own line), while a host with only green databases
does not. The lines are read as an operator sees them: under the SUMMARY banner of the alembic_fleet stdout callback
(ansible.cfg), which collects the debug tasks tagged fleet_summary."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ansible.module_utils.fleet.report.health import Policy, database_verdict, judge_database
from support.ansible_run import REPO, Run, playbook
from support.pgcluster import PgCluster

from .conftest import HOSTS, PROJECTS, make_inventory, password_env
from .test_migrate_postgres import assert_no_secret

KEYS = ["%s/%s" % (host, name) for host in HOSTS for name in PROJECTS]
SCREEN = {"ANSIBLE_STDOUT_CALLBACK": "alembic_fleet"}  # as ansible.cfg sets it for operators
LINE = re.compile(r"^(?P<key>(?:%s)/(?:%s)): (?P<text>.*)$" % ("|".join(HOSTS), "|".join(PROJECTS)))


def play(inventory: Path, book: str, clusters: list[PgCluster], *args: str) -> Run:
    result = playbook(REPO / book, inventory, "-l", "prod", *args, env={**password_env(clusters), **SCREEN})
    assert_no_secret(result.output, clusters)
    return result


def summary(run: Run) -> dict[str, str]:
    """The run's summary lines by '<host>/<database>', each exactly once: the lines between the SUMMARY banner and
    the recap that start with a database's key."""
    block = run.summary()
    found: dict[str, str] = {}
    for line in block:
        match = LINE.match(line)
        if match:
            assert match["key"] not in found, "two summary lines for %s:\n%s" % (match["key"], "\n".join(block))
            found[match["key"]] = match["text"]
    assert sorted(found) == sorted(KEYS), "want one line per database, got:\n%s" % "\n".join(block)
    return found


def failed_hosts(run: Run) -> set[str]:
    return {host for host, counters in run.recap().items() if counters.get("failed", 0) or counters.get("unreachable", 0)}


NOW = datetime(2026, 3, 1, 2, 0, 0, tzinfo=UTC)
HEAD = "e5f7293c4a65"


def status(**overrides: Any) -> dict[str, Any]:
    """db1/equities at head, backed up an hour ago, drilled two days ago, no drift."""
    found: dict[str, Any] = {
        "environment": "prod",
        "host": "db1",
        "name": "equities",
        "exists": True,
        "current": [HEAD],
        "heads": [HEAD],
        "pending_count": 0,
        "last_success": {"finished_at": "2026-02-28T22:00:04Z"},
        "last_drill": {"outcome": "succeeded", "finished_at": "2026-02-27T02:00:00Z", "duration": 41.5},
        "lock_holder": None,
        "backup": {"created_at": "2026-03-01T01:00:00Z", "size": 1048576},
        "drift": {"checked": True, "differences": [], "allowed": []},
        "model_drift": {"checked": True, "differences": [], "allowed": []},
        "review": None,
    }
    found.update(overrides)
    return found


def verdict(**overrides: Any) -> dict[str, Any]:
    return database_verdict(judge_database(status(**overrides), Policy(), NOW))


def test_a_verdict_is_one_line_with_the_reasons_in_plain_words() -> None:
    green = verdict()
    assert green["key"] == "db1/equities" and green["attention"] == [] and green["colour"] == "green"
    assert (
        green["line"]
        == "db1/equities: at %s (head), 0 pending, backup 1.0 h old, last drill succeeded 2.0 d ago (2026-02-27T02:00:00Z, took 41.5 s), no drift" % HEAD
    )

    red = verdict(pending_count=1, backup={"created_at": "2026-02-27T20:00:00Z"})
    assert red["attention"] == ["1 revision behind head", "newest backup is 30.0 h old (limit 26 h)"]
    assert red["line"] == "db1/equities: NEEDS ATTENTION - 1 revision behind head; newest backup is 30.0 h old (limit 26 h)"
    assert verdict(pending_count=2)["attention"] == ["2 revisions behind head"]

    # A reason that spans lines (a status call's message) stays on the database's one line.
    failed = verdict(failed=True, msg="could not connect\n  to server")
    assert failed["line"] == "db1/equities: NEEDS ATTENTION - status failed: could not connect" and "\n" not in failed["line"]

    amber = verdict(lock_holder={"pid": 42, "run_id": "r-9"}, review={"errors": 0, "warnings": 1, "blocked": False})
    assert amber["colour"] == "amber" and amber["attention"] == []
    assert amber["line"].endswith(", no drift, review: 1 warning - worth a look: review: 1 warning (not blocking); run lock held (run_id r-9, pid 42)"), amber


@pytest.fixture()
def fleet(tmp_path: Path, fresh_pg: list[PgCluster]) -> Path:
    inventory = make_inventory(tmp_path, fresh_pg, fleet_report_dir=str(tmp_path / "reports"))
    done = play(inventory, "migrate.yml", fresh_pg)
    assert done.rc == 0, done.output[-3000:]
    return inventory


@pytest.mark.slow
def test_every_procedure_ends_with_one_line_per_database_and_fails_exactly_the_hosts_needing_attention(
    tmp_path: Path, fresh_pg: list[PgCluster], fleet: Path
) -> None:
    clean = play(fleet, "status.yml", fresh_pg)
    assert clean.rc == 0, clean.output[-3000:]
    lines = summary(clean)
    assert all(text.startswith("at ") and "(head), 0 pending" in text for text in lines.values()), lines
    assert failed_hosts(clean) == set()

    # One red database on EACH host: a column added by hand on db1 (drift), db2's backups gone (prod requires one).
    fresh_pg[0].execute("alter table companies add column notes text", dbname="equities")
    shutil.rmtree(tmp_path / "backups" / "prod" / "db2" / "algorithms")
    both = play(fleet, "status.yml", fresh_pg)
    assert both.rc != 0
    assert failed_hosts(both) == {"db1", "db2"}, both.recap()
    lines = summary(both)
    assert lines["db1/equities"].startswith("NEEDS ATTENTION - ") and "schema drift: column companies.notes" in lines["db1/equities"], lines
    assert lines["db2/algorithms"] == "NEEDS ATTENTION - no backup", lines
    assert not lines["db1/algorithms"].startswith("NEEDS") and not lines["db2/equities"].startswith("NEEDS"), lines
    # Each host fails in one line of its own, naming its own database and why (not the first host for both).
    flat = both.output
    assert re.search(r"^fatal: \[db1\]: db1: 1 database needs attention - equities: .*schema drift: column companies\.notes", flat, re.M), flat[-4000:]
    assert re.search(r"^fatal: \[db2\]: db2: 1 database needs attention - algorithms: no backup; see ", flat, re.M), flat[-4000:]
    assert "fatal: [db1 -> localhost]" not in flat

    # Only db2 red: db1, all green, does not fail.
    fresh_pg[0].execute("alter table companies drop column notes", dbname="equities")
    one = play(fleet, "status.yml", fresh_pg)
    assert failed_hosts(one) == {"db2"}, one.recap()
    lines = summary(one)
    assert [key for key, text in lines.items() if text.startswith("NEEDS ATTENTION")] == ["db2/algorithms"], lines

    # The other procedures, on the same fleet (backup.yml gives db2/algorithms its backup back).
    review = play(fleet, "review.yml", fresh_pg, "-e", "fleet_review_report=%s" % (tmp_path / "review.json"))
    assert review.rc == 0, review.output[-3000:]
    lines = summary(review)
    assert all(text.endswith(", nothing pending, nothing to review") for text in lines.values()), lines

    backup = play(fleet, "backup.yml", fresh_pg)
    assert backup.rc == 0, backup.output[-3000:]
    lines = summary(backup)
    assert all(text.startswith("backed up ") and "/prod/" in text for text in lines.values()), lines

    # --check names the directory a backup would go to, never a file it did not write.
    written = sorted(p.name for p in (tmp_path / "backups").rglob("*") if p.is_file())
    dry = play(fleet, "backup.yml", fresh_pg, "--check")
    assert dry.rc == 0, dry.output[-3000:]
    for key, text in summary(dry).items():
        host, name = key.split("/")
        assert text.startswith("would back up ") and ("to %s/," % (tmp_path / "backups" / "prod" / host / name)) in text, text
    assert sorted(p.name for p in (tmp_path / "backups").rglob("*") if p.is_file()) == written

    drills = play(fleet, "restore_check.yml", fresh_pg)
    assert drills.rc == 0, drills.output[-3000:]
    assert all(text.startswith("restored ") for text in summary(drills).values())

    # A failed drill: db2/equities has no backup left; only db2 fails, and its line says why.
    shutil.rmtree(tmp_path / "backups" / "prod" / "db2" / "equities")
    drills = play(fleet, "restore_check.yml", fresh_pg)
    assert failed_hosts(drills) == {"db2"}, drills.recap()
    lines = summary(drills)
    assert lines["db2/equities"].startswith("NEEDS ATTENTION - restore drill failed: "), lines
    assert re.search(r"^fatal: \[db2\]: db2: 1 restore drill failed: equities: ", drills.output, re.M), drills.output[-3000:]

    stamp = play(fleet, "stamp.yml", fresh_pg, "-e", "fleet_stamp_target=head")
    assert stamp.rc == 0, stamp.output[-3000:]
    assert all(text.endswith(", nothing to do") for text in summary(stamp).values())

    rollback = play(fleet, "rollback.yml", fresh_pg, "-e", "fleet_rollback_target=head-1", "-e", "fleet_rollback_allow_data_loss=true")
    assert rollback.rc == 0, rollback.output[-3000:]
    lines = summary(rollback)
    assert all(re.match(r"^downgraded \w+ -> \w+ \(1 revision undone\)", text) for text in lines.values()), lines

    unlock = play(fleet, "release_lock.yml", fresh_pg, "-e", "fleet_confirm=equities,algorithms")
    assert unlock.rc == 0, unlock.output[-3000:]
    assert set(summary(unlock).values()) == {"holds no lock, nothing to release"}

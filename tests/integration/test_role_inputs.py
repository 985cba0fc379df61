"""Wrong role variables stop at the role's argument validation, before any task that touches a database.

Every run uses the repo's own inventory, `-l local` (SQLite), with the database files, backups and reports in a
temporary directory. A control run with the same settings and no wrong variable creates the databases and their
ledgers there, so "nothing was created" means something.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from support.ansible_run import REPO, Run, playbook

pytestmark = pytest.mark.slow

INVENTORY = REPO / "inventory" / "hosts.yml"
SECRET = "Sekrit-7f3a9c-not-for-logs"


def run(tmp_path: Path, book: str, *args: str) -> Run:
    return playbook(
        REPO / book,
        INVENTORY,
        "-l",
        "local",
        "-e",
        "fleet_local_db_dir=%s" % (tmp_path / "db"),
        "-e",
        "fleet_backup_root=%s" % (tmp_path / "backups"),
        "-e",
        "fleet_review_report=%s" % (tmp_path / "reports" / "review.json"),
        "-e",
        "fleet_report_dir=%s" % (tmp_path / "reports"),
        *args,
    )


def databases(tmp_path: Path, **extra: object) -> str:
    """-e value: the local inventory's two databases (with a password, which SQLite ignores), plus `extra` in the first."""
    entries: list[dict[str, object]] = [
        {"name": name, "alembic_ini": "migrations/%s/alembic.ini" % name, "url": "sqlite:///%s" % (tmp_path / "db" / ("%s.db" % name))}
        for name in ("equities", "algorithms")
    ]
    entries[0].update(password=SECRET, **extra)
    return json.dumps({"fleet_databases": entries})


def tasks_run(output: str) -> list[str]:
    return re.findall(r"^TASK \[(.*)\] \*+$", output, re.M)


def assert_stopped_by_validation(result: Run, entry_point: str, tmp_path: Path, *phrases: str) -> None:
    out = result.output
    assert result.rc != 0, out[-3000:]
    assert "Validation of arguments failed" in out, out[-3000:]
    for phrase in phrases:
        assert phrase in out, "%r not in the output:\n%s" % (phrase, out[-3000:])
    # The validation of this entry point is the last task that ran: nothing after it, no database task. The run's
    # plan (plan_run, before any host is visited) reads fleet_databases too, and stops a broken entry even earlier.
    last = tasks_run(out)[-1]
    stopped_at = re.match(r"fleet : Validating arguments against arg spec '(\w+)'", last)
    assert stopped_at and stopped_at.group(1) in (entry_point, "plan_run"), tasks_run(out)
    assert SECRET not in out, "a database password was printed"
    assert not (tmp_path / "db").exists(), "a database (and its ledger) was created: %s" % sorted((tmp_path / "db").iterdir())
    assert not (tmp_path / "backups").exists()
    assert not (tmp_path / "reports").exists()


def ledger(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute("select action, outcome from alembic_fleet_ledger order by id"))


def test_control_the_same_settings_without_a_wrong_variable_create_the_databases_and_their_ledgers(tmp_path: Path) -> None:
    result = run(tmp_path, "migrate.yml", "-e", databases(tmp_path), "-e", "fleet_lock_timeout=2.5")
    assert result.rc == 0, result.output[-3000:]
    assert "Validating arguments against arg spec 'main'" in result.output
    for name in ("equities", "algorithms"):
        assert ledger(tmp_path / "db" / ("%s.db" % name)) == [("migrate", "succeeded")]
    assert SECRET not in result.output


def test_unknown_rollback_strategy(tmp_path: Path) -> None:
    result = run(tmp_path, "rollback.yml", "-e", "fleet_rollback_strategy=sideways")
    assert_stopped_by_validation(result, "rollback", tmp_path, "value of fleet_rollback_strategy must be one of: downgrade, restore, auto, got: sideways")


@pytest.mark.parametrize("book", ["migrate.yml", "rollback.yml"])
def test_a_setting_under_its_old_name_is_refused_naming_the_new_one(tmp_path: Path, book: str) -> None:
    # Before every setting took the one prefix fleet_, these were read; now they would be ignored without a word.
    result = run(tmp_path, book, "-e", "migrate_target=head-1", "-e", "rollback_strategy=restore")
    out = result.output
    assert result.rc != 0, out[-3000:]
    assert "migrate_target is now fleet_target; rollback_strategy is now fleet_rollback_strategy: set the new names instead; nothing was touched." in out
    assert tasks_run(out)[-1] == "fleet : No setting is given under its old name", tasks_run(out)
    assert not (tmp_path / "db").exists() and not (tmp_path / "backups").exists()


# (playbook, entry point, -e value, what the message must say)
CASES = [
    ("migrate.yml", "main", '{"fleet_databases": "not-a-list"}', "option 'fleet_databases'"),
    ("migrate.yml", "main", "fleet_lock_timeout=soon", "argument 'fleet_lock_timeout' is of type str and we were unable to convert to float"),
    ("migrate.yml", "main", '{"fleet_review_rules": ["x"]}', "argument 'fleet_review_rules' is of type list and we were unable to convert to dict"),
    ("migrate.yml", "main", "fleet_backup_required=maybe", "argument 'fleet_backup_required' is of type str and we were unable to convert to bool"),
    ("migrate.yml", "main", "fleet_backup_compress_level=12", "value of fleet_backup_compress_level must be one of: 0, 1, 2"),
    ("migrate.yml", "main", "fleet_lock_retries=many", "argument 'fleet_lock_retries' is of type str and we were unable to convert to int"),
    ("backup.yml", "backup_run", "fleet_backup_upgrade_first=perhaps", "argument 'fleet_backup_upgrade_first'"),
    ("rollback.yml", "rollback", "fleet_rollback_override=please", "argument 'fleet_rollback_override'"),
    ("stamp.yml", "stamp", "fleet_lock_wait=forever", "argument 'fleet_lock_wait'"),
    ("review.yml", "review", '{"fleet_review_rules": "strict"}', "argument 'fleet_review_rules'"),
    ("status.yml", "status", "fleet_max_backup_age_hours=old", "argument 'fleet_max_backup_age_hours'"),
    ("status.yml", "status", '{"fleet_drift_allow": {"table": "x"}}', "argument 'fleet_drift_allow'"),
]


@pytest.mark.parametrize(("book", "entry_point", "extra", "phrase"), CASES, ids=["%s:%s" % (c[0], c[2]) for c in CASES])
def test_wrong_role_variable(tmp_path: Path, book: str, entry_point: str, extra: str, phrase: str) -> None:
    result = run(tmp_path, book, "-e", databases(tmp_path), "-e", extra)
    assert_stopped_by_validation(result, entry_point, tmp_path, phrase)


@pytest.mark.parametrize(
    ("book", "entry_point", "fields", "phrases"),
    [
        ("migrate.yml", "main", {"alembic_in": "x"}, ["fleet_databases.alembic_in. Supported parameters include: acknowledge, alembic_ini,"]),
        ("migrate.yml", "main", {"create_database": "maybe"}, ["argument 'create_database' is of type str found in 'fleet_databases'"]),
        ("restore_check.yml", "restore_check", {"drift_allow": {"a": 1}}, ["argument 'drift_allow'", "'fleet_databases'"]),
        ("release_lock.yml", "release_lock", {"target": "head", "url": None}, ["missing required arguments: url found in fleet_databases"]),
    ],
    ids=["typo", "bool", "list", "required"],
)
def test_wrong_database_entry(tmp_path: Path, book: str, entry_point: str, fields: dict[str, object], phrases: list[str]) -> None:
    value = json.loads(databases(tmp_path, **fields))
    value["fleet_databases"][0] = {k: v for k, v in value["fleet_databases"][0].items() if v is not None}
    result = run(tmp_path, book, "-e", json.dumps(value))
    assert_stopped_by_validation(result, entry_point, tmp_path, *phrases)


def test_validation_runs_under_check_mode_and_tags(tmp_path: Path) -> None:
    result = run(tmp_path, "migrate.yml", "--check", "--tags", "nothing-such", "-e", databases(tmp_path), "-e", "fleet_lock_timeout=soon")
    assert_stopped_by_validation(result, "main", tmp_path, "argument 'fleet_lock_timeout'")


@pytest.mark.parametrize(("book", "name"), [("migrate.yml", "algorithms"), ("status.yml", "")], ids=["duplicate", "empty"])
def test_each_database_needs_a_name_of_its_own(tmp_path: Path, book: str, name: str) -> None:
    """Two entries with one name would share backups, report rows and ledger labels; an empty name names nothing."""
    result = run(tmp_path, book, "-e", databases(tmp_path, name=name))
    out = " ".join(result.output.split())
    assert result.rc != 0, out[-3000:]
    assert "Every entry of fleet_databases of localhost needs a name of its own" in out, out[-3000:]
    assert tasks_run(result.output)[-1] == "fleet : Every database entry has a name of its own", tasks_run(result.output)
    assert SECRET not in result.output, "a database password was printed"
    assert not (tmp_path / "db").exists() and not (tmp_path / "backups").exists()


def test_a_database_name_yaml_read_as_a_number_is_said_so(tmp_path: Path) -> None:
    result = run(tmp_path, "migrate.yml", "-e", databases(tmp_path, name=12345))
    out = " ".join(result.output.split())
    assert result.rc != 0, out[-3000:]
    assert "the name 12345 is not text (YAML read it as int): quote it, name: '12345'; nothing was touched." in out, out[-3000:]
    assert not (tmp_path / "db").exists() and not (tmp_path / "backups").exists()

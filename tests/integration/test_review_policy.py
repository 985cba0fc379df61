"""The review in the procedure: prod stops before the backup, dev warns and proceeds, review.yml, scripts/review,
and fleet_rollback_strategy=auto choosing restore for an irreversible revision. Real PostgreSQL, real playbooks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.ansible_run import REPO, Run, module, playbook
from support.pgcluster import PgCluster

from .conftest import make_inventory, password_env
from .test_bad_input import conn_args
from .test_migrate_postgres import assert_no_secret, backups_under, version_of
from .test_rollback import ledger

pytestmark = pytest.mark.slow

HAZARDS_INI = REPO / "tests" / "fixtures" / "hazards" / "alembic.ini"
CASES = REPO / "tests" / "fixtures" / "review_cases"


def hazard_inventory(root: Path, clusters: list[PgCluster], environment: str, target: str, **policy: Any) -> Path:
    """db1's equities database runs the hazards project up to target; algorithms stays the bundled project."""
    inventory = make_inventory(root, clusters, environment, projects={"equities": str(HAZARDS_INI)}, **policy)
    host_vars = inventory / "host_vars" / "db1.yml"
    data = yaml.safe_load(host_vars.read_text())
    data["fleet_databases"][0]["target"] = target
    host_vars.write_text(yaml.safe_dump(data, sort_keys=False))
    return inventory


def bring_to(cluster: PgCluster, revision: str) -> None:
    done, result = module("alembic_upgrade", {"config": str(HAZARDS_INI), **conn_args(cluster), "target": revision})
    assert done.rc == 0 and result.get("changed") is True, done.output[-3000:]


def play(inventory: Path, book: str, clusters: list[PgCluster], *args: str) -> Run:
    """A playbook on db1 alone (the inventory holds one environment), with no secret in its output."""
    result = playbook(REPO / book, inventory, "-l", "db1", *args, env=password_env(clusters))
    assert_no_secret(result.output, clusters)
    return result


def flat(run: Run) -> str:
    """The output with the callback's line wrapping undone."""
    return " ".join(run.output.split())


def test_prod_stops_before_the_backup_on_a_not_null_column_without_default(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    bring_to(db1, "0001")
    inventory = hazard_inventory(tmp_path, fresh_pg, "prod", "0002")

    checked = play(inventory, "migrate.yml", fresh_pg, "--check")
    assert checked.rc != 0 and "adding-required-field" in checked.output

    stopped = play(inventory, "migrate.yml", fresh_pg)
    assert stopped.rc != 0
    # One short line each: the header, the blocking finding, then every way out.
    lines = stopped.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith("equities: the review blocks the upgrade in prod and nothing was changed:"))
    finding = lines[start + 1]
    for phrase in ("0002 (0002_add_required_column.py)", "adding-required-field on accounts", "ALTER TABLE accounts ADD COLUMN region", "backfill"):
        assert phrase in finding, finding
    ways = [line.strip() for line in lines[start + 2 : start + 7]]
    assert ways[0] == "ways out:" and ways[1] == "- fix the revision", ways
    assert ways[2].startswith("- acknowledge: add to ") and "fleet-review.yml: acknowledge: {0002: {adding-required-field: <why it is safe>}}" in ways[2], ways
    assert ways[3:] == [
        "- change the rule's level: fleet_review_rules: {adding-required-field: warning}",
        "- stop blocking in this environment: fleet_review_block: false",
    ]
    assert version_of(db1, "equities") == ["0001"]
    assert backups_under(tmp_path / "backups") == [], "the review runs before any backup"
    assert [row["action"] for row in ledger(db1, "equities")] == ["upgrade"], "the blocked run recorded no change"


def test_dev_warns_and_proceeds_and_the_ledger_keeps_the_review(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    bring_to(db1, "0001")
    inventory = hazard_inventory(tmp_path, fresh_pg, "dev", "0002")

    checked = play(inventory, "migrate.yml", fresh_pg, "--check")
    assert checked.rc == 0, checked.output[-3000:]
    assert "0002 (0002_add_required_column.py): error adding-required-field on accounts" in flat(checked)
    assert version_of(db1, "equities") == ["0001"], "--check changes nothing"

    done = play(inventory, "migrate.yml", fresh_pg)
    assert done.rc == 0, done.output[-3000:]
    assert "error adding-required-field on accounts" in flat(done)
    assert version_of(db1, "equities") == ["0002"]
    assert len(backups_under(tmp_path / "backups")) >= 1
    last = ledger(db1, "equities")[-1]
    assert last["action"] == "migrate" and last["outcome"] == "succeeded"
    review = json.loads(last["revisions"])[0]["review"]
    assert review["reversibility"] == "lossy"
    assert [(f["rule"], f["severity"], f["table"]) for f in review["findings"]] == [("adding-required-field", "error", "accounts")]


def test_an_acknowledged_finding_does_not_block_prod_and_is_recorded(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    bring_to(db1, "0018")
    inventory = hazard_inventory(tmp_path, fresh_pg, "prod", "0019")
    done = play(inventory, "migrate.yml", fresh_pg)
    assert done.rc == 0, done.output[-3000:]
    assert "ban-drop-column on accounts" in flat(done) and "acknowledged (fleet_acknowledge): status was replaced by tier" in flat(done)
    assert version_of(db1, "equities") == ["0019"]
    review = json.loads(ledger(db1, "equities")[-1]["revisions"])[0]["review"]
    assert review["findings"] == [
        {
            "rule": "ban-drop-column",
            "severity": "error",
            "table": "accounts",
            "acknowledgement": "status was replaced by tier in release 4.2 and nothing reads it",
        }
    ]


def test_rollback_auto_restores_an_irreversible_run_and_downgrades_a_reversible_one(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    bring_to(db1, "0004")
    db1.execute("insert into accounts (email) values ('A@Example.com')", dbname="equities")
    inventory = hazard_inventory(tmp_path, fresh_pg, "dev", "0005")
    assert play(inventory, "migrate.yml", fresh_pg).rc == 0
    assert db1.execute("select email from accounts", dbname="equities") == [("a@example.com",)]

    restored = play(inventory, "rollback.yml", fresh_pg, "-e", "fleet_rollback_strategy=auto")
    assert restored.rc == 0, restored.output[-3000:]
    assert "restored" in restored.output
    assert version_of(db1, "equities") == ["0004"]
    assert db1.execute("select email from accounts", dbname="equities") == [("A@Example.com",)], "the backup brought the data back"

    # 0006 (a concurrent index) is reversible: auto downgrades it.
    bring_to(db1, "0005")
    inventory = hazard_inventory(tmp_path / "again", fresh_pg, "dev", "0006")
    assert play(inventory, "migrate.yml", fresh_pg).rc == 0
    downgraded = play(inventory, "rollback.yml", fresh_pg, "-e", "fleet_rollback_strategy=auto")
    assert downgraded.rc == 0, downgraded.output[-3000:]
    assert "downgraded 0006 -> 0005" in downgraded.output
    assert version_of(db1, "equities") == ["0005"]


def test_review_playbook_writes_the_report_and_fails_only_where_policy_blocks(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    bring_to(db1, "0001")
    report = tmp_path / "out" / "review.json"
    inventory = hazard_inventory(tmp_path, fresh_pg, "prod", "0004")
    blocked = play(inventory, "review.yml", fresh_pg, "-e", "fleet_review_report=%s" % report)
    assert blocked.rc != 0 and "the review blocks equities in prod" in blocked.output
    data = json.loads(report.read_text())
    assert data["blocked"] is True
    equities = next(d for d in data["databases"] if d["name"] == "equities")
    assert equities["host"] == "db1" and equities["environment"] == "prod" and equities["current"] == ["0001"]
    assert [e["revision"] for e in equities["revisions"]] == ["0002", "0003", "0004"]
    assert {f["rule"] for e in equities["revisions"] for f in e["findings"]} == {
        "adding-required-field",
        "require-concurrent-index-creation",
        "ban-drop-column",
        "lock-held-through-long-work",  # 0003's index build while 0002's ALTER TABLE holds accounts
    }
    algorithms = next(d for d in data["databases"] if d["name"] == "algorithms")
    assert algorithms["blocked"] is False and algorithms["pending_count"] == 4 and algorithms["current"] == []
    assert version_of(db1, "equities") == ["0001"] and backups_under(tmp_path / "backups") == []

    inventory = hazard_inventory(tmp_path / "dev", fresh_pg, "dev", "0004")
    report.unlink()
    reported = play(inventory, "review.yml", fresh_pg, "-e", "fleet_review_report=%s" % report)
    assert reported.rc == 0, reported.output[-3000:]
    assert json.loads(report.read_text())["blocked"] is False


def review_cli(*args: str) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "review.py"), *args], capture_output=True, text=True, timeout=300)
    data = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, data, done.stderr


def test_review_command_for_ci_needs_no_database() -> None:
    rc, data, err = review_cli(str(HAZARDS_INI), "--from", "0001", "--to", "0004")
    assert rc == 1 and data["blocked"] is True, err
    (project,) = data["projects"]
    assert [e["revision"] for e in project["revisions"]] == ["0002", "0003", "0004"]
    assert "0002 (0002_add_required_column.py): error adding-required-field on accounts" in err

    rc, data, err = review_cli(str(HAZARDS_INI), "--from", "0005", "--to", "0007")
    assert rc == 0 and data["blocked"] is False and data["projects"][0]["summary"]["errors"] == 0, err

    rc, data, err = review_cli(str(HAZARDS_INI), "--from", "0001", "--to", "0004", "--env", "dev")
    assert rc == 0 and data["block"] is False and data["projects"][0]["summary"]["errors"] == 3, err

    rc, data, err = review_cli(str(HAZARDS_INI), "--from", "0001", "--to", "0002", "--rule", "adding-required-field=warning")
    assert rc == 0 and data["projects"][0]["summary"] == {"errors": 0, "warnings": 1, "acknowledged": 0}, err

    rc, data, err = review_cli(str(HAZARDS_INI), "--rule", "adding-required-field=loud")
    assert rc == 2 and data == {} and err.count("\n") == 1 and "give one of error, warning, off" in err

    # The bundled projects pass prod's policy from base to head.
    rc, data, err = review_cli("--env", "prod")
    assert rc == 0, err
    assert sorted(Path(p["project"]).parent.name for p in data["projects"]) == ["algorithms", "equities"]


def test_status_reviews_with_acknowledgements_from_the_file_the_option_and_a_database_entry(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    """alembic_status (the preflight's review): acknowledge at the top level and per database entry, over the
    project's fleet-review.yml; a blocking review returns its block message, every way out on a line of its own."""
    db1 = fresh_pg[0]
    project = tmp_path / "review_cases"
    shutil.copytree(CASES, project, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    ini = str(project / "alembic.ini")
    done, _ = module("alembic_upgrade", {"config": ini, **conn_args(db1), "target": "3c4d5e6f7081"})
    assert done.rc == 0, done.output[-3000:]

    def status(**extra: Any) -> dict[str, Any]:
        run, result = module("alembic_status", {"config": ini, **conn_args(db1), "review": True, "review_block": True, **extra})
        assert run.rc == 0 and "msg" not in result, run.output[-3000:]
        return dict(result["review"])

    blocked = status()
    assert blocked["blocked"] is True and blocked["errors"] == 1
    lines = blocked["block_message"]
    assert lines[0] == "equities: the review blocks the upgrade and nothing was changed:"
    assert "4d5e6f708192 (4d5e6f708192_accounts_region.py): error adding-required-field on accounts" in lines[1]
    assert lines[2:] == [
        "ways out:",
        "- fix the revision",
        "- acknowledge: add to %s: acknowledge: {4d5e6f708192: {adding-required-field: <why it is safe>}}" % (project / "fleet-review.yml"),
        "- change the rule's level: fleet_review_rules: {adding-required-field: warning}",
        "- stop blocking in this environment: fleet_review_block: false",
    ]

    (project / "fleet-review.yml").write_text(yaml.safe_dump({"acknowledge": {"4d5e6f70": {"adding-required-field": "accounts is empty until release 2"}}}))
    from_file = status()
    assert from_file["blocked"] is False and from_file["acknowledged"] == 1 and from_file["block_message"] == []
    assert any(line.endswith("- acknowledged (fleet-review.yml): accounts is empty until release 2") for line in from_file["report"])

    from_option = status(acknowledge={"4d5e6f708192": {"adding-required-field": "said in the inventory"}})
    assert any(line.endswith("- acknowledged (acknowledge option): said in the inventory") for line in from_option["report"])

    run, result = module(
        "alembic_status",
        {
            "databases": [
                {"name": "equities", "config": ini, **conn_args(db1), "acknowledge": {"4d5e": {"adding-required-field": "said for this database"}}},
                {"name": "bad", "config": ini, **conn_args(db1), "acknowledge": {"ffff0000": {"adding-required-field": "x"}}},
            ],
            "review": True,
            "review_block": True,
        },
    )
    assert run.rc == 0, run.output[-3000:]
    good, bad = result["databases"]
    assert good["failed"] is False and good["review"]["blocked"] is False
    assert any(line.endswith("- acknowledged (acknowledge option): said for this database") for line in good["review"]["report"])
    assert bad["failed"] is True and bad["msg"].startswith("the acknowledge option: acknowledge: ffff0000 names no revision of this project")
    assert version_of(db1, "equities") == ["3c4d5e6f7081"], "status changed nothing"

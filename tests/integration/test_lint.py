"""alembic_lint on the hazards fixture: exactly the expected findings per revision, none on the safe twins, the
policy, acknowledgements, read-only. And on review_cases, a history shaped like the ones we did not write (issue
14): fresh installs, tables created earlier in the plan, acknowledgements outside the revision files, unknown
reversibility, what the source cannot tell, the block message. And on SQLite (issue 16, point 12): no
PostgreSQL-only rule, and batch mode's table copy judged by what the revision does, not by the copy's DROP TABLE."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible.module_utils.fleet.review.rules import RULES
from support.ansible_run import REPO, module
from support.pgcluster import PgCluster

from .test_bad_input import conn_args

pytestmark = pytest.mark.slow

HAZARDS_INI = str(REPO / "tests" / "fixtures" / "hazards" / "alembic.ini")
CASES = REPO / "tests" / "fixtures" / "review_cases"
PG_URL = "postgresql://x@localhost/db"


def lint(args: dict[str, Any], *flags: str) -> dict[str, Any]:
    run, result = module("alembic_lint", {"config": HAZARDS_INI, **args}, *flags)
    assert run.rc == 0 and "msg" not in result, run.output[-3000:]
    return result


def rules(result: dict[str, Any]) -> dict[str, set[str]]:
    return {entry["revision"]: {f["rule"] for f in entry["findings"]} for entry in result["revisions"]}


# Exactly what the hazards fixture must yield under the built-in levels for a database at 0001 (accounts exists):
# one hazard per revision, and nothing on the safe twins (0006 a concurrent index in an autocommit block, 0007 NOT
# NULL with a server default and a new table's index, 0010 a CHECK added NOT VALID, 0016 a data migration of its
# own). 0012 renames and 0014 drops a table that 0007 creates in the same plan: no one can be using it yet. In one
# transaction for the whole plan, 0003's index build and 0013's rewrite run while the ACCESS EXCLUSIVE lock an earlier
# revision took (0002's ALTER TABLE accounts, 0011's rename) is still held: lock-held-through-long-work.
EXPECTED: dict[str, set[tuple[str, str]]] = {
    "0002": {("adding-required-field", "error")},
    "0003": {("require-concurrent-index-creation", "error"), ("lock-held-through-long-work", "warning")},
    "0004": {("ban-drop-column", "error")},
    "0005": {("irreversible-downgrade", "error")},
    "0006": set(),
    "0007": set(),
    "0008": {("adding-foreign-key-constraint", "error"), ("constraint-missing-not-valid", "error")},
    "0009": {("constraint-missing-not-valid", "error")},
    "0010": set(),
    "0011": {("renaming-column", "error")},
    "0012": set(),
    "0013": {("changing-column-type", "error"), ("lock-held-through-long-work", "warning")},
    "0014": set(),
    "0015": {("mixed-data-and-schema", "warning")},
    "0016": set(),
    "0017": {("non-transactional", "warning")},
    "0018": {("irreversible-downgrade", "error")},
    "0019": {("ban-drop-column", "error")},
    "0020": {("adding-required-field", "error"), ("mixed-data-and-schema", "warning")},
}
ALL = sorted(EXPECTED)


@pytest.fixture(scope="module")
def offline_pg() -> dict[str, Any]:
    return lint({"url": PG_URL, "offline": True, "from_revision": "0001"})


def test_the_hazards_yield_exactly_the_expected_findings_and_the_safe_twins_none(offline_pg: dict[str, Any]) -> None:
    result = offline_pg
    assert result["changed"] is False
    assert [e["revision"] for e in result["revisions"]] == ALL and result["pending_count"] == len(ALL)
    found = {e["revision"]: {(f["rule"], f["severity"]) for f in e["findings"]} for e in result["revisions"]}
    assert found == EXPECTED
    by_revision = {e["revision"]: e for e in result["revisions"]}
    assert result["fresh"] is False
    assert by_revision["0012"]["skipped"] == ["renaming-table on owners: the table is created earlier in this plan, so nothing can be blocked"]
    assert by_revision["0014"]["skipped"] == ["ban-drop-table on legacy_events: the table is created earlier in this plan, so nothing can be blocked"]
    # SQL-level findings name the statement and its table; alembic-fleet sets the timeouts itself, and Alembic's
    # version table is not the revision's.
    for entry in result["revisions"]:
        for finding in entry["findings"]:
            assert finding["rule"] not in ("require-lock-timeout", "require-statement-timeout")
            assert "alembic_version" not in finding["statement"]
            assert finding["why"] and finding["fix"] and "\n" not in finding["why"] + finding["fix"]
    required = by_revision["0002"]["findings"][0]
    assert required["table"] == "accounts" and required["statement"].startswith("ALTER TABLE accounts ADD COLUMN region")
    assert required["source"] == "squawk" and "server_default" in required["fix"]
    index = by_revision["0003"]["findings"][0]
    assert index["statement"].startswith("CREATE INDEX ix_accounts_email") and index["line"] >= 1
    assert "postgresql_concurrently=True" in index["fix"]
    # Reversibility tags, the same classification rollback uses.
    assert {r: by_revision[r]["reversibility"] for r in ("0002", "0004", "0005", "0006", "0018")} == {
        "0002": "lossy",
        "0004": "reversible",
        "0005": "irreversible",
        "0006": "reversible",
        "0018": "irreversible",
    }
    assert "empty (pass)" in by_revision["0018"]["findings"][0]["why"]
    # Statements outside the transaction: 0006 alone is re-runnable (no finding), but still not transactional.
    assert by_revision["0006"]["transactional"] is False and by_revision["0017"]["transactional"] is False
    assert by_revision["0002"]["transactional"] is True
    # The acknowledged drop is listed with its reason and is not an error any more.
    (dropped,) = by_revision["0019"]["findings"]
    assert dropped["acknowledged"] is True and dropped["acknowledgement"].startswith("status was replaced by tier")
    assert dropped["acknowledged_by"] == "fleet_acknowledge", "the revision's own acknowledgement still counts"
    assert by_revision["0019"]["unused_acknowledgements"] == []
    # 0020 cannot render offline: reviewed from its upgrade() operations, and it says so.
    fallback = by_revision["0020"]
    assert fallback["sql_rendered"] is False and "reviewed from the source" in fallback["note"]
    assert {f["source"] for f in fallback["findings"]} == {"alembic-fleet (source)"}
    errors = sum(1 for e in result["revisions"] for f in e["findings"] if f["severity"] == "error" and not f["acknowledged"])
    assert result["summary"] == {"errors": errors, "warnings": 5, "acknowledged": 1} and errors == 11
    assert len(result["errors"]) == errors and result["blocked"] is False, "block is off by default"
    assert all(line.startswith("00") for line in result["report"]) and len(result["report"]) == errors + 6


def test_tables_that_existed_before_the_plan_are_still_reviewed() -> None:
    result = lint({"url": PG_URL, "offline": True, "from_revision": "0011", "target": "0014"})
    assert rules(result) == {"0012": {"renaming-table"}, "0013": {"changing-column-type", "lock-held-through-long-work"}, "0014": {"ban-drop-table"}}


def test_a_fresh_install_from_base_blocks_nothing_it_cannot_block() -> None:
    result = lint({"url": PG_URL, "offline": True, "block": True})
    assert result["fresh"] is True and result["current"] == []
    found = {e["revision"]: {(f["rule"], f["severity"]) for f in e["findings"]} for e in result["revisions"]}
    # Only what a fresh install still suffers: a downgrade that cannot undo, data and schema mixed, work outside the
    # transaction. Every lock, rewrite, rename or drop is on a table no one can be using yet.
    assert {rev: rules for rev, rules in found.items() if rules} == {
        "0005": {("irreversible-downgrade", "error")},
        "0015": {("mixed-data-and-schema", "warning")},
        "0017": {("non-transactional", "warning")},
        "0018": {("irreversible-downgrade", "error")},
        "0020": {("mixed-data-and-schema", "warning")},
    }
    skipped = [line for e in result["revisions"] for line in e["skipped"]]
    assert len(skipped) == 12 and all(line.endswith(": the database was empty before this run, so nothing can be blocked") for line in skipped)
    assert "adding-required-field on accounts: the database was empty before this run, so nothing can be blocked" in skipped


def test_block_and_the_policy_change_levels() -> None:
    blocked = lint({"url": PG_URL, "offline": True, "from_revision": "0001", "target": "0002", "block": True})
    assert blocked["blocked"] is True and blocked["errors"] == [
        (
            "0002 (0002_add_required_column.py): error adding-required-field on accounts "
            '("ALTER TABLE accounts ADD COLUMN region TEXT NOT NULL;") - fix: add the column nullable (or with '
            "server_default=...), backfill it, then set NOT NULL in a later revision"
        )
    ]
    relaxed = lint({"url": PG_URL, "offline": True, "from_revision": "0001", "target": "0002", "block": True, "rules": {"adding-required-field": "warning"}})
    assert relaxed["blocked"] is False and relaxed["summary"] == {"errors": 0, "warnings": 1, "acknowledged": 0}
    silenced = lint({"url": PG_URL, "offline": True, "from_revision": "0001", "target": "0002", "rules": {"adding-required-field": "off"}})
    assert silenced["revisions"][0]["findings"] == []
    # A rule that is off by default can be turned on.
    styled = lint({"url": PG_URL, "offline": True, "from_revision": "0001", "target": "0002", "rules": {"require-lock-timeout": "warning"}})
    assert {f["rule"] for f in styled["revisions"][0]["findings"]} == {"adding-required-field", "require-lock-timeout"}


def test_bad_policy_fails_in_one_line() -> None:
    for rules, phrase in (({"ban-drop-column": "loud"}, "give one of error, warning, off"), ({"Not A Rule": "off"}, "is not a rule name")):
        run, result = module("alembic_lint", {"config": HAZARDS_INI, "url": PG_URL, "offline": True, "rules": rules})
        assert run.rc != 0 and phrase in result.get("msg", ""), run.output[-2000:]
        assert "\n" not in result["msg"] and result.get("changed") is not True


def test_safe_twin_has_no_findings() -> None:
    result = lint({"url": PG_URL, "offline": True, "from_revision": "0005", "target": "0007"})
    assert rules(result) == {"0006": set(), "0007": set()}
    assert result["summary"] == {"errors": 0, "warnings": 0, "acknowledged": 0}


def test_check_mode_gives_the_same_result(offline_pg: dict[str, Any]) -> None:
    checked = lint({"url": PG_URL, "offline": True, "from_revision": "0001"}, "--check")
    assert checked["changed"] is False
    strip = lambda r: [dict(e) for e in r["revisions"]]  # noqa: E731
    assert strip(checked) == strip(offline_pg) and checked["summary"] == offline_pg["summary"]


def test_sqlite_database_lints_only_pending(tmp_path: Path) -> None:
    url = "sqlite:///%s" % (tmp_path / "x.db")
    run, up = module("alembic_upgrade", {"config": HAZARDS_INI, "url": url, "target": "0001", "create_database": True})
    assert run.rc == 0 and up.get("changed") is True, run.output[-3000:]
    result = lint({"url": url})
    assert result["changed"] is False and result["current"] == ["0001"] and result["fresh"] is False
    assert [e["revision"] for e in result["revisions"]] == ALL and result["pending_count"] == len(ALL)
    assert rules(result)["0005"] >= {"irreversible-downgrade"}
    for entry in result["revisions"]:
        assert entry["sql_rendered"] or entry["note"]


def test_unknown_target_fails_in_one_line() -> None:
    run, result = module("alembic_lint", {"config": HAZARDS_INI, "url": PG_URL, "offline": True, "target": "ffff9999"})
    assert run.rc != 0 and result.get("msg"), run.output[-2000:]
    message = result["msg"]
    assert "\n" not in message and "ffff9999" in message and not message.startswith("unexpected "), message
    assert "exception" not in result and result.get("changed") is not True


# -- review_cases: histories we did not write (issue 14) -------------------------------------------------------------
CASE_IDS = ("1a2b3c4d5e6f", "2b3c4d5e6f70", "3c4d5e6f7081", "4d5e6f708192", "5e6f708192a3", "6f708192a3b4")
SHAPE, REGION, EMAIL, MERGE = CASE_IDS[2:]


def cases(tmp_path: Path, review_file: dict[str, Any] | None = None) -> str:
    """A copy of review_cases (with a fleet-review.yml when given); returns its alembic.ini."""
    project = tmp_path / "review_cases"
    shutil.copytree(CASES, project, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    if review_file is not None:
        (project / "fleet-review.yml").write_text(yaml.safe_dump(review_file))
    return str(project / "alembic.ini")


def lint_cases(ini: str, **args: Any) -> dict[str, Any]:
    run, result = module("alembic_lint", {"config": ini, "url": PG_URL, "offline": True, **args})
    assert run.rc == 0 and "msg" not in result, run.output[-3000:]
    return result


def by_revision(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["revision"]: entry for entry in result["revisions"]}


def test_a_fresh_database_on_postgresql_is_reviewed_as_a_fresh_install(fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    empty, result = module("alembic_lint", {"config": str(CASES / "alembic.ini"), **conn_args(db1), "block": True})
    assert empty.rc == 0, empty.output[-3000:]
    assert result["fresh"] is True and result["current"] == [] and result["pg_version"].startswith("15")
    assert result["summary"]["errors"] == 0 and result["blocked"] is False and result["block_message"] == []
    assert by_revision(result)[SHAPE]["skipped"], "the lock findings on events were left out, and listed"

    # At 2b3c... events exists: the same revision's findings on it are errors now.
    done, _ = module("alembic_upgrade", {"config": str(CASES / "alembic.ini"), **conn_args(db1), "target": CASE_IDS[1]})
    assert done.rc == 0, done.output[-3000:]
    run, result = module("alembic_lint", {"config": str(CASES / "alembic.ini"), **conn_args(db1), "block": True})
    assert run.rc == 0, run.output[-3000:]
    assert result["fresh"] is False and result["current"] == [CASE_IDS[1]]
    assert {(f["rule"], f["table"]) for f in by_revision(result)[SHAPE]["findings"]} == {
        ("adding-required-field", "events"),
        ("require-concurrent-index-creation", "events"),
        ("adding-foreign-key-constraint", "events"),
        ("constraint-missing-not-valid", "events"),
    }
    assert result["blocked"] is True


def test_tables_created_earlier_in_the_plan_cannot_block(tmp_path: Path) -> None:
    result = lint_cases(str(CASES / "alembic.ini"), from_revision=CASE_IDS[0])
    assert result["fresh"] is False
    entries = by_revision(result)
    assert entries[SHAPE]["findings"] == [] and len(entries[SHAPE]["skipped"]) == 4
    assert all("the table is created earlier in this plan" in line for line in entries[SHAPE]["skipped"])
    # accounts was there before the plan: its required column is an error.
    assert [(f["rule"], f["table"], f["severity"]) for f in entries[REGION]["findings"] if f["severity"] == "error"] == [
        ("adding-required-field", "accounts", "error")
    ]


def test_reversibility_of_a_merge_and_of_a_conditional_refusal() -> None:
    entries = by_revision(lint_cases(str(CASES / "alembic.ini")))
    assert entries[MERGE]["reversibility"] == "reversible" and entries[MERGE]["findings"] == []
    assert entries[EMAIL]["reversibility"] == "unknown"
    (uncertain,) = [f for f in entries[EMAIL]["findings"] if f["rule"] == "uncertain-downgrade"]
    assert uncertain["severity"] == "warning" and "only under a condition" in uncertain["why"] and uncertain["fix"]
    assert not any(f["rule"] == "irreversible-downgrade" for e in entries.values() for f in e["findings"])


def test_what_the_source_cannot_tell_is_a_warning_never_an_error() -> None:
    result = lint_cases(str(CASES / "alembic.ini"), from_revision=SHAPE, rules={"require-concurrent-index-creation": "error"})
    email = by_revision(result)[EMAIL]
    assert email["sql_rendered"] is False and "reviewed from the source" in email["note"]
    (index,) = [f for f in email["findings"] if f["rule"] == "require-concurrent-index-creation"]
    assert index["severity"] == "warning" and index["uncertain"].startswith("postgresql_concurrently=version >= 110000")
    assert "(uncertain: postgresql_concurrently=" in next(line for line in result["report"] if "require-concurrent-index-creation" in line)
    assert not any(f["rule"] == "mixed-data-and-schema" for f in email["findings"]), "its SELECTs only read"
    # Every finding has a fix, squawk's rules without one of their own included.
    findings = [f for e in result["revisions"] for f in e["findings"]]
    assert all(f["fix"].strip() and f["why"].strip() for f in findings)
    (default,) = [f for f in findings if f["rule"] == "ban-drop-default"]
    assert default["fix"] == "see squawk's rule ban-drop-default: https://squawkhq.com/docs/ban-drop-default"
    assert all(not line.endswith("fix: ") for line in result["report"])


def test_the_merge_note_talks_about_the_revision_not_a_database() -> None:
    result = lint_cases(str(CASES / "alembic.ini"), from_revision=SHAPE)
    for entry in result["revisions"]:
        assert "the database" not in (entry["note"] or ""), entry["note"]


def test_acknowledgements_from_the_review_file_and_the_option(tmp_path: Path) -> None:
    reason = "accounts is empty until the import job of release 2 runs"
    ini = cases(tmp_path, {"acknowledge": {REGION[:4]: {"adding-required-field": reason}, SHAPE: {"require-concurrent-index-creation": "tiny table"}}})
    before = {p.name: p.read_bytes() for p in (Path(ini).parent / "versions").iterdir() if p.suffix == ".py"}
    result = lint_cases(ini, from_revision=CASE_IDS[1], block=True)
    entries = by_revision(result)
    (required,) = [f for f in entries[REGION]["findings"] if f["rule"] == "adding-required-field"]
    assert (required["acknowledged"], required["acknowledgement"], required["acknowledged_by"]) == (True, reason, "fleet-review.yml")
    assert "- acknowledged (fleet-review.yml): %s" % reason in next(line for line in result["report"] if line.startswith(REGION) and "adding-required" in line)
    assert entries[SHAPE]["acknowledgement_sources"] == {"require-concurrent-index-creation": "fleet-review.yml"}
    assert result["summary"]["acknowledged"] == 2 and result["blocked"] is True, "events' other findings still block"
    # The option wins per revision and rule; the file's other acknowledgements stay.
    option = lint_cases(ini, from_revision=CASE_IDS[1], acknowledge={REGION: {"adding-required-field": "known from the option"}})
    (required,) = [f for f in by_revision(option)[REGION]["findings"] if f["rule"] == "adding-required-field"]
    assert (required["acknowledgement"], required["acknowledged_by"]) == ("known from the option", "acknowledge option")
    assert option["summary"]["acknowledged"] == 2
    after = {p.name: p.read_bytes() for p in (Path(ini).parent / "versions").iterdir() if p.suffix == ".py"}
    assert after == before, "acknowledging never touches a revision file (its ledger checksum stays valid)"


@pytest.mark.parametrize(
    "acknowledge, phrases",
    [
        ({"ffff9999": {"ban-drop-column": "x"}}, ["acknowledge: ffff9999 names no revision of this project"]),
        ({REGION: {"no-such-rule": "x"}}, ["'no-such-rule' is not a rule of the review"]),
        ({REGION: {"adding-required-field": "  "}}, ["adding-required-field has no reason"]),
        ({REGION[:3]: {"adding-required-field": "x"}}, ["is too short a prefix"]),
        ({REGION: "ban-drop-column"}, ["give a mapping of rule to reason"]),
    ],
)
def test_a_bad_acknowledgement_fails_in_one_line_naming_where(tmp_path: Path, acknowledge: dict[str, Any], phrases: list[str]) -> None:
    ini = cases(tmp_path, {"acknowledge": acknowledge})
    run, result = module("alembic_lint", {"config": ini, "url": PG_URL, "offline": True})
    message = result.get("msg", "")
    assert run.rc != 0 and "\n" not in message and message.startswith(str(Path(ini).parent / "fleet-review.yml") + ": "), run.output[-2000:]
    assert all(phrase in message for phrase in phrases), message
    run, result = module("alembic_lint", {"config": str(CASES / "alembic.ini"), "url": PG_URL, "offline": True, "acknowledge": acknowledge})
    message = result.get("msg", "")
    assert run.rc != 0 and message.startswith("the acknowledge option: ") and all(phrase in message for phrase in phrases), message


def test_the_block_message_lists_every_way_out(tmp_path: Path) -> None:
    ini = cases(tmp_path)
    result = lint_cases(ini, from_revision=SHAPE, block=True)
    lines = result["block_message"]
    review_file = str(Path(ini).parent / "fleet-review.yml")
    assert lines[0] == "db: the review blocks the upgrade and nothing was changed:"
    assert lines[1].startswith("  %s (4d5e6f708192_accounts_region.py): error adding-required-field on accounts" % REGION)
    assert lines[2:] == [
        "ways out:",
        "- fix the revision",
        "- acknowledge: add to %s: acknowledge: {%s: {adding-required-field: <why it is safe>}}" % (review_file, REGION),
        "- change the rule's level: fleet_review_rules: {adding-required-field: warning}",
        "- stop blocking in this environment: fleet_review_block: false",
    ]
    assert result["review_file"] == review_file
    assert lint_cases(ini, from_revision=SHAPE)["block_message"] == [], "only a blocking review has one"


# -- dialects (issue 16, point 12) -------------------------------------------------------------------------------------
SQLITE_URL = "sqlite:///review.db"  # offline: never opened
POSTGRESQL_ONLY = {name for name, rule in RULES.items() if rule.dialects == ("postgresql",)}
# The hazards on SQLite from 0001: what concerns every dialect (data loss, renames, required columns, downgrades,
# data and schema mixed); the index, constraint, type-change and held-lock findings of EXPECTED are PostgreSQL's.
EXPECTED_SQLITE = {
    "0002": {("adding-required-field", "error")},
    "0004": {("ban-drop-column", "error")},
    "0005": {("irreversible-downgrade", "error")},
    "0011": {("renaming-column", "error")},
    "0015": {("mixed-data-and-schema", "warning")},
    "0018": {("irreversible-downgrade", "error")},
    "0019": {("ban-drop-column", "error")},
    "0020": {("adding-required-field", "error"), ("mixed-data-and-schema", "warning")},
}


def test_a_sqlite_plan_gets_no_postgresql_only_finding_and_a_postgresql_plan_still_does(offline_pg: dict[str, Any]) -> None:
    result = lint({"url": SQLITE_URL, "offline": True, "from_revision": "0001"})
    found = {e["revision"]: {(f["rule"], f["severity"]) for f in e["findings"]} for e in result["revisions"]}
    assert {rev: rules for rev, rules in found.items() if rules} == EXPECTED_SQLITE
    entries = by_revision(result)
    assert entries["0003"]["skipped"] == [
        "require-concurrent-index-creation on accounts: a rule for postgresql only, and this database is sqlite",
        "lock-held-through-long-work on accounts: a rule for postgresql only, and this database is sqlite",
    ]
    assert entries["0008"]["skipped"] == ["adding-foreign-key-constraint on accounts: a rule for postgresql only, and this database is sqlite"]
    assert not any("require-lock-timeout" in line for e in result["revisions"] for line in e["skipped"]), "a rule that is off is not listed"
    assert "PostgreSQL-only rules are left out" in entries["0002"]["note"]
    # The same plan for PostgreSQL keeps them.
    postgresql = {f["rule"] for e in offline_pg["revisions"] for f in e["findings"]}
    assert postgresql & POSTGRESQL_ONLY == {
        "require-concurrent-index-creation",
        "lock-held-through-long-work",
        "adding-foreign-key-constraint",
        "constraint-missing-not-valid",
        "changing-column-type",
    }


def _revision(revision: str, down: str | None, upgrade: str, downgrade: str) -> str:
    body = """
        import sqlalchemy as sa
        from alembic import op

        revision = {revision!r}
        down_revision = {down!r}
        T = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.Text))


        def upgrade():
        {upgrade}


        def downgrade():
        {downgrade}
        """
    return textwrap.dedent(body).format(revision=revision, down=down, upgrade=upgrade, downgrade=downgrade)


def batch_project(tmp_path: Path) -> str:
    """t created, then rewritten by batch mode twice: a type change with an index, then a dropped column."""
    project = tmp_path / "batch"
    (project / "versions").mkdir(parents=True)
    for name in ("alembic.ini", "env.py", "script.py.mako"):
        shutil.copy(REPO / "tests" / "fixtures" / "hazards" / name, project / name)
    revisions = {
        "0001_t.py": _revision("0001", None, '    op.create_table("t", *[c.copy() for c in T.columns])', '    op.drop_table("t")'),
        "0002_retype.py": _revision(
            "0002",
            "0001",
            '    with op.batch_alter_table("t", copy_from=T) as batch_op:\n'
            '        batch_op.alter_column("name", type_=sa.String(40))\n'
            '        batch_op.create_index("ix_t_name", ["name"])',
            '    with op.batch_alter_table("t", copy_from=T) as batch_op:\n        batch_op.drop_index("ix_t_name")',
        ),
        "0003_drop_name.py": _revision(
            "0003",
            "0002",
            '    with op.batch_alter_table("t", copy_from=T) as batch_op:\n        batch_op.drop_column("name")',
            '    op.add_column("t", sa.Column("name", sa.Text))',
        ),
    }
    for name, text in revisions.items():
        (project / "versions" / name).write_text(text)
    return str(project / "alembic.ini")


def test_batch_mode_table_copies_on_sqlite_are_judged_by_what_the_revision_does(tmp_path: Path) -> None:
    ini = batch_project(tmp_path)
    result = lint({"config": ini, "url": SQLITE_URL, "offline": True, "from_revision": "0001"})
    entries = by_revision(result)
    assert all(e["sql_rendered"] for e in entries.values()), "batch mode renders offline with copy_from"
    # 0002 copies t to change a type: no DROP TABLE, rename or data migration of its own, and only PostgreSQL's rules.
    assert entries["0002"]["findings"] == []
    assert all("a rule for postgresql only" in line for line in entries["0002"]["skipped"]), entries["0002"]["skipped"]
    # 0003's copy leaves the column out: that is the column's loss, and t is still the table it was (not a new one).
    assert [(f["rule"], f["table"], f["severity"]) for f in entries["0003"]["findings"]] == [("ban-drop-column", "t", "error")]
    assert entries["0003"]["skipped"] == []
    # Created earlier in the plan, the same copies harm no one.
    fresh = by_revision(lint({"config": ini, "url": SQLITE_URL, "offline": True}))
    assert fresh["0003"]["findings"] == [] and fresh["0003"]["skipped"] == [
        "ban-drop-column on t: the database was empty before this run, so nothing can be blocked"
    ]


def review_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "review.py"), *args], capture_output=True, text=True, timeout=300, check=False)


def test_scripts_review_for_sqlite_passes_when_only_postgresql_concerns_remain() -> None:
    plan = ("--env", "prod", "--from", "0002", "--to", "0003", HAZARDS_INI)  # 0003: CREATE INDEX on accounts
    sqlite = review_script("--dialect", "sqlite", *plan)
    assert sqlite.returncode == 0, sqlite.stderr[-2000:]
    assert "0 error(s)" in sqlite.stderr
    postgresql = review_script("--dialect", "postgresql", *plan)
    assert postgresql.returncode == 1 and "error require-concurrent-index-creation on accounts" in postgresql.stderr, postgresql.stderr[-2000:]
    bundled = review_script("--dialect", "sqlite", "--env", "prod")
    assert bundled.returncode == 0 and " error " not in bundled.stderr, bundled.stderr[-2000:]

"""alembic_lint on the hazards fixture: exactly the expected findings per revision, none on the safe twins, the
policy, acknowledgements, read-only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support.ansible_run import REPO, module

pytestmark = pytest.mark.slow

HAZARDS_INI = str(REPO / "tests" / "fixtures" / "hazards" / "alembic.ini")
PG_URL = "postgresql://x@localhost/db"


def lint(args: dict[str, Any], *flags: str) -> dict[str, Any]:
    run, result = module("alembic_lint", {"config": HAZARDS_INI, **args}, *flags)
    assert run.rc == 0 and "msg" not in result, run.output[-3000:]
    return result


def rules(result: dict[str, Any]) -> dict[str, set[str]]:
    return {entry["revision"]: {f["rule"] for f in entry["findings"]} for entry in result["revisions"]}


# Exactly what the hazards fixture must yield under the built-in levels: one hazard per revision, and nothing on
# the safe twins (0001 a new table, 0006 a concurrent index in an autocommit block, 0007 NOT NULL with a server
# default and a new table's index, 0010 a CHECK added NOT VALID, 0016 a data migration of its own).
EXPECTED: dict[str, set[tuple[str, str]]] = {
    "0001": set(),
    "0002": {("adding-required-field", "error")},
    "0003": {("require-concurrent-index-creation", "error")},
    "0004": {("ban-drop-column", "error")},
    "0005": {("irreversible-downgrade", "error")},
    "0006": set(),
    "0007": set(),
    "0008": {("adding-foreign-key-constraint", "error"), ("constraint-missing-not-valid", "error")},
    "0009": {("constraint-missing-not-valid", "error")},
    "0010": set(),
    "0011": {("renaming-column", "error")},
    "0012": {("renaming-table", "error")},
    "0013": {("changing-column-type", "error")},
    "0014": {("ban-drop-table", "error")},
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
    return lint({"url": PG_URL, "offline": True})


def test_the_hazards_yield_exactly_the_expected_findings_and_the_safe_twins_none(offline_pg: dict[str, Any]) -> None:
    result = offline_pg
    assert result["changed"] is False
    assert [e["revision"] for e in result["revisions"]] == ALL and result["pending_count"] == len(ALL)
    found = {e["revision"]: {(f["rule"], f["severity"]) for f in e["findings"]} for e in result["revisions"]}
    assert found == EXPECTED
    by_revision = {e["revision"]: e for e in result["revisions"]}
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
    assert {r: by_revision[r]["reversibility"] for r in ("0001", "0004", "0005", "0006", "0018")} == {
        "0001": "lossy",
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
    assert by_revision["0019"]["unused_acknowledgements"] == []
    # 0020 cannot render offline: reviewed from its upgrade() operations, and it says so.
    fallback = by_revision["0020"]
    assert fallback["sql_rendered"] is False and "reviewed from the source" in fallback["note"]
    assert {f["source"] for f in fallback["findings"]} == {"alembic-fleet (source)"}
    errors = sum(1 for e in result["revisions"] for f in e["findings"] if f["severity"] == "error" and not f["acknowledged"])
    assert result["summary"] == {"errors": errors, "warnings": 3, "acknowledged": 1} and errors == 13
    assert len(result["errors"]) == errors and result["blocked"] is False, "block is off by default"
    assert all(line.startswith("00") for line in result["report"]) and len(result["report"]) == errors + 4


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
    checked = lint({"url": PG_URL, "offline": True}, "--check")
    assert checked["changed"] is False
    strip = lambda r: [dict(e) for e in r["revisions"]]  # noqa: E731
    assert strip(checked) == strip(offline_pg) and checked["summary"] == offline_pg["summary"]


def test_sqlite_database_lints_only_pending(tmp_path: Path) -> None:
    url = "sqlite:///%s" % (tmp_path / "x.db")
    run, up = module("alembic_upgrade", {"config": HAZARDS_INI, "url": url, "target": "0001", "create_database": True})
    assert run.rc == 0 and up.get("changed") is True, run.output[-3000:]
    result = lint({"url": url})
    assert result["changed"] is False and result["current"] == ["0001"]
    assert [e["revision"] for e in result["revisions"]] == ALL[1:] and result["pending_count"] == len(ALL) - 1
    assert rules(result)["0005"] >= {"irreversible-downgrade"}
    for entry in result["revisions"]:
        assert entry["sql_rendered"] or entry["note"]


def test_unknown_target_fails_in_one_line() -> None:
    run, result = module("alembic_lint", {"config": HAZARDS_INI, "url": PG_URL, "offline": True, "target": "ffff9999"})
    assert run.rc != 0 and result.get("msg"), run.output[-2000:]
    message = result["msg"]
    assert "\n" not in message and "ffff9999" in message and not message.startswith("unexpected "), message
    assert "exception" not in result and result.get("changed") is not True

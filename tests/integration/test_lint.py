"""alembic_lint on the hazards fixture: squawk findings per revision, our own downgrade rule, read-only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.ansible_run import REPO, module

pytestmark = pytest.mark.slow

HAZARDS_INI = str(REPO / "tests" / "fixtures" / "hazards" / "alembic.ini")
PG_URL = "postgresql://x@localhost/db"
ALL = ["0001", "0002", "0003", "0004", "0005", "0006"]


def lint(args: dict[str, Any], *flags: str) -> dict[str, Any]:
    run, result = module("alembic_lint", {"config": HAZARDS_INI, **args}, *flags)
    assert run.rc == 0 and "msg" not in result, run.output[-3000:]
    return result


def rules(result: dict[str, Any]) -> dict[str, set[str]]:
    return {entry["revision"]: {f["rule"] for f in entry["findings"]} for entry in result["revisions"]}


def by_source(result: dict[str, Any], source: str) -> dict[str, set[str]]:
    return {entry["revision"]: {f["rule"] for f in entry["findings"] if f["source"] == source} for entry in result["revisions"]}


@pytest.fixture(scope="module")
def offline_pg() -> dict[str, Any]:
    return lint({"url": PG_URL, "offline": True})


def test_offline_postgresql_lint_names_each_hazard(offline_pg: dict[str, Any]) -> None:
    result = offline_pg
    assert result["changed"] is False
    assert [e["revision"] for e in result["revisions"]] == ALL and result["pending_count"] == len(ALL)
    assert all(e["sql_rendered"] for e in result["revisions"])
    squawk = by_source(result, "squawk")
    assert squawk["0001"] == set()  # the safe revision
    assert squawk["0002"] & {"adding-required-field", "adding-not-nullable-field"}
    assert "require-concurrent-index-creation" in squawk["0003"]
    assert "ban-drop-column" in squawk["0004"]
    ours = by_source(result, "alembic-fleet")
    assert ours["0004"] == set() and result["revisions"][3]["reversibility"] == "reversible"
    assert ours["0005"] == {"irreversible-downgrade"} and result["revisions"][4]["reversibility"] == "irreversible"
    # downgrade() of 0001/0002 drops what the upgrade added: classify_downgrade calls that lossy.
    assert ours["0001"] == {"lossy-downgrade"} and ours["0002"] == {"lossy-downgrade"}
    # alembic-fleet sets the timeouts itself, and Alembic's version table is not the revision's.
    for entry in result["revisions"]:
        for finding in entry["findings"]:
            assert finding["rule"] not in ("require-lock-timeout", "require-statement-timeout")
            assert "alembic_version" not in finding["statement"]
            assert finding["severity"] in ("error", "warning") and finding["why"]
    index = next(f for f in result["revisions"][2]["findings"] if f["rule"] == "require-concurrent-index-creation")
    assert index["statement"].startswith("CREATE INDEX ix_accounts_email") and index["line"] >= 1
    errors = sum(1 for e in result["revisions"] for f in e["findings"] if f["severity"] == "error")
    warnings = sum(1 for e in result["revisions"] for f in e["findings"] if f["severity"] == "warning")
    assert result["summary"] == {"errors": errors, "warnings": warnings} and errors >= 1


def test_safe_twin_has_no_findings() -> None:
    result = lint({"url": PG_URL, "offline": True, "from_revision": "0005", "target": "0006"})
    assert rules(result) == {"0006": set()}
    assert result["summary"] == {"errors": 0, "warnings": 0}


def test_check_mode_gives_the_same_result(offline_pg: dict[str, Any]) -> None:
    checked = lint({"url": PG_URL, "offline": True}, "--check")
    assert checked["changed"] is False
    strip = lambda r: [{k: v for k, v in e.items()} for e in r["revisions"]]  # noqa: E731
    assert strip(checked) == strip(offline_pg) and checked["summary"] == offline_pg["summary"]


def test_sqlite_database_lints_only_pending(tmp_path: Path) -> None:
    url = "sqlite:///%s" % (tmp_path / "x.db")
    run, up = module("alembic_upgrade", {"config": HAZARDS_INI, "url": url, "target": "0001", "create_database": True})
    assert run.rc == 0 and up.get("changed") is True, run.output[-3000:]
    result = lint({"url": url})
    assert result["changed"] is False and result["current"] == ["0001"]
    assert [e["revision"] for e in result["revisions"]] == ALL[1:] and result["pending_count"] == 5
    assert rules(result)["0005"] >= {"irreversible-downgrade"}
    for entry in result["revisions"]:
        assert entry["sql_rendered"] or entry["note"]


def test_unknown_target_fails_in_one_line() -> None:
    run, result = module("alembic_lint", {"config": HAZARDS_INI, "url": PG_URL, "offline": True, "target": "ffff9999"})
    assert run.rc != 0 and result.get("msg"), run.output[-2000:]
    message = result["msg"]
    assert "\n" not in message and "ffff9999" in message and not message.startswith("unexpected "), message
    assert "exception" not in result and result.get("changed") is not True

"""fleet_report run as an operator would (ansible ad hoc): the files it writes, its exit status, check mode,
and the HTML page as headless Chromium sees it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.ansible_run import module

pytestmark = pytest.mark.slow

NOW = "2026-03-01T02:00:00Z"
HEAD = "e5f7293c4a65"
FIRST = "a1c3e5f70b21"


def status(environment: str, host: str, **overrides: Any) -> dict[str, Any]:
    """One database's collected status: at head, fresh backup, a recent drill, no drift."""
    value: dict[str, Any] = {
        "environment": environment,
        "host": host,
        "name": "equities",
        "database": "migrator@%s.example.com:5432/equities" % host,
        "exists": True,
        "current": [HEAD],
        "heads": [HEAD],
        "pending_count": 0,
        "last_runs": [],
        "last_success": {"started_at": "2026-02-28T22:00:00Z", "finished_at": "2026-02-28T22:00:04Z", "run_id": "r-1"},
        "last_drill": {"outcome": "succeeded", "finished_at": "2026-02-27T03:00:00Z", "duration": 41.5},
        "lock_holder": None,
        "backup": {
            "path": "/srv/backups/x.dump",
            "created_at": "2026-03-01T01:00:00Z",
            "age_seconds": 3600,
            "size": 1048576,
            "sha256": "ab" * 32,
            "revision": HEAD,
        },
        "drift": {"checked": True, "differences": [], "allowed": [], "note": ""},
        "model_drift": {"checked": True, "differences": [], "allowed": [], "note": ""},
        "review": None,
    }
    value.update(overrides)
    return value


GREEN_DB = status("prod", "db1")
RED_DB = status(
    "prod",
    "db2",
    current=[FIRST],
    pending_count=2,
    last_success=None,
    last_drill=None,
    backup={"created_at": "2026-02-27T20:00:00Z", "size": 2048, "revision": FIRST},
)
AMBER_DB = status("dev", "db1", lock_holder={"pid": 7, "run_id": "r-7"})


def cells(**colours_and_values: tuple[str, str]) -> dict[str, dict[str, str]]:
    return {key: {"value": value, "colour": colour} for key, (colour, value) in colours_and_values.items()}


GREEN_CELLS = dict(
    current=("green", HEAD),
    head=("green", HEAD),
    pending=("green", "0"),
    last_success=("green", "2026-02-28T22:00:04Z (4.0 h ago)"),
    backup=("green", "1.0 h"),
    drill=("green", "succeeded 47.0 h ago (2026-02-27T03:00:00Z, took 41.5 s)"),
    drift=("green", "schema drift: ok; model drift: ok"),
    review=("green", "none"),
    lock=("green", "free"),
)
GREEN_METRICS = {
    "status_ok": 1,
    "needs_attention": 0,
    "pending_migrations": 0,
    "schema_drift": 0,
    "seconds_since_last_success": 14396,
    "backup_age_seconds": 3600,
    "backup_size_bytes": 1048576,
    "drill_success": 1,
    "drill_duration_seconds": 41.5,
}

POLICY = {"max_backup_age_hours": 26.0, "require_backup": True, "max_drill_age_days": 0.0}
EXPECTED_JSON = {
    "generated_at": NOW,
    "state": "red",
    "attention": True,
    "summary": {"databases": 3, "red": 1, "amber": 1, "green": 1},
    "reasons": ["prod/db2/equities: 2 revisions behind head", "prod/db2/equities: newest backup is 30.0 h old (limit 26 h)"],
    "notes": ["dev/db1/equities: run lock held (run_id r-7, pid 7)", "prod/db2/equities: no successful alembic-fleet run recorded"],
    "policy": POLICY,
    "databases": [
        {
            "environment": "dev",
            "host": "db1",
            "name": "equities",
            "database": "migrator@db1.example.com:5432/equities",
            "status_ok": True,
            "policy": POLICY,
            "colour": "amber",
            "reasons": [],
            "notes": ["run lock held (run_id r-7, pid 7)"],
            "cells": cells(**{**GREEN_CELLS, "lock": ("amber", "held (run_id r-7, pid 7)")}),
            "metrics": GREEN_METRICS,
        },
        {
            "environment": "prod",
            "host": "db1",
            "name": "equities",
            "database": "migrator@db1.example.com:5432/equities",
            "status_ok": True,
            "policy": POLICY,
            "colour": "green",
            "reasons": [],
            "notes": [],
            "cells": cells(**GREEN_CELLS),
            "metrics": GREEN_METRICS,
        },
        {
            "environment": "prod",
            "host": "db2",
            "name": "equities",
            "database": "migrator@db2.example.com:5432/equities",
            "status_ok": True,
            "policy": POLICY,
            "colour": "red",
            "reasons": ["2 revisions behind head", "newest backup is 30.0 h old (limit 26 h)"],
            "notes": ["no successful alembic-fleet run recorded"],
            "cells": cells(
                **{
                    **GREEN_CELLS,
                    "current": ("red", FIRST),
                    "pending": ("red", "2"),
                    "last_success": ("amber", "never"),
                    "backup": ("red", "30.0 h"),
                    "drill": ("green", "none"),
                }
            ),
            "metrics": {
                "status_ok": 1,
                "needs_attention": 1,
                "pending_migrations": 2,
                "schema_drift": 0,
                "backup_age_seconds": 108000,
                "backup_size_bytes": 2048,
            },
        },
    ],
}


def run_report(report_dir: Path, databases: list[dict[str, Any]], *flags: str, **options: Any) -> tuple[Any, dict[str, Any]]:
    return module("fleet_report", {"databases": databases, "report_dir": str(report_dir), "now": NOW, **options}, *flags)


def test_report_files_and_failure_on_attention(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    prom = textfile / "alembic_fleet.prom"
    run, result = run_report(reports, [RED_DB, AMBER_DB, GREEN_DB], metrics_path=str(prom))
    assert run.rc != 0, run.output
    json_path = reports / "status.json"
    assert result["msg"] == (
        "1 database(s) need attention: prod/db2/equities: 2 revisions behind head; "
        "prod/db2/equities: newest backup is 30.0 h old (limit 26 h); see %s" % json_path
    ), run.output
    assert result["attention"] is True and result["changed"] is True
    assert result["reasons"] == EXPECTED_JSON["reasons"]
    assert result["summary"] == EXPECTED_JSON["summary"]
    assert sorted(os.listdir(reports)) == ["status.html", "status.json", "status.md"]
    assert json.loads(json_path.read_text()) == EXPECTED_JSON
    markdown = (reports / "status.md").read_text()
    assert "## prod" in markdown and "- prod/db2/equities: no successful alembic-fleet run recorded" in markdown
    families = {family.name: family for family in text_string_to_metric_families(prom.read_text())}
    pending = {s.labels["host"]: s.value for s in families["alembic_fleet_pending_migrations"].samples if s.labels["environment"] == "prod"}
    assert pending == {"db1": 0, "db2": 2}


def test_no_attention_exits_zero_and_unchanged_files_stay(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    run, result = run_report(reports, [GREEN_DB, AMBER_DB])
    assert run.rc == 0, run.output
    assert result["attention"] is False and result["reasons"] == [] and result["changed"] is True
    assert result["summary"] == {"databases": 2, "red": 0, "amber": 1, "green": 1}
    before = {name: (reports / name).read_bytes() for name in os.listdir(reports)}
    run, result = run_report(reports, [GREEN_DB, AMBER_DB])
    assert run.rc == 0 and result["changed"] is False and result["changed_paths"] == [], run.output
    assert {name: (reports / name).read_bytes() for name in os.listdir(reports)} == before
    # Not failing on attention: the reports still say so.
    run, result = run_report(reports, [RED_DB], fail_on_attention=False)
    assert run.rc == 0 and result["attention"] is True, run.output


def test_check_mode_writes_nothing(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    (tmp_path / "textfile").mkdir()
    prom = tmp_path / "textfile" / "alembic_fleet.prom"
    run, result = run_report(reports, [GREEN_DB], "--check", metrics_path=str(prom))
    assert run.rc == 0, run.output
    assert result["changed"] is True and len(result["changed_paths"]) == 4
    assert not reports.exists() and not prom.exists()
    run, result = run_report(reports, [RED_DB], "--check")
    assert run.rc != 0 and result["msg"].endswith("check mode: %s not written" % (reports / "status.json")), run.output
    assert not reports.exists()


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def dump_dom(page: Path, profile: Path) -> str:
    binary = chromium()
    if binary is None:
        pytest.skip("no chromium binary on PATH: scripts/test installs Debian's chromium package (apt-get install chromium)")
    done = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--user-data-dir=%s" % profile,
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_html_page_in_headless_chromium(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    run, _ = run_report(reports, [RED_DB, AMBER_DB, GREEN_DB], fail_on_attention=False)
    assert run.rc == 0, run.output
    dom = dump_dom(reports / "status.html", tmp_path / "chromium-profile")
    tables = re.findall(r"<table\b[^>]*>", dom)
    assert len(tables) == 2, dom
    assert any('id="env-prod"' in table and "env-prod" in re.search(r'class="([^"]*)"', table).group(1) for table in tables), tables  # type: ignore[union-attr]
    assert any('id="env-dev"' in table for table in tables), tables
    prod = dom[dom.index('id="env-prod"') :]
    prod = prod[: prod.index("</table>")]
    assert prod.count('<tr class="db ') == 2
    assert '<td class="cell-pending red">2</td>' in prod
    assert '<td class="cell-backup red">30.0 h</td>' in prod
    assert '<td class="cell-pending green">0</td>' in prod
    dev = dom[dom.index('id="env-dev"') :]
    assert '<td class="cell-lock amber">held (run_id r-7, pid 7)</td>' in dev[: dev.index("</table>")]
    assert "prod/db2/equities: newest backup is 30.0 h old (limit 26 h)" in dom
    assert '<time datetime="%s">' % NOW in dom

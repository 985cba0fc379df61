"""Unit tests of the status report: the judgement (module_utils/fleet/report/health.py)
and its files (module_utils/fleet/report/render.py), on hand-made statuses judged
against a fixed now."""

from __future__ import annotations

import copy
import json
import os
import random
import stat
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ansible.module_utils.fleet.core.common import FleetError
from ansible.module_utils.fleet.report.health import (
    AMBER,
    COLUMNS,
    GREEN,
    RED,
    FleetHealth,
    Policy,
    judge_database,
    judge_fleet,
    parse_now,
    parse_time,
)
from ansible.module_utils.fleet.report.render import (
    label_value,
    render_html,
    render_json,
    render_markdown,
    render_prometheus,
    report,
)

NOW = datetime(2026, 3, 1, 2, 0, 0, tzinfo=UTC)
NOW_TEXT = "2026-03-01T02:00:00Z"
HEAD = "e5f7293c4a65"
PREFIX = "prod/db1/equities: "


def healthy(**overrides: Any) -> dict[str, Any]:
    """A database with nothing to report: at head, fresh backup, recent drill, no drift."""
    status: dict[str, Any] = {
        "environment": "prod",
        "host": "db1",
        "name": "equities",
        "database": "migrator@db1.example.com:5432/equities",
        "exists": True,
        "current": [HEAD],
        "heads": [HEAD],
        "pending_count": 0,
        "last_runs": [],
        "last_success": {"started_at": "2026-02-28T22:00:00Z", "finished_at": "2026-02-28T22:00:04Z", "run_id": "r-1"},
        "last_drill": {"outcome": "succeeded", "finished_at": "2026-02-27T03:00:00Z", "duration": 41.5},
        "lock_holder": None,
        "backup": {
            "path": "/srv/backups/prod/db1/equities/20260301T010000Z_%s.dump" % HEAD,
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
    status.update(overrides)
    return status


def judged(status: dict[str, Any], **policy: Any):
    return judge_database(status, Policy(**policy), NOW)


def reasons_of(status: dict[str, Any], **policy: Any) -> list[str]:
    return judge_fleet([status], Policy(**policy), NOW).reasons


# -- judgement ------------------------------------------------------------------
def test_a_healthy_database_is_green_with_nothing_to_say() -> None:
    db = judged(healthy())
    assert db.reasons == [] and db.notes == []
    assert db.colour == GREEN
    assert [key for key, _ in COLUMNS] == list(db.cells)
    assert {key: cell.colour for key, cell in db.cells.items()} == {key: GREEN for key, _ in COLUMNS}
    assert db.cells["current"].value == HEAD
    assert db.cells["backup"].value == "1.0 h"
    assert db.cells["last_success"].value == "2026-02-28T22:00:04Z (4.0 h ago)"
    assert db.metrics == {
        "status_ok": 1,
        "needs_attention": 0,
        "pending_migrations": 0,
        "schema_drift": 0,
        "seconds_since_last_success": 4 * 3600 - 4,
        "backup_age_seconds": 3600,
        "backup_size_bytes": 1048576,
        "drill_success": 1,
        "drill_duration_seconds": 41.5,
    }


@pytest.mark.parametrize(
    "overrides, policy, expected, cell",
    [
        ({"pending_count": 2, "current": ["a1c3e5f70b21"]}, {}, ["2 revisions behind head"], "pending"),
        (
            {"drift": {"checked": True, "differences": ["remove_index('ix_trades_ts')", "add_column('trades', 'note')"], "allowed": []}},
            {},
            ["schema drift: add_column('trades', 'note')", "schema drift: remove_index('ix_trades_ts')"],
            "drift",
        ),
        (
            {"model_drift": {"checked": True, "differences": ["add_table('audit')"], "allowed": [], "note": ""}},
            {},
            ["models differ from the database: add_table('audit')"],
            "drift",
        ),
        ({"backup": {"created_at": "2026-02-27T20:00:00Z", "size": 10}}, {}, ["newest backup is 30.0 h old (limit 26 h)"], "backup"),
        ({"backup": {"age_seconds": 7200, "size": 10}}, {"max_backup_age_hours": 1.5}, ["newest backup is 2.0 h old (limit 1.5 h)"], "backup"),
        ({"backup": None}, {}, ["no backup"], "backup"),
        (
            {"last_drill": {"outcome": "failed", "finished_at": "2026-02-28T03:00:00Z", "duration": 3, "msg": "pg_restore: error: bad\ndetail"}},
            {},
            ["last restore drill failed (2026-02-28T03:00:00Z; pg_restore: error: bad)"],
            "drill",
        ),
        ({"last_drill": {"outcome": "failed"}}, {}, ["last restore drill failed"], "drill"),
        (
            {"last_drill": {"outcome": "succeeded", "finished_at": "2026-02-20T02:00:00Z"}},
            {"max_drill_age_days": 7},
            ["no successful restore drill in 7 days"],
            "drill",
        ),
        ({"last_drill": None}, {"max_drill_age_days": 1}, ["no successful restore drill in 1 day"], "drill"),
        ({"review": {"errors": 2, "warnings": 1, "acknowledged": 0, "blocked": True, "report": ["..."]}}, {}, ["review blocks: 2 errors"], "review"),
    ],
)
def test_every_reason_kind(overrides: dict[str, Any], policy: dict[str, Any], expected: list[str], cell: str) -> None:
    db = judged(healthy(**overrides), **policy)
    assert db.reasons == expected
    assert db.cells[cell].colour == RED
    assert db.colour == RED
    assert reasons_of(healthy(**overrides), **policy) == [PREFIX + reason for reason in expected]


def test_a_failed_status_is_a_reason_and_the_rest_unknown() -> None:
    status = {
        "environment": "prod",
        "host": "db2",
        "name": "algorithms",
        "failed": True,
        "msg": "could not connect to server: Connection refused\n\tIs the server running?",
    }
    db = judged(status)
    assert db.reasons == ["status failed: could not connect to server: Connection refused"]
    assert db.cells["current"].colour == RED and db.cells["current"].value == "status failed"
    assert db.cells["pending"].value == "unknown" and db.cells["pending"].colour == AMBER
    assert db.notes == []  # not a list of everything a failed status cannot say
    assert db.metrics == {"status_ok": 0, "needs_attention": 1}
    assert judged({"environment": "prod", "host": "db2", "name": "x", "unreachable": True}).reasons == ["status failed: no message"]


def test_a_status_registered_with_failed_when_false_still_counts_as_failed() -> None:
    registered = {
        "environment": "prod",
        "host": "db2",
        "name": "equities",
        "failed": False,
        "failed_when_result": False,
        "heads": [HEAD],
        "msg": "database 'equities' does not exist on db2: create it.",
    }
    assert judged(registered).reasons == ["status failed: database 'equities' does not exist on db2: create it."]
    assert judged(healthy(msg="all fine")).reasons == []  # a real result with a msg


def test_a_database_may_carry_its_own_policy() -> None:
    dev = healthy(environment="dev", backup=None, require_backup=False, max_backup_age_hours=0, last_drill=None)
    prod = healthy(backup={"created_at": "2026-02-28T20:00:00Z"}, max_backup_age_hours=4.0, max_drill_age_days=7)
    health = judge_fleet([dev, prod], Policy(max_drill_age_days=0), NOW)
    assert health.reasons == ["prod/db1/equities: newest backup is 6.0 h old (limit 4 h)"]
    assert health.databases[0].policy == Policy(max_backup_age_hours=0, require_backup=False, max_drill_age_days=0)
    assert health.databases[1].as_dict()["policy"] == {"max_backup_age_hours": 4.0, "require_backup": True, "max_drill_age_days": 7.0}
    # Nonsense overrides fall back to the module's policy.
    odd = judged(healthy(backup=None, require_backup="no", max_backup_age_hours=-3))
    assert odd.policy == Policy() and odd.reasons == ["no backup"]


def test_allowed_drift_is_not_a_reason() -> None:
    drift = {"checked": True, "differences": ["add_column('trades', 'note')", "remove_index('ix_old')"], "allowed": ["remove_index('ix_old')"]}
    db = judged(healthy(drift=drift))
    assert db.reasons == ["schema drift: add_column('trades', 'note')"]
    assert db.cells["drift"].value == "schema drift: 1 difference(s) (1 allowed); model drift: ok"

    only_allowed = judged(
        healthy(
            drift={"checked": True, "differences": ["remove_index('ix_old')"], "allowed": ["remove_index('ix_old')"]},
            model_drift={"checked": True, "differences": [], "allowed": ["add_table('tmp')"]},
        )
    )
    assert only_allowed.reasons == [] and only_allowed.colour == GREEN
    assert only_allowed.cells["drift"].value == "schema drift: ok (1 allowed); model drift: ok (1 allowed)"
    assert only_allowed.metrics["schema_drift"] == 0


def test_policy_switches() -> None:
    old_backup = healthy(backup={"created_at": "2026-02-01T00:00:00Z"})
    assert judged(old_backup, max_backup_age_hours=0).reasons == []
    assert judged(healthy(backup=None), require_backup=False).reasons == []
    assert judged(healthy(backup=None), require_backup=False).cells["backup"].colour == GREEN
    # No drills required: none recorded is fine, an old one too, a failed one never.
    assert judged(healthy(last_drill=None)).reasons == []
    assert judged(healthy(last_drill={"outcome": "succeeded", "finished_at": "2025-01-01T00:00:00Z"})).reasons == []
    assert judged(healthy(last_drill={"outcome": "failed", "finished_at": "2025-01-01T00:00:00Z"})).reasons == [
        "last restore drill failed (2025-01-01T00:00:00Z)"
    ]
    # A recent successful drill satisfies the requirement.
    assert judged(healthy(), max_drill_age_days=7).reasons == []


@pytest.mark.parametrize(
    "overrides, cell, note",
    [
        ({"review": {"errors": 0, "warnings": 2, "acknowledged": 0, "blocked": False, "report": []}}, "review", "review: 2 warnings (not blocking)"),
        ({"review": {"errors": 1, "warnings": 0, "acknowledged": 1, "blocked": False}}, "review", "review: 1 error, 1 acknowledged (not blocking)"),
        (
            {"lock_holder": {"pid": 4242, "run_id": "r-9", "client": "ctl.example.com", "since": "2026-03-01T01:59:00Z"}},
            "lock",
            "run lock held (run_id r-9, pid 4242, client ctl.example.com, since 2026-03-01T01:59:00Z)",
        ),
        (
            {"model_drift": {"checked": False, "differences": [], "allowed": [], "note": "no target_metadata in env.py"}},
            "drift",
            "model drift not checked: no target_metadata in env.py",
        ),
        ({"drift": None}, "drift", "schema drift not checked"),
        ({"heads": ["aaa", "bbb"], "current": ["aaa", "bbb"]}, "head", "the project has 2 heads (aaa, bbb): merge them"),
        ({"last_success": None}, "last_success", "no successful alembic-fleet run recorded"),
        ({"backup": {"size": 5}}, "backup", "the newest backup's age is unknown"),
        ({"last_drill": {"outcome": "interrupted", "finished_at": None}}, "drill", "last restore drill interrupted"),
    ],
)
def test_amber_things_to_look_at_do_not_fail(overrides: dict[str, Any], cell: str, note: str) -> None:
    db = judged(healthy(**overrides))
    assert db.reasons == []
    assert db.notes == [note]
    assert db.cells[cell].colour == AMBER
    assert db.colour == AMBER


def test_side_databases_that_no_session_uses_are_named() -> None:
    leftovers = [
        {"name": "equities_drill_3fa2c1", "kind": "drill", "sessions": 0},
        {"name": "equities_scratch_00aa11", "kind": "scratch", "sessions": 0},
        {"name": "equities_restore_77bb22", "kind": "restore", "sessions": 1},  # in use: a restore in progress
        {"name": "equities_replaced_c0ffee", "kind": "replaced", "sessions": 0},
        "not a dict",
    ]
    db = judged(healthy(leftovers=leftovers))
    assert db.reasons == [
        "database equities_drill_3fa2c1 was left by an interrupted restore drill and no session uses it: drop it",
        "database equities_scratch_00aa11 was left by an interrupted schema check and no session uses it: drop it",
    ]
    assert db.notes == [
        (
            "database equities_replaced_c0ffee holds the copy a restore replaced (kept with keep_replaced, or left by an interrupted restore): "
            "drop it when it is no longer needed"
        )
    ]
    assert db.colour == RED
    assert judged(healthy(leftovers=[])).reasons == []


def test_unknown_and_malformed_fields_are_tolerated() -> None:
    bare = judged({"environment": "dev", "host": "db9", "name": "equities"})
    assert bare.reasons == []
    assert bare.colour == AMBER
    assert bare.cells["backup"].value == "unknown" and bare.cells["lock"].value == "unknown"
    assert bare.cells["drill"].colour == GREEN and bare.cells["review"].colour == GREEN  # not required, nothing pending
    assert bare.metrics == {"status_ok": 1, "needs_attention": 0}
    unreadable = judged({"environment": "dev", "host": "db9", "name": "equities", "backup_note": "cannot list /srv/backups: permission denied"})
    assert unreadable.notes == ["backups unknown: cannot list /srv/backups: permission denied"]

    garbage = judged(
        healthy(
            pending_count="lots",
            current=None,
            heads="e5f7293c4a65",
            backup="yesterday",
            drift=["x"],
            model_drift=42,
            review="fine",
            lock_holder=[],
            last_success="never",
            last_drill={"outcome": None, "duration": "slow"},
        )
    )
    assert garbage.reasons == []
    assert garbage.cells["pending"].value == "unknown"
    assert garbage.cells["backup"].value == "unknown"
    assert garbage.cells["drift"].value == "schema drift: unknown; model drift: unknown"
    assert garbage.cells["drill"].value == "unknown"
    assert "pending_migrations" not in garbage.metrics

    # pending_count missing: derived from current == heads, or from the pending list.
    assert judged({k: v for k, v in healthy().items() if k != "pending_count"}).metrics["pending_migrations"] == 0
    assert judged({**{k: v for k, v in healthy().items() if k != "pending_count"}, "pending": [{}, {}, {}]}).reasons == ["3 revisions behind head"]
    # last_success missing: the newest succeeded ledger row.
    from_runs = judged(
        {
            **{k: v for k, v in healthy().items() if k != "last_success"},
            "last_runs": [{"outcome": "failed", "finished_at": "2026-03-01T01:00:00Z"}, {"outcome": "succeeded", "finished_at": "2026-02-28T02:00:00Z"}],
        }
    )
    assert from_runs.metrics["seconds_since_last_success"] == 86400
    # Identity missing: "unknown", the label standing in for the name.
    anonymous = judge_fleet([{"database": "sqlite:/srv/x.db", "pending_count": 1}], Policy(), NOW)
    assert anonymous.reasons == ["unknown/unknown/sqlite:/srv/x.db: 1 revision behind head"]


def test_a_database_that_is_not_a_dict_is_refused() -> None:
    with pytest.raises(FleetError, match=r"^databases\[1\] is a str, not a dict: pass one dict per database"):
        judge_fleet([healthy(), "db1/equities"], Policy(), NOW)


def fleet_statuses() -> list[dict[str, Any]]:
    return [
        healthy(),
        healthy(host="db2", pending_count=1, backup=None),
        healthy(environment="dev", host="db1", drift={"checked": True, "differences": ["b-diff", "a-diff"], "allowed": []}),
        healthy(environment="dev", host="db1", name="algorithms", lock_holder={"pid": 1}),
        {"environment": "prod", "host": "db3", "name": "equities", "failed": True, "msg": "timeout"},
    ]


def test_reasons_and_files_are_sorted_and_stable() -> None:
    statuses = fleet_statuses()
    health = judge_fleet(statuses, Policy(), NOW)
    assert health.reasons == [
        "dev/db1/equities: schema drift: a-diff",
        "dev/db1/equities: schema drift: b-diff",
        "prod/db2/equities: 1 revision behind head",
        "prod/db2/equities: no backup",
        "prod/db3/equities: status failed: timeout",
    ]
    assert health.notes == ["dev/db1/algorithms: run lock held (pid 1)"]
    assert health.summary == {"databases": 5, "red": 3, "amber": 1, "green": 1}
    assert [db.key for db in health.databases] == ["dev/db1/algorithms", "dev/db1/equities", "prod/db1/equities", "prod/db2/equities", "prod/db3/equities"]
    renders = (render_json, render_html, render_markdown, render_prometheus)
    first = [render(health) for render in renders]
    for seed in range(5):
        shuffled = copy.deepcopy(statuses)
        random.Random(seed).shuffle(shuffled)
        assert [render(judge_fleet(shuffled, Policy(), NOW)) for render in renders] == first


def test_time_parsing() -> None:
    assert parse_time("2026-03-01T02:00:00Z") == NOW
    assert parse_time("2026-03-01T03:00:00+01:00") == NOW
    assert parse_time("2026-03-01T02:00:00") == NOW  # naive: UTC
    assert parse_time("yesterday") is None and parse_time(None) is None and parse_time(5) is None
    assert parse_now(NOW_TEXT) == NOW
    assert parse_now(None).tzinfo is not None
    with pytest.raises(FleetError, match=r"^now 'soon' is not an ISO 8601 time: use for example"):
        parse_now("soon")


# -- rendering ------------------------------------------------------------------
def fleet() -> FleetHealth:
    return judge_fleet(fleet_statuses(), Policy(), NOW)


def test_json_is_sorted_and_complete() -> None:
    text = render_json(fleet())
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, indent=2) + "\n"
    assert data["generated_at"] == NOW_TEXT
    assert data["state"] == RED and data["attention"] is True
    assert data["summary"] == {"databases": 5, "red": 3, "amber": 1, "green": 1}
    assert data["policy"] == {"max_backup_age_hours": 26.0, "require_backup": True, "max_drill_age_days": 0.0}
    db2 = next(db for db in data["databases"] if db["host"] == "db2")
    assert db2["colour"] == RED
    assert db2["reasons"] == ["1 revision behind head", "no backup"]
    assert db2["cells"]["backup"] == {"value": "none", "colour": RED}
    assert db2["metrics"]["pending_migrations"] == 1


def test_prometheus_textfile_parses_and_omits_unknowns() -> None:
    text = render_prometheus(fleet())
    assert "NaN" not in text and "Inf" not in text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert set(families) == {
        "alembic_fleet_status_ok",
        "alembic_fleet_needs_attention",
        "alembic_fleet_pending_migrations",
        "alembic_fleet_schema_drift",
        "alembic_fleet_seconds_since_last_success",
        "alembic_fleet_backup_age_seconds",
        "alembic_fleet_backup_size_bytes",
        "alembic_fleet_drill_success",
        "alembic_fleet_drill_duration_seconds",
        "alembic_fleet_report_timestamp_seconds",
    }
    assert all(family.type == "gauge" and family.documentation for family in families.values())

    def samples(name: str) -> dict[tuple[str, str, str], float]:
        return {(s.labels["environment"], s.labels["host"], s.labels["database"]): s.value for s in families[name].samples}

    assert samples("alembic_fleet_status_ok")[("prod", "db3", "equities")] == 0
    assert samples("alembic_fleet_status_ok")[("prod", "db1", "equities")] == 1
    assert samples("alembic_fleet_pending_migrations") == {
        ("dev", "db1", "algorithms"): 0,
        ("dev", "db1", "equities"): 0,
        ("prod", "db1", "equities"): 0,
        ("prod", "db2", "equities"): 1,
    }  # the failed status has no sample, not a NaN
    assert samples("alembic_fleet_schema_drift")[("dev", "db1", "equities")] == 1
    assert ("prod", "db2", "equities") not in samples("alembic_fleet_backup_age_seconds")
    assert samples("alembic_fleet_backup_size_bytes")[("prod", "db1", "equities")] == 1048576
    assert samples("alembic_fleet_drill_duration_seconds")[("prod", "db1", "equities")] == 41.5
    assert samples("alembic_fleet_needs_attention")[("dev", "db1", "algorithms")] == 0
    (stamp,) = families["alembic_fleet_report_timestamp_seconds"].samples
    assert stamp.labels == {} and stamp.value == NOW.timestamp()


def test_prometheus_label_values_are_escaped() -> None:
    assert label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    odd = 'we"ird\\name\nx'
    text = render_prometheus(judge_fleet([healthy(name=odd, environment="pr od")], Policy(), NOW))
    families = {family.name: family for family in text_string_to_metric_families(text)}
    (sample,) = families["alembic_fleet_status_ok"].samples
    assert sample.labels == {"environment": "pr od", "host": "db1", "database": odd}


class _Tables(HTMLParser):
    """Tables (id, class) and td (class, text) of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, str]] = []
        self.cells: list[tuple[str, str]] = []
        self._cell: list[str] | None = None
        self._cell_class = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "table":
            self.tables.append(attributes)
        elif tag == "td":
            self._cell, self._cell_class = [], attributes.get("class", "")

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.cells.append((self._cell_class, "".join(self._cell)))
            self._cell = None


def test_html_has_one_table_per_environment_and_coloured_cells() -> None:
    page = render_html(fleet())
    parsed = _Tables()
    parsed.feed(page)
    assert [(t["id"], t["class"]) for t in parsed.tables] == [("env-dev", "env env-dev"), ("env-prod", "env env-prod")]
    assert ("cell-pending red", "1") in parsed.cells
    assert ("cell-backup red", "none") in parsed.cells
    assert ("cell-lock amber", "held (pid 1)") in parsed.cells
    assert ("cell-current green", HEAD) in parsed.cells
    assert "<style>" in page and "<link" not in page and "<script" not in page and "http" not in page.split("</head>")[0]
    assert 'Generated <time datetime="2026-03-01T02:00:00Z">' in page
    assert '<span class="state red" id="state">red</span>' in page
    assert "prod/db2/equities: no backup" in page


def test_html_and_markdown_escape_everything() -> None:
    nasty = '<script>alert("x")</script>'
    health = judge_fleet([healthy(environment='st"age<1>', name=nasty, drift={"checked": True, "differences": ["a | b <i>"], "allowed": []})], Policy(), NOW)
    page = render_html(health)
    assert "<script>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    parsed = _Tables()
    parsed.feed(page)
    assert parsed.tables[0]["id"] == "env-st-age-1-"
    markdown = render_markdown(health)
    assert "<script>" not in markdown
    assert "schema drift: a \\| b &lt;i&gt;" in markdown


def test_markdown_has_a_table_per_environment_and_the_reasons() -> None:
    markdown = render_markdown(fleet())
    lines = markdown.splitlines()
    assert lines[0] == "# alembic-fleet status: red"
    assert "## dev" in lines and "## prod" in lines
    assert "- prod/db3/equities: status failed: timeout" in lines
    header = "| host | database | state | %s |" % " | ".join(heading for _, heading in COLUMNS)
    assert lines.count(header) == 2
    row = next(line for line in lines if line.startswith("| db2 |"))
    assert row.split(" | ")[:2] == ["| db2", "equities"] and "| **1** |" in row


# -- the operation: files, check mode, failure ---------------------------------
def params(tmp_path: Path, statuses: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "databases": statuses if statuses is not None else [healthy()],
        "report_dir": str(tmp_path / "reports"),
        "basename": "status",
        "max_backup_age_hours": 26.0,
        "require_backup": True,
        "max_drill_age_days": 0.0,
        "metrics_path": None,
        "fail_on_attention": True,
        "now": NOW_TEXT,
    }
    values.update(extra)
    return values


def test_report_writes_every_file_atomically_and_only_when_changed(tmp_path: Path) -> None:
    (tmp_path / "textfile").mkdir()
    given = params(tmp_path, metrics_path=str(tmp_path / "textfile" / "alembic_fleet.prom"))
    result: dict[str, Any] = {}
    report(given, False, False, result)
    names = ["status.json", "status.html", "status.md"]
    assert result["changed"] is True and result["attention"] is False
    assert result["paths"] == {
        "json": str(tmp_path / "reports" / "status.json"),
        "html": str(tmp_path / "reports" / "status.html"),
        "markdown": str(tmp_path / "reports" / "status.md"),
        "metrics": str(tmp_path / "textfile" / "alembic_fleet.prom"),
    }
    assert result["changed_paths"] == list(result["paths"].values())
    assert result["summary"] == {"databases": 1, "red": 0, "amber": 0, "green": 1}
    assert stat.S_IMODE(os.stat(tmp_path / "reports").st_mode) == 0o755
    assert sorted(os.listdir(tmp_path / "reports")) == sorted(names)  # no temp file left
    assert os.listdir(tmp_path / "textfile") == ["alembic_fleet.prom"]
    for path in result["paths"].values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert json.loads((tmp_path / "reports" / "status.json").read_text())["generated_at"] == NOW_TEXT

    again: dict[str, Any] = {}
    report(given, False, False, again)
    assert again["changed"] is False and again["changed_paths"] == []

    later: dict[str, Any] = {}
    report({**given, "now": "2026-03-01T03:00:00Z"}, False, False, later)
    assert later["changed"] is True and len(later["changed_paths"]) == 4


def test_check_mode_writes_nothing(tmp_path: Path) -> None:
    result: dict[str, Any] = {}
    report(params(tmp_path), True, False, result)
    assert result["changed"] is True and len(result["changed_paths"]) == 3
    assert not (tmp_path / "reports").exists()


def test_attention_fails_after_writing(tmp_path: Path) -> None:
    result: dict[str, Any] = {}
    with pytest.raises(FleetError) as caught:
        report(params(tmp_path, fleet_statuses()), False, False, result)
    json_path = str(tmp_path / "reports" / "status.json")
    assert str(caught.value) == (
        "3 database(s) need attention: dev/db1/equities: schema drift: a-diff; dev/db1/equities: schema drift: b-diff; "
        "prod/db2/equities: 1 revision behind head (and 2 more); see %s" % json_path
    )
    assert result["attention"] is True and len(result["reasons"]) == 5
    assert json.loads(Path(json_path).read_text())["reasons"] == result["reasons"]

    quiet: dict[str, Any] = {}
    report(params(tmp_path, fleet_statuses(), fail_on_attention=False), False, False, quiet)
    assert quiet["attention"] is True and quiet["changed"] is False

    with pytest.raises(FleetError, match=r"; check mode: .*status\.json not written$"):
        report(params(tmp_path / "other", fleet_statuses()), True, False, {})


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"databases": []}, r"^databases is empty: pass one dict per database"),
        ({"basename": "../status"}, r"^basename '\.\./status' is not a plain file name"),
        ({"max_backup_age_hours": -1.0}, r"^max_backup_age_hours is -1\.0: give a number of 0 or more"),
        ({"metrics_path": "/nonexistent/dir/x.prom"}, r"^metrics_path's directory /nonexistent/dir does not exist: create it"),
        ({"now": "tomorrow"}, r"^now 'tomorrow' is not an ISO 8601 time"),
    ],
)
def test_bad_options_are_one_sentence(tmp_path: Path, extra: dict[str, Any], message: str) -> None:
    with pytest.raises(FleetError, match=message) as caught:
        report(params(tmp_path, **extra), False, False, {})
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "reports").exists()


def test_report_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "reports").write_text("")
    with pytest.raises(FleetError, match=r"^report_dir .*reports is not a directory: give a directory path\.$"):
        report(params(tmp_path), False, False, {})

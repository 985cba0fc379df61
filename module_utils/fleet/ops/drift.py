# -*- coding: utf-8 -*-
# The opt-in parts of alembic_status that a scheduled, read-only status run
# needs per database: schema drift (the live schema against what the
# migrations build at the database's own revision, and at head against the
# models), an allowlist of accepted differences, the newest backup's cheap
# metadata, the last successful change and the last restore drill from the
# ledger, and the review of the pending revisions on the already-open run.
# Nothing here writes to the target database; the expected schema is built in
# a scratch database (or temporary SQLite file) that is always removed.
from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ansible.module_utils.fleet.alembic.run import AlembicRun, Probe, Step, elapsed
from ansible.module_utils.fleet.backup.backup import orphan_partials
from ansible.module_utils.fleet.backup.catalog import MANIFEST_TIME, ManifestError, dated_backups, read_manifest
from ansible.module_utils.fleet.core.common import FleetError, scrub
from ansible.module_utils.fleet.review.cache import ReviewCache
from ansible.module_utils.fleet.review.lint import ReviewPolicy, finding_line, ledger_review, parse_pg_version, review_steps
from ansible.module_utils.fleet.review.rules import ERROR
from ansible.module_utils.fleet.schema.scratch import expected_schema_differences
from ansible.module_utils.fleet.schema.snapshot import table_of_difference
from ansible.module_utils.fleet.state.ledger import INTERRUPTED, RUNNING, SUCCEEDED, Ledger, row_to_dict

try:
    import sqlalchemy as sa
except ImportError:  # pragma: no cover - reported by the module
    pass

CHANGE_ACTIONS = ("migrate", "upgrade")
DRILL_ACTION = "drill"

# The table a difference is about, from the lines describe_diff writes.


# -- the allowlist -------------------------------------------------------------
def check_allowlist(patterns: Sequence[Any] | None) -> list[str]:
    """drift_allow as given, refusing entries that could only be mistakes."""
    checked = []
    for entry in patterns or []:
        text = "" if entry is None else str(entry)
        if not text.strip():
            raise FleetError("drift_allow has an empty entry: give a table name or a pattern of a difference's text, or remove it.")
        checked.append(text)
    return checked


def diff_table_of(text: str) -> str | None:
    """The table a difference line (describe_diff's or schema.snapshot's wording) is about, or None."""
    return table_of_difference(text)


def allowed_by(text: str, patterns: Sequence[str]) -> str | None:
    """The first allowlist entry that accepts the difference: a pattern of its text, or its table's name."""
    table = diff_table_of(text)
    for pattern in patterns:
        if fnmatch.fnmatchcase(text, pattern) or (table is not None and fnmatch.fnmatchcase(table, pattern)):
            return pattern
    return None


def split_allowed(differences: Sequence[str], patterns: Sequence[str]) -> tuple[list[str], list[str]]:
    """(differences, allowed): the allowlisted ones move to allowed, order kept."""
    left: list[str] = []
    allowed: list[str] = []
    for text in differences:
        (allowed if allowed_by(text, patterns) else left).append(text)
    return left, allowed


def _report(checked: bool, note: str | None, differences: Sequence[str] = (), patterns: Sequence[str] = (), **extra: Any) -> dict[str, Any]:
    left, allowed = split_allowed(differences, patterns)
    report: dict[str, Any] = {"checked": checked, "differences": left, "allowed": allowed, "note": note}
    report.update(extra)
    return report


def _failure(exc: BaseException, run: AlembicRun) -> str:
    if isinstance(exc, FleetError):
        text = str(exc)
    else:
        text = "%s: %s" % (type(getattr(exc, "orig", None) or exc).__name__, getattr(exc, "orig", None) or exc)
    return scrub(" ".join(text.split()), run.target.password)[:500]


# -- drift -----------------------------------------------------------------
def schema_drift(
    run: AlembicRun, probe: Probe, heads: Sequence[str], ledger: Ledger, patterns: Sequence[str], maintenance_db: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(drift, model_drift) of one database, each {checked, differences, allowed, note}."""
    current = list(probe.current)
    if not probe.exists:
        note = "the database does not exist"
        return _report(False, note), _report(False, note)
    if not probe.versioned:
        note = "the database is not versioned (no alembic_version table)"
        return _report(False, note), _report(False, note)
    if not current:
        note = "the database records no revision (at base)"
        return _report(False, note), _report(False, note)
    return _migrations_drift(run, current, ledger, patterns, maintenance_db), _model_drift(run, current, heads, ledger, patterns)


def _migrations_drift(run: AlembicRun, current: list[str], ledger: Ledger, patterns: Sequence[str], maintenance_db: str) -> dict[str, Any]:
    # At several heads (branches) the expected schema is built at all of them; `revision` names them all.
    revision = ", ".join(current)
    started = time.monotonic()
    try:
        differences = expected_schema_differences(run, current, [ledger.name], maintenance_db)
    except Exception as exc:  # no CREATEDB, a migration that fails on an empty database, ...
        return _report(
            False,
            "the schema the migrations build at %s could not be made: %s" % (revision, _failure(exc, run)),
            revision=revision,
            duration=elapsed(started),
        )
    return _report(True, None, differences, patterns, revision=revision, duration=elapsed(started))


def _model_drift(run: AlembicRun, current: list[str], heads: Sequence[str], ledger: Ledger, patterns: Sequence[str]) -> dict[str, Any]:
    if sorted(current) != sorted(heads):
        return _report(False, "not at head (the database is at %s, head is %s): the models describe head only" % (", ".join(current), ", ".join(heads)))
    started = time.monotonic()
    try:
        probe = run.probe(compare=True, ignore_tables=[ledger.name])
    except Exception as exc:
        return _report(False, "the live schema could not be compared with the models: %s" % _failure(exc, run), duration=elapsed(started))
    if not probe.metadata_available:
        return _report(False, probe.metadata_note or "env.py has no target_metadata, so there are no models to compare with", duration=elapsed(started))
    return _report(True, None, probe.diffs or [], patterns, duration=elapsed(started))


# -- the ledger ----------------------------------------------------------------
def _success_row(entry: dict[str, Any]) -> bool:
    return entry.get("action") in CHANGE_ACTIONS and entry.get("outcome") == SUCCEEDED


def _drill_row(entry: dict[str, Any]) -> bool:
    return entry.get("action") == DRILL_ACTION


def ledger_highlights(conn: Any, ledger: Ledger, newest: Sequence[dict[str, Any]]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(last_success, last_drill) from the rows already read; the ledger is queried only for what they lack.

    `newest` are the newest rows (newest first). No rows means no ledger table or an empty one: nothing to query.
    """
    if not newest:
        return None, None
    success = next((row for row in newest if _success_row(row)), None)
    drill = next((row for row in newest if _drill_row(row)), None)
    table = ledger.table
    if success is None:
        query = sa.select(table).where(table.c.action.in_(CHANGE_ACTIONS), table.c.outcome == SUCCEEDED).order_by(table.c.id.desc()).limit(1)
        found = conn.execute(query).first()
        success = row_to_dict(found._mapping) if found else None
    if drill is None:
        found = conn.execute(sa.select(table).where(table.c.action == DRILL_ACTION).order_by(table.c.id.desc()).limit(1)).first()
        drill = row_to_dict(found._mapping) if found else None
    return _success_summary(success), _drill_summary(drill)


def _age_seconds(stamp: Any) -> float | None:
    """Seconds since a ledger time (ISO, Z), or None."""
    try:
        then = datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return round((datetime.now(UTC) - then).total_seconds(), 1)


def _success_summary(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    keys = ("run_id", "action", "started_at", "finished_at", "duration", "from_revision", "to_revision")
    return {**{key: row.get(key) for key in keys}, "age_seconds": _age_seconds(row.get("finished_at"))}


def _drill_summary(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    keys = ("run_id", "outcome", "started_at", "finished_at", "duration", "message")
    return {**{key: row.get(key) for key in keys}, "age_seconds": _age_seconds(row.get("finished_at"))}


def mark_dead_drill(last_drill: dict[str, Any] | None) -> None:
    """With no live lock holder, a drill row still 'running' is read as last_runs reads it: interrupted."""
    if last_drill is not None and last_drill.get("outcome") == RUNNING:
        last_drill["outcome"] = INTERRUPTED


# -- backups -------------------------------------------------------------------
def newest_backup_status(directory: str, now: datetime | None = None) -> dict[str, Any] | None:
    """The newest backup in one database's backup directory that has a readable manifest; None when none.

    Cheap metadata only (a directory listing, a stat and the manifest): the checksum is not verified here.
    """
    moment = now or datetime.now(UTC)
    for backup in dated_backups(os.path.expanduser(directory)):
        try:
            manifest = read_manifest(backup.path)
        except ManifestError:
            continue
        try:
            size = os.stat(backup.path).st_size
        except OSError:
            continue  # gone since the listing (retention of a parallel run)
        created = backup.created_at
        assert created is not None
        return {
            "path": backup.path,
            "created_at": created.strftime(MANIFEST_TIME),
            "age_seconds": round((moment - created).total_seconds(), 3),
            "size": size,
            "sha256": manifest.get("sha256"),
            "revision": manifest.get("revision"),
            # Temp files of killed pg_dumps (the next backup and retention remove them; status shows them until then).
            "orphan_partials": orphan_partials(directory),
        }
    return None


# -- review ----------------------------------------------------------------------
def review_policy(params: dict[str, Any]) -> ReviewPolicy:
    """The review's policy from review_rules / review_block / acknowledge, checked before anything runs."""
    return ReviewPolicy.from_params(
        {
            "rules": params.get("review_rules"),  # None: the built-in levels
            "block": bool(params.get("review_block")),
            "acknowledge": params.get("acknowledge"),
            "transaction": params.get("review_transaction"),
        }
    )


def review_pending(
    run: AlembicRun, steps: Sequence[Step], policy: ReviewPolicy, server_version: str | None, fresh: bool = False, cache: ReviewCache | None = None
) -> dict[str, Any] | None:
    """alembic_lint's review of the planned steps, on the run that is already open; None when nothing is pending.

    fresh: the database was empty before this run (it does not exist yet, or no revision is recorded in it).
    cache: where the same plan's review may already be (review/cache.py); `cached` says whether it was.
    """
    if not steps:
        return None
    started = time.monotonic()
    pg_version = parse_pg_version(server_version) if run.target.dialect == "postgresql" else None
    hits = cache.hits if cache is not None else 0
    review = review_steps(run, steps, policy, pg_version, fresh=fresh, cache=cache)
    findings = review.findings
    return {
        "errors": len(review.blocking),
        "warnings": sum(1 for _, f in findings if f["severity"] != ERROR and not f["acknowledged"]),
        "acknowledged": sum(1 for _, f in findings if f["acknowledged"]),
        "blocked": bool(review.blocking) and policy.block,
        "report": [finding_line(entry, f) for entry, f in findings],
        "blocking": review.blocking,
        "block_message": review.block_message,
        "fresh": fresh,
        "revisions": [entry["revision"] for entry in review.revisions],
        "ledger_review": ledger_review(review.revisions),
        "cached": cache is not None and cache.hits > hits,
        "duration": elapsed(started),
    }

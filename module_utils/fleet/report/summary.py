# -*- coding: utf-8 -*-
# Each module's one-line `summary`: what it did (or, in check mode, would do),
# in the words the fleet role prints at the end of a run after
# "<host>/<database>: ". Pure functions of a module's result and check mode,
# so that operations stay free of presentation; core.module.run_module calls
# the one a module's main() hands it, on success and on failure (the result
# then carries failed=True and msg). Never the host or database label, never
# the run's wall time: the role alone knows those.
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def revisions_text(revisions: Sequence[str] | None, empty: str = "base") -> str:
    """Revision ids as the lines show them: "a, b", or `empty` for none."""
    return ", ".join(revisions or []) or empty


def plural(count: int, noun: str) -> str:
    """ "1 revision", "2 revisions"."""
    return "%d %s%s" % (count, noun, "" if count == 1 else "s")


def one_line(text: Any) -> str:
    """A message on one line (a summary line is never wrapped)."""
    return " ".join(str(text or "").split())


def failed(what: str, result: Mapping[str, Any]) -> str | None:
    """The line of a failed run ("<what> failed: <message>"), or None when the result is not a failure."""
    if not result.get("failed"):
        return None
    return "%s failed: %s" % (what, one_line(result.get("msg")) or "no message")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _dirname(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else path


def _backup_clause(backup: Any, check_mode: bool) -> str:
    """ ", backup <path>" (check mode: ", would back up to <directory>") for a backup taken first, else ""."""
    if not isinstance(backup, Mapping) or not backup.get("path"):
        return ""
    if check_mode:
        return ", would back up to %s" % _dirname(backup["path"])
    return ", backup %s" % backup["path"]


def _migration_count(result: Mapping[str, Any]) -> int:
    return len(result.get("pending") or result.get("applied") or [])


def _moved(result: Mapping[str, Any], check_mode: bool, direction: str, counted: str) -> str:
    """ "upgraded a -> b (2 revisions)", "would downgrade b -> a (1 revision undone)"."""
    return "%s %s -> %s (%s%s)" % (
        ("would %s" % direction) if check_mode else "%sd" % direction,
        revisions_text(result.get("before")),
        revisions_text(result.get("after")),
        plural(_migration_count(result), "revision"),
        counted,
    )


def upgrade_summary(result: Mapping[str, Any], check_mode: bool) -> str:
    """alembic_upgrade: "upgraded a -> b (2 revisions), backup <path>", or "at b, nothing to do"."""
    failure = failed("upgrade", result)
    if failure:
        return failure
    if not result.get("changed"):
        return "at %s, nothing to do" % revisions_text(result.get("after"))
    line = _moved(result, check_mode, "upgrade", "")
    backup = _backup_clause(result.get("backup"), check_mode)
    if backup:
        return line + backup
    if result.get("exists") is False:
        return line + ", new database (nothing to back up)"
    return line


def upgrade_many_summary(result: Mapping[str, Any], check_mode: bool) -> str:
    """alembic_upgrade with `databases`: "<name>: <its line>" for each, joined by "; ". Each entry gets its own line
    as its `summary` too (the fleet role prints a line per database)."""
    databases = result.get("databases")
    if not isinstance(databases, list):
        return upgrade_summary(result, check_mode)
    for entry in databases:
        if isinstance(entry, dict):
            entry["summary"] = upgrade_summary(entry, check_mode)
    return "; ".join("%s: %s" % (entry.get("name"), entry.get("summary")) for entry in databases) or "no database"


def downgrade_summary(result: Mapping[str, Any], check_mode: bool) -> str:
    """alembic_downgrade: "downgraded b -> a (1 revision undone), backup <path>", or "already at a, nothing to do"."""
    failure = failed("downgrade", result)
    if failure:
        return failure
    if not result.get("changed"):
        return "already at %s, nothing to do" % revisions_text(result.get("after"))
    return _moved(result, check_mode, "downgrade", " undone") + _backup_clause(result.get("backup"), check_mode)


def stamp_summary(result: Mapping[str, Any], check_mode: bool) -> str:
    """alembic_stamp: "stamped unversioned -> b (schema verified equal)", or "already at b, nothing to do"."""
    failure = failed("stamp", result)
    if failure:
        return failure
    if not result.get("changed"):
        return "already at %s, nothing to do" % revisions_text(result.get("after"))
    line = "%s %s -> %s" % (
        "would stamp" if check_mode else "stamped",
        revisions_text(result.get("before"), "unversioned"),
        revisions_text(result.get("after")),
    )
    return line + (" (schema verified equal)" if "schema_differences" in result else "")


def verify_summary(result: Mapping[str, Any], check_mode: bool) -> str:
    """alembic_verify: "verified at b, schema equal to the models" (or "schema not compared")."""
    failure = failed("verification", result)
    if failure:
        return failure
    line = "verified at %s" % revisions_text(result.get("current"))
    if result.get("schema_compared"):
        return line + ", schema equal to %s" % (result.get("schema_compared_with") or "what the migrations build")
    return line + ", schema not compared"


def _status_line(status: Mapping[str, Any]) -> str:
    if status.get("failed"):
        return "status failed: %s" % (one_line(status.get("msg")) or "no message")
    if status.get("exists") is False:
        count = int(status.get("pending_count") or 0)
        return "does not exist yet, %s pending" % plural(count, "revision")
    at = revisions_text(status.get("current"))
    count = int(status.get("pending_count") or 0)
    if count == 0:
        return "at %s, nothing pending" % at
    return "at %s, %s pending" % (at, plural(count, "revision"))


def status_summary(result: Mapping[str, Any], check_mode: bool) -> str:
    """alembic_status: "at a, 2 revisions pending"; with `databases`, "<name>: ..." for each, joined by "; "."""
    failure = failed("status", result)
    if failure:
        return failure
    databases = result.get("databases")
    if isinstance(databases, list):
        return "; ".join("%s: %s" % (entry.get("name"), _status_line(entry)) for entry in databases) or "no database"
    return _status_line(result)


def _retention_clause(retention: Any) -> str:
    if not isinstance(retention, Mapping):
        return ""
    deleted = len(retention.get("deleted") or [])
    if deleted:
        return ", retention deleted %s" % plural(deleted, "old backup")
    would = len(retention.get("would_delete") or [])
    if would:
        return ", retention would delete %s" % plural(would, "old backup")
    return ""


def backup_summary(result: Mapping[str, Any], check_mode: bool, revision: str | None = None) -> str:
    """db_backup: "backed up b to <path> (123 bytes, sha256 0123456789ab), retention deleted 1 old backup"; in check
    mode "would back up b to <directory>/". `revision` is the module's option of that name (None: read from the
    database, which check mode does not do)."""
    failure = failed("backup", result)
    if failure:
        return failure
    manifest = result.get("manifest") if isinstance(result.get("manifest"), Mapping) else None
    if manifest is not None and "revision" in manifest:
        revision = manifest.get("revision") or ""
    what = "the current revision" if revision is None else (revision or "base")
    path = str(result.get("path") or "")
    if check_mode:
        line = "would back up %s to %s/" % (what, _dirname(path))
    else:
        line = "backed up %s to %s" % (what, path)
        if manifest is not None:
            line += " (%s bytes, sha256 %s)" % (manifest.get("size"), str(manifest.get("sha256") or "")[:12])
    return line + _retention_clause(result.get("retention"))


def restore_summary(result: Mapping[str, Any], check_mode: bool) -> str:
    """db_restore: "restored <path> (revision b)"."""
    failure = failed("restore", result)
    if failure:
        return failure
    return "%s %s (revision %s)" % ("would restore" if check_mode else "restored", result.get("path"), result.get("revision") or "base")


def drill_summary(result: Mapping[str, Any], check_mode: bool) -> str:
    """db_restore_check: "restored <path> (revision b) into a scratch database in 1.2 s; all 5 checks passed"."""
    failure = failed("restore drill", result)
    if failure:
        return failure
    if check_mode:
        return "would drill %s" % (result.get("path") or "the newest backup")
    checks = result.get("checks") or []
    return "restored %s (revision %s) into a scratch database in %s s; all %s passed" % (
        result.get("path"),
        result.get("revision") or "base",
        result.get("restore_seconds"),
        plural(len(checks), "check"),
    )


def unlock_summary(result: Mapping[str, Any], check_mode: bool) -> str:
    """db_unlock: "ended pid 42 (run r-1, since <time>)", or "holds no lock, nothing to release"."""
    failure = failed("release of the run lock", result)
    if failure:
        return failure
    holder = result.get("holder")
    if not isinstance(holder, Mapping) or not holder:
        return "holds no lock, nothing to release"
    return "%s pid %s (run %s, since %s)" % (
        "would end" if check_mode else "ended",
        holder.get("pid"),
        holder.get("run_id") or "?",
        holder.get("since"),
    )


def findings_text(counts: Mapping[str, Any]) -> str:
    """A review's counts in words: "2 errors, 1 warning, 1 acknowledged", or "clean"."""
    found = [plural(int(counts.get(kind + "s") or 0), kind) for kind in ("error", "warning") if int(counts.get(kind + "s") or 0) > 0]
    acknowledged = int(counts.get("acknowledged") or 0)
    if acknowledged > 0:
        found.append("%d acknowledged" % acknowledged)
    return ", ".join(found) or "clean"


def lint_summary(result: Mapping[str, Any], check_mode: bool) -> str:
    """alembic_lint: "2 pending revisions from a reviewed: 1 warning", "at b, nothing pending, nothing to review", or
    "NEEDS ATTENTION - the review blocks 2 pending revisions: 1 error"."""
    failure = failed("review", result)
    if failure:
        return failure
    counts = _mapping(result.get("summary"))
    at = revisions_text(result.get("current"))
    revisions = result.get("revisions") or []
    pending = "%s pending %s" % (len(revisions), "revision" if len(revisions) == 1 else "revisions")
    if result.get("blocked"):
        return "NEEDS ATTENTION - the review blocks %s: %s" % (pending, findings_text(counts))
    if not revisions:
        return "at %s, nothing pending, nothing to review" % at
    line = "%s from %s reviewed: %s" % (pending, at, findings_text(counts))
    return line + (" (not blocking)" if int(counts.get("errors") or 0) > 0 else "")


def report_summary(result: Mapping[str, Any], check_mode: bool) -> str:
    """fleet_report: "4 databases: 1 red, 1 amber, 2 green; <json path>" ("would write" in check mode)."""
    failure = failed("report", result)
    if failure:
        return failure
    counts = _mapping(result.get("summary"))
    line = "%s: %d red, %d amber, %d green" % (
        plural(int(counts.get("databases") or 0), "database"),
        int(counts.get("red") or 0),
        int(counts.get("amber") or 0),
        int(counts.get("green") or 0),
    )
    paths = _mapping(result.get("paths"))
    if paths.get("json"):
        line += "; %s %s" % ("would write" if check_mode else "report", paths["json"])
    return line

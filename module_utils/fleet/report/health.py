# -*- coding: utf-8 -*-
# The nightly status report's judgement: from every database's collected
# status (alembic_status results plus environment/host/name), the reasons a
# database needs attention, a green/amber/red colour per report cell, and the
# numbers the metrics textfile exports. Missing or malformed fields are
# "unknown" (an amber cell), never a crash. Pure Python: no Ansible import but
# FleetError; report.render turns the result into files.
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ansible.module_utils.fleet.core.common import FleetError

GREEN, AMBER, RED = "green", "amber", "red"
_RANK = {GREEN: 0, AMBER: 1, RED: 2}
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
UNKNOWN = "unknown"

# Report columns, in order: key in DatabaseHealth.cells -> heading.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("current", "current"),
    ("head", "head"),
    ("pending", "pending"),
    ("last_success", "last success"),
    ("backup", "backup age"),
    ("drill", "drill"),
    ("drift", "drift"),
    ("review", "review"),
    ("lock", "lock"),
)

# Per-database metrics (key in DatabaseHealth.metrics -> help text); a key is
# absent when its value is unknown. The exported name is alembic_fleet_<key>.
METRICS: tuple[tuple[str, str], ...] = (
    ("status_ok", "1 when the database's status could be collected, 0 when the status call failed."),
    ("needs_attention", "1 when the report lists a reason for this database, else 0."),
    ("pending_migrations", "Revisions between the database's current revision and the project's head."),
    ("schema_drift", "1 when the live schema differs from the migrations or the models beyond the allowed differences, else 0."),
    ("seconds_since_last_success", "Seconds since the last successful alembic-fleet run on the database finished."),
    ("backup_age_seconds", "Age in seconds of the database's newest backup."),
    ("backup_size_bytes", "Size in bytes of the database's newest backup."),
    ("drill_success", "1 when the last restore drill succeeded, 0 when it failed."),
    ("drill_duration_seconds", "Seconds the last restore drill took."),
)


def worst(*colours: str) -> str:
    return max(colours, key=lambda colour: _RANK[colour]) if colours else GREEN


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time (Z, an offset, or naive = UTC) as an aware datetime, or None."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_now(value: str | None) -> datetime:
    """The report's time: the given ISO time, or the current UTC time (whole seconds)."""
    if value is None or not str(value).strip():
        return datetime.now(UTC).replace(microsecond=0)
    moment = parse_time(str(value))
    if moment is None:
        raise FleetError("now '%s' is not an ISO 8601 time: use for example 2026-03-01T02:00:00Z, or leave it out for the current time." % value)
    return moment


def number(value: Any) -> float | None:
    """A finite number from an int, float or numeric string; None otherwise (booleans too)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def count(value: Any) -> int | None:
    """A non-negative whole count; a list counts its items."""
    if isinstance(value, (list, tuple)):
        return len(value)
    result = number(value)
    if result is None or result < 0 or result != int(result):
        return None
    return int(result)


def text_list(value: Any) -> list[str] | None:
    """A list of strings (a single string is a one-item list), or None when it is not a list."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    return None


def _hours(seconds: float) -> str:
    return "%.1f h" % (seconds / 3600.0)


def ago(seconds: float) -> str:
    """A short age: minutes below an hour, hours below two days, then days."""
    seconds = max(seconds, 0.0)
    if seconds < 3600:
        return "%d min" % (seconds // 60)
    if seconds < 48 * 3600:
        return _hours(seconds)
    return "%.1f d" % (seconds / 86400.0)


def _plain(value: float) -> str:
    """26.0 -> '26', 1.5 -> '1.5'."""
    return "%g" % value


def _days(value: float) -> str:
    return "%s day%s" % (_plain(value), "" if value == 1 else "s")


def plural(amount: int, word: str) -> str:
    """'1 revision', '2 revisions'."""
    return "%d %s%s" % (amount, word, "" if amount == 1 else "s")


def one_line(value: Any) -> str:
    """A text on one line: a summary line is grepped by its '<host>/<database>:' prefix."""
    return " ".join(str(value).split())


def _first_line(value: Any) -> str:
    text = str(value).strip() if value is not None else ""
    return text.splitlines()[0].strip() if text else ""


@dataclass(frozen=True)
class Policy:
    max_backup_age_hours: float = 26.0  # 0: backups' age is not judged
    require_backup: bool = True
    max_drill_age_days: float = 0.0  # 0: drills are not required

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_backup_age_hours": self.max_backup_age_hours,
            "require_backup": self.require_backup,
            "max_drill_age_days": self.max_drill_age_days,
        }


@dataclass
class Cell:
    value: str
    colour: str = GREEN

    def as_dict(self) -> dict[str, str]:
        return {"value": self.value, "colour": self.colour}


@dataclass
class DatabaseHealth:
    environment: str
    host: str
    name: str
    label: str | None  # the status's password-free 'database'
    status_ok: bool
    policy: Policy = field(default_factory=Policy)  # the module's, with the database's own overrides
    cells: dict[str, Cell] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)  # without the env/host/name prefix, sorted
    notes: list[str] = field(default_factory=list)  # amber: worth a look, not a failure
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return "%s/%s/%s" % (self.environment, self.host, self.name)

    @property
    def colour(self) -> str:
        if self.reasons:
            return RED
        return worst(*(cell.colour for cell in self.cells.values()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "host": self.host,
            "name": self.name,
            "database": self.label,
            "status_ok": self.status_ok,
            "policy": self.policy.as_dict(),
            "colour": self.colour,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "cells": {key: cell.as_dict() for key, cell in self.cells.items()},
            "metrics": dict(self.metrics),
        }


def _revision_part(db: DatabaseHealth) -> str:
    current = db.cells.get("current", Cell(UNKNOWN)).value
    pending = db.cells.get("pending", Cell(UNKNOWN)).value
    if current == "(no database)":
        revision = "no database yet"
    else:
        revision = "at %s%s" % ("base" if current == "(unversioned)" else current, " (head)" if pending == "0" else "")
    return "%s, %s" % (revision, "%s pending" % pending if pending != UNKNOWN else "pending unknown")


def _backup_part(db: DatabaseHealth) -> str:
    value = db.cells.get("backup", Cell(UNKNOWN)).value
    return {"none": "no backup", UNKNOWN: "backup unknown", "age unknown": "backup of unknown age"}.get(value, "backup %s old" % value)


def _drill_part(db: DatabaseHealth) -> str | None:
    value = db.cells.get("drill", Cell("-")).value
    if value == "-":
        return None  # drills are not required and none is known
    return "no restore drill" if value == "none" else "last drill %s" % value


def _drift_part(db: DatabaseHealth) -> str:
    value = db.cells.get("drift", Cell(UNKNOWN)).value
    if value == "schema drift: ok; model drift: ok":
        return "no drift"
    return value.replace("; ", ", ")


def summary_line(db: DatabaseHealth) -> str:
    """The database's status in one line, without the '<host>/<name>: ' prefix: what needs attention and why, or
    where it stands (revision, pending, backup, drill, drift) and what is worth a look."""
    if db.reasons:
        return one_line("NEEDS ATTENTION - %s" % "; ".join(db.reasons))
    parts = [_revision_part(db), _backup_part(db), _drill_part(db), _drift_part(db)]
    review = db.cells.get("review", Cell("-")).value
    if review not in ("-", "none", "clean"):
        parts.append("review: %s" % review)
    text = ", ".join(part for part in parts if part)
    if db.notes:
        text += " - worth a look: %s" % "; ".join(db.notes)
    return one_line(text)


def database_verdict(db: DatabaseHealth) -> dict[str, Any]:
    """What a play needs per database: its summary line and whether (and why) it needs attention."""
    key = "%s/%s" % (db.host, db.name)
    return {
        "key": key,
        "environment": db.environment,
        "host": db.host,
        "name": db.name,
        "colour": db.colour,
        "attention": [one_line(reason) for reason in db.reasons],
        "notes": [one_line(note) for note in db.notes],
        "line": "%s: %s" % (key, summary_line(db)),
    }


@dataclass
class FleetHealth:
    generated_at: datetime
    policy: Policy
    databases: list[DatabaseHealth]

    @property
    def reasons(self) -> list[str]:
        return sorted("%s: %s" % (db.key, reason) for db in self.databases for reason in db.reasons)

    @property
    def notes(self) -> list[str]:
        return sorted("%s: %s" % (db.key, note) for db in self.databases for note in db.notes)

    @property
    def attention(self) -> bool:
        return any(db.reasons for db in self.databases)

    @property
    def colour(self) -> str:
        return worst(*(db.colour for db in self.databases))

    @property
    def summary(self) -> dict[str, int]:
        colours = [db.colour for db in self.databases]
        return {"databases": len(colours), RED: colours.count(RED), AMBER: colours.count(AMBER), GREEN: colours.count(GREEN)}

    @property
    def environments(self) -> list[tuple[str, list[DatabaseHealth]]]:
        grouped: dict[str, list[DatabaseHealth]] = {}
        for db in self.databases:
            grouped.setdefault(db.environment, []).append(db)
        return sorted(grouped.items())

    def as_dict(self) -> dict[str, Any]:
        return {
            "generated_at": format_time(self.generated_at),
            "state": self.colour,
            "attention": self.attention,
            "summary": self.summary,
            "reasons": self.reasons,
            "notes": self.notes,
            "policy": self.policy.as_dict(),
            "databases": [db.as_dict() for db in self.databases],
        }


def database_policy(status: Mapping[str, Any], policy: Policy) -> Policy:
    """The policy with the database's own max_backup_age_hours, require_backup and max_drill_age_days, where given."""
    hours = number(status.get("max_backup_age_hours"))
    days = number(status.get("max_drill_age_days"))
    require = status.get("require_backup")
    return Policy(
        max_backup_age_hours=hours if hours is not None and hours >= 0 else policy.max_backup_age_hours,
        require_backup=require if isinstance(require, bool) else policy.require_backup,
        max_drill_age_days=days if days is not None and days >= 0 else policy.max_drill_age_days,
    )


def status_failed(status: Mapping[str, Any]) -> bool:
    """Whether the status call failed: failed or unreachable, or (registered with failed_when: false) a msg and no result."""
    if status.get("failed") or status.get("unreachable"):
        return True
    return bool(status.get("msg")) and "exists" not in status and "current" not in status


# What left a side database behind, by its kind (alembic_status's `leftovers`).
LEFT_BY = {"restore": "an interrupted restore", "drill": "an interrupted restore drill", "scratch": "an interrupted schema check"}


class _Judge:
    """Judges one database's status dict into a DatabaseHealth."""

    def __init__(self, status: Mapping[str, Any], policy: Policy, now: datetime) -> None:
        self.status = status
        self.policy = database_policy(status, policy)
        self.now = now
        label = status.get("database")
        name = status.get("name") or label or UNKNOWN
        self.failed = status_failed(status)
        self.health = DatabaseHealth(
            environment=str(status.get("environment") or UNKNOWN),
            host=str(status.get("host") or UNKNOWN),
            name=str(name),
            label=str(label) if label else None,
            status_ok=not self.failed,
            policy=self.policy,
        )

    def reason(self, text: str) -> None:
        self.health.reasons.append(text)

    def note(self, text: str) -> None:
        self.health.notes.append(text)

    def metric(self, key: str, value: float | None) -> None:
        if value is not None and math.isfinite(value):
            self.health.metrics[key] = int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)

    def age_of(self, value: Any) -> float | None:
        moment = parse_time(value)
        return None if moment is None else max((self.now - moment).total_seconds(), 0.0)

    def mapping(self, key: str) -> tuple[bool, Mapping[str, Any] | None]:
        """(known, value): known is False when the key is missing or not a dict/null."""
        if key not in self.status:
            return False, None
        value = self.status[key]
        if value is None:
            return True, None
        if isinstance(value, Mapping):
            return True, value
        return False, None

    def judge(self) -> DatabaseHealth:
        cells = self.health.cells
        self.metric("status_ok", 0 if self.failed else 1)
        pending = self.pending()
        cells["current"] = self.current(pending)
        cells["head"] = self.head()
        cells["pending"] = self.pending_cell(pending)
        cells["last_success"] = self.last_success()
        cells["backup"] = self.backup()
        cells["drill"] = self.drill()
        cells["drift"] = self.drift()
        cells["review"] = self.review()
        cells["lock"] = self.lock()
        self.leftovers()
        self.health.reasons.sort()
        self.health.notes.sort()
        self.metric("needs_attention", 1 if self.health.reasons else 0)
        return self.health

    # -- revisions ------------------------------------------------------------
    def pending(self) -> int | None:
        pending = count(self.status.get("pending_count"))
        if pending is None and isinstance(self.status.get("pending"), list):
            pending = len(self.status["pending"])
        if pending is None:
            current, heads = text_list(self.status.get("current")), text_list(self.status.get("heads"))
            if current is not None and heads and sorted(current) == sorted(heads):
                pending = 0
        self.metric("pending_migrations", pending)
        return pending

    def current(self, pending: int | None) -> Cell:
        if self.failed:
            message = _first_line(self.status.get("msg")) or "no message"
            self.reason("status failed: %s" % message)
            return Cell("status failed", RED)
        current = text_list(self.status.get("current"))
        if self.status.get("exists") is False:
            value = "(no database)"
        elif current is None:
            value = UNKNOWN
        else:
            value = ", ".join(current) or "(unversioned)"
        if pending is None:
            return Cell(value, AMBER)
        return Cell(value, RED if pending else GREEN)

    def head(self) -> Cell:
        heads = text_list(self.status.get("heads"))
        if heads is None:
            return Cell(UNKNOWN, AMBER)
        if len(heads) > 1:
            self.note("the project has %d heads (%s): merge them" % (len(heads), ", ".join(heads)))
            return Cell(", ".join(heads), AMBER)
        return Cell(", ".join(heads) or "(no revisions)", GREEN)

    def pending_cell(self, pending: int | None) -> Cell:
        if pending is None:
            return Cell(UNKNOWN, AMBER)
        if pending:
            self.reason("%s behind head" % plural(pending, "revision"))
            return Cell(str(pending), RED)
        return Cell("0", GREEN)

    # -- runs -----------------------------------------------------------------
    def last_success(self) -> Cell:
        known, run = self.mapping("last_success")
        if not known and isinstance(self.status.get("last_runs"), list):
            known, run = True, None
            for entry in self.status["last_runs"]:
                if isinstance(entry, Mapping) and entry.get("outcome") == "succeeded":
                    run = entry
                    break
        if not known:
            return Cell(UNKNOWN, AMBER)
        if run is None:
            if not self.failed:
                self.note("no successful alembic-fleet run recorded")
            return Cell("never", AMBER)
        when = run.get("finished_at") or run.get("started_at")
        age = self.age_of(when)
        self.metric("seconds_since_last_success", age)
        if age is None:
            return Cell("recorded, time unknown", AMBER)
        return Cell("%s (%s ago)" % (format_time(parse_time(when)), ago(age)), GREEN)  # type: ignore[arg-type]

    # -- backups and drills ---------------------------------------------------
    def backup(self) -> Cell:
        known, backup = self.mapping("backup")
        if not known:
            why = _first_line(self.status.get("backup_note"))
            if why and not self.failed:
                self.note("backups unknown: %s" % why)
            return Cell(UNKNOWN, AMBER)
        if backup is None:
            if self.policy.require_backup:
                self.reason("no backup")
                return Cell("none", RED)
            return Cell("none", GREEN)
        size = number(backup.get("size"))
        self.metric("backup_size_bytes", size)
        age = self.age_of(backup.get("created_at"))
        if age is None:
            age = number(backup.get("age_seconds"))
            age = None if age is None else max(age, 0.0)
        self.metric("backup_age_seconds", age)
        limit = self.policy.max_backup_age_hours
        if age is None:
            if limit > 0:
                self.note("the newest backup's age is unknown")
                return Cell("age unknown", AMBER)
            return Cell("age unknown", GREEN)
        value = _hours(age)
        if limit > 0 and age > limit * 3600:
            self.reason("newest backup is %s old (limit %s h)" % (value, _plain(limit)))
            return Cell(value, RED)
        return Cell(value, GREEN)

    def drill(self) -> Cell:
        known, drill = self.mapping("last_drill")
        required = self.policy.max_drill_age_days > 0
        if drill is None:
            if not known:
                return Cell(UNKNOWN, AMBER) if required else Cell("-", GREEN)
            if required:
                self.reason("no successful restore drill in %s" % _days(self.policy.max_drill_age_days))
                return Cell("none", RED)
            return Cell("none", GREEN)
        outcome = str(drill.get("outcome") or "")
        when = drill.get("finished_at")
        age = self.age_of(when)
        duration = number(drill.get("duration"))
        self.metric("drill_duration_seconds", duration)
        took = "" if duration is None else ", took %s s" % _plain(round(duration, 1))
        at = format_time(parse_time(when)) if age is not None else ""  # type: ignore[arg-type]
        if outcome == "failed":
            self.metric("drill_success", 0)
            detail = "; ".join(part for part in (at, _first_line(drill.get("msg") or drill.get("message"))) if part)
            self.reason("last restore drill failed" + (" (%s)" % detail if detail else ""))
            return Cell("failed" + (" %s ago" % ago(age) if age is not None else ""), RED)
        if outcome != "succeeded":
            if outcome:
                self.note("last restore drill %s" % outcome)
            return Cell(outcome or UNKNOWN, AMBER)
        self.metric("drill_success", 1)
        if age is None:
            if required:
                self.note("the last restore drill's time is unknown")
                return Cell("succeeded, time unknown" + took, AMBER)
            return Cell("succeeded" + took, GREEN)
        value = "succeeded %s ago (%s%s)" % (ago(age), at, took)
        if required and age > self.policy.max_drill_age_days * 86400:
            self.reason("no successful restore drill in %s" % _days(self.policy.max_drill_age_days))
            return Cell(value, RED)
        return Cell(value, GREEN)

    # -- drift and review -----------------------------------------------------
    def _drift_part(self, key: str, title: str, reason_prefix: str) -> tuple[str, str, bool | None]:
        """(cell text, colour, drifted: None when not checked)."""
        known, drift = self.mapping(key)
        if drift is None:
            if known and not self.failed:
                self.note("%s not checked" % title)
            return "%s: %s" % (title, "not checked" if known else UNKNOWN), AMBER, None
        differences = text_list(drift.get("differences"))
        checked = drift.get("checked")
        if checked is None:
            checked = differences is not None
        if not checked:
            why = _first_line(drift.get("note"))
            if not self.failed:
                self.note("%s not checked%s" % (title, ": %s" % why if why else ""))
            return "%s: not checked" % title, AMBER, None
        if differences is None:
            return "%s: %s" % (title, UNKNOWN), AMBER, None
        allowed = text_list(drift.get("allowed")) or []
        real = [difference for difference in differences if difference not in allowed]
        accepted = len(set(allowed))
        for difference in real:
            self.reason("%s%s" % (reason_prefix, difference))
        extra = " (%d allowed)" % accepted if accepted else ""
        if real:
            return "%s: %d difference(s)%s" % (title, len(real), extra), RED, True
        return "%s: ok%s" % (title, extra), GREEN, False

    def drift(self) -> Cell:
        schema = self._drift_part("drift", "schema drift", "schema drift: ")
        models = self._drift_part("model_drift", "model drift", "models differ from the database: ")
        checked = [drifted for _, _, drifted in (schema, models) if drifted is not None]
        if checked:
            self.metric("schema_drift", 1 if any(checked) else 0)
        return Cell("; ".join((schema[0], models[0])), worst(schema[1], models[1]))

    def review(self) -> Cell:
        known, review = self.mapping("review")
        if review is None:
            return Cell("none" if known else "-", GREEN)
        errors = count(review.get("errors"))
        warnings = count(review.get("warnings"))
        acknowledged = count(review.get("acknowledged"))
        parts = []
        if errors:
            parts.append(plural(errors, "error"))
        if warnings:
            parts.append(plural(warnings, "warning"))
        if acknowledged:
            parts.append("%d acknowledged" % acknowledged)
        value = ", ".join(parts) or "clean"
        if review.get("blocked"):
            self.reason("review blocks: %s" % (plural(errors, "error") if errors is not None else "unknown errors"))
            return Cell("blocked: " + value, RED)
        if errors or warnings:
            self.note("review: %s (not blocking)" % value)
            return Cell(value, AMBER)
        if errors is None and warnings is None:
            return Cell(UNKNOWN, AMBER)
        return Cell(value, GREEN)

    def lock(self) -> Cell:
        known, holder = self.mapping("lock_holder")
        if not known:
            return Cell(UNKNOWN, AMBER)
        if holder is None:
            return Cell("free", GREEN)
        who = ", ".join("%s %s" % (key, holder[key]) for key in ("run_id", "pid", "client", "since") if holder.get(key) not in (None, ""))
        self.note("run lock held%s" % (" (%s)" % who if who else ""))
        return Cell("held" + (" (%s)" % who if who else ""), AMBER)

    def leftovers(self) -> None:
        """Side databases that no session uses: the run that made them is gone, and they take disk space."""
        entries = self.status.get("leftovers")
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, Mapping) or count(entry.get("sessions")) != 0:
                continue  # in use: a run in progress
            name, kind = entry.get("name"), entry.get("kind")
            if kind == "replaced":
                self.note(
                    "database %s holds the copy a restore replaced (kept with keep_replaced, or left by an interrupted restore): "
                    "drop it when it is no longer needed" % name
                )
            else:
                self.reason("database %s was left by %s and no session uses it: drop it" % (name, LEFT_BY.get(str(kind), "an interrupted run")))


def judge_database(status: Mapping[str, Any], policy: Policy, now: datetime) -> DatabaseHealth:
    return _Judge(status, policy, now).judge()


def judge_fleet(statuses: list[Any], policy: Policy, now: datetime) -> FleetHealth:
    """Judge every database; databases sorted by environment, host, name."""
    databases = []
    for index, status in enumerate(statuses):
        if not isinstance(status, Mapping):
            raise FleetError(
                "databases[%d] is a %s, not a dict: pass one dict per database (environment, host, name and its alembic_status result)."
                % (index, type(status).__name__)
            )
        databases.append(judge_database(status, policy, now))
    databases.sort(key=lambda db: (db.environment, db.host, db.name, db.label or ""))
    return FleetHealth(generated_at=now, policy=policy, databases=databases)

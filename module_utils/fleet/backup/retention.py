# -*- coding: utf-8 -*-
# Backup retention for one database's directory of the tree db_backup writes
# (<root>/<env>/<host>/<name>/<UTC %Y%m%dT%H%M%SZ>_<revision>[-N].dump|.sqlite3,
# each with <file>.manifest.json). plan_retention decides, apply_retention
# deletes; the newest backup, protected paths and backups of unknown age are
# never deleted. Partial files (.<file>.pid<N>.<random>.partial) that no live
# process writes any more go too. Pure Python: no Alembic, SQLAlchemy or
# psycopg2 import.
from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ansible.module_utils.fleet.backup.catalog import BACKUP_EXTENSIONS, MANIFEST_SUFFIX, list_backups, scan_backup_directory
from ansible.module_utils.fleet.core.common import FleetError, process_alive

PARTIAL_SUFFIX = ".partial"
_PARTIAL_PID = re.compile(r"\.pid(?P<pid>\d+)\.[A-Za-z0-9_]+\.partial$")
# A partial file of an older version (no pid in its name) is left over once nothing wrote to it for this long.
LEGACY_PARTIAL_SECONDS = 3600

# Why a backup is kept or deleted (values of RetentionPlan.reasons).
NEWEST = "newest backup"
PROTECTED = "protected"
UNKNOWN_AGE = "unknown age"


@dataclass
class RetentionPlan:
    """Backup file paths to keep and to delete (manifests follow their file)."""

    keep: list[str]
    delete: list[str]
    reasons: dict[str, str] = field(default_factory=dict)  # path -> why
    partials: list[str] = field(default_factory=list)  # left-over .partial files of dead processes, deleted too

    def as_dict(self) -> dict[str, Any]:
        return {"keep": list(self.keep), "delete": list(self.delete), "reasons": dict(self.reasons)}


def plan_retention(
    directory: str,
    keep_last: int,
    keep_days: float,
    protect: Iterable[str] = (),
    now: datetime | None = None,
) -> RetentionPlan:
    """Decide which backups of one database's directory to keep and to delete."""
    _check_policy(keep_last, keep_days)
    moment = _utc(now or datetime.now(UTC))
    backups = list_backups(directory)
    protected = {os.path.realpath(path) for path in protect if path}
    dated = sorted((b for b in backups if b.created_at is not None), key=lambda b: b.order, reverse=True)
    plan = RetentionPlan(keep=[], delete=[])
    for rank, backup in enumerate(dated):
        assert backup.created_at is not None
        age = moment - backup.created_at
        keep, reason = _verdict(backup.path, rank, age, keep_last, keep_days, protected)
        (plan.keep if keep else plan.delete).append(backup.path)
        plan.reasons[backup.path] = reason
    for backup in backups:
        if backup.created_at is None:
            plan.keep.append(backup.path)
            plan.reasons[backup.path] = UNKNOWN_AGE
    plan.partials = stale_partials(directory, moment)
    return plan


@dataclass(frozen=True)
class PartialFile:
    """A temporary file db_backup writes before it verifies and names a backup."""

    path: str
    pid: int | None  # the writing process; None in an older version's name
    size: int
    modified_at: datetime


def partial_files(directory: str) -> list[PartialFile]:
    """The .partial files directly in a backup directory, by name."""
    found: list[PartialFile] = []
    for entry in scan_backup_directory(directory):
        if not (entry.name.startswith(".") and entry.name.endswith(PARTIAL_SUFFIX) and entry.is_file(follow_symlinks=False)):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # finished (or removed) meanwhile
        match = _PARTIAL_PID.search(entry.name)
        found.append(
            PartialFile(
                path=entry.path,
                pid=int(match.group("pid")) if match else None,
                size=info.st_size,
                modified_at=datetime.fromtimestamp(info.st_mtime, UTC),
            )
        )
    return found


def stale_partials(directory: str, now: datetime | None = None) -> list[str]:
    """The partial files no live process writes: its pid is gone, or (no pid) untouched for an hour."""
    moment = _utc(now or datetime.now(UTC))
    stale: list[str] = []
    for item in partial_files(directory):
        if item.pid is not None:
            # The pid is of this machine's module run: the directory is per host.
            if item.pid != os.getpid() and not process_alive(item.pid):
                stale.append(item.path)
        elif (moment - item.modified_at).total_seconds() > LEGACY_PARTIAL_SECONDS:
            stale.append(item.path)
    return stale


def _check_policy(keep_last: int, keep_days: float) -> None:
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
        raise FleetError("keep_last %r is not allowed: use a whole number of at least 1 (the newest backup is always kept)." % (keep_last,))
    if isinstance(keep_days, bool) or not isinstance(keep_days, (int, float)) or not keep_days >= 0:
        raise FleetError("keep_days %r is not allowed: use 0 or more days (0 keeps by count only)." % (keep_days,))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _verdict(path: str, rank: int, age: timedelta, keep_last: int, keep_days: float, protected: set[str]) -> tuple[bool, str]:
    """(keep?, why) for the backup at path, rank 0 being the newest."""
    if rank == 0:
        return True, NEWEST
    if os.path.realpath(path) in protected:
        return True, PROTECTED
    if rank < keep_last:
        return True, "one of the newest %d" % keep_last
    if age.total_seconds() < keep_days * 86400:  # not timedelta(days=...): keep_days may be inf
        return True, "younger than %g days" % keep_days
    return False, "older than %g days and not one of the newest %d" % (keep_days, keep_last)


def apply_retention(plan: RetentionPlan) -> list[str]:
    """Delete each planned backup and its manifest; return the backups that were there."""
    deleted: list[str] = []
    for path in plan.delete:
        if not os.path.basename(path).endswith(BACKUP_EXTENSIONS):
            raise FleetError("%s is not a backup file (.dump or .sqlite3): refusing to delete it; plan with plan_retention." % path)
        removed = _remove(path)
        removed = _remove(path + MANIFEST_SUFFIX) or removed
        if removed:
            deleted.append(path)
    for path in plan.partials:
        if not os.path.basename(path).endswith(PARTIAL_SUFFIX):
            raise FleetError("%s is not a partial backup file (.partial): refusing to delete it; plan with plan_retention." % path)
        _remove(path)
    return deleted


def _remove(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise FleetError("cannot delete %s (%s): fix the backup directory's permissions and run again." % (path, exc.strerror or exc)) from None
    return True

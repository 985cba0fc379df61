# -*- coding: utf-8 -*-
# The backup catalog: everything known of backups without reading a dump. The
# tree (<root>/<environment>/<host>/<name>/) and file names, one database's
# backups with their age, the manifest beside each backup (one reader, one
# contract), the newest backup that has one, and the names of the side
# databases a restore or a drill creates beside the original (ops finds the
# ones a killed run left by the same names).
from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ansible.module_utils.fleet.core.common import FleetError

MANIFEST_SUFFIX = ".manifest.json"
BACKUP_EXTENSIONS = (".dump", ".sqlite3")
MANIFEST_TIME = "%Y-%m-%dT%H:%M:%SZ"
NAME_TIME = "%Y%m%dT%H%M%SZ"
# What a restore or a drill relies on in a manifest: db_backup writes all of them, with these types.
MANIFEST_KEYS: dict[str, type] = {"name": str, "dialect": str, "size": int, "sha256": str}
_NAME = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)_(?P<rev>[A-Za-z0-9_-]+?)(?:-(?P<copy>\d+))?\.(?:dump|sqlite3)$")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")

PG_NAME_LIMIT = 63  # NAMEDATALEN - 1, in bytes
SIDE_HEX = 6  # hex digits that end a side database's name


# -- where backups go -------------------------------------------------------------
def _plain(value: str, option: str) -> str:
    if not value or not _PLAIN_NAME.match(value) or ".." in value:
        raise FleetError("%s '%s' cannot be used in a backup path: use letters, digits, '.', '_', '@' or '-' (no '/' or '..')." % (option, value))
    return value


def backup_directory(root: str, environment: str, host: str, name: str) -> str:
    return os.path.join(
        os.path.abspath(os.path.expanduser(root)),
        _plain(environment, "environment"),
        _plain(host, "host"),
        _plain(name, "name"),
    )


def backup_filename(when: datetime, revision: str | None, dialect: str) -> str:
    rev = revision or "base"
    rev = re.sub(r"[^A-Za-z0-9_-]", "-", rev)
    ext = "dump" if dialect == "postgresql" else "sqlite3"
    return "%s_%s.%s" % (when.strftime(NAME_TIME), rev, ext)


# -- manifests ----------------------------------------------------------------------
class ManifestError(FleetError):
    """The manifest beside a backup is missing, cannot be read, or lacks what db_backup writes.

    The reason is one phrase (`problem`) so that each caller says in its own words what to do about it.
    """

    def __init__(self, manifest_path: str, problem: str, missing: bool = False) -> None:
        super().__init__("backup manifest %s %s" % (manifest_path, problem))
        self.manifest_path = manifest_path
        self.problem = problem
        self.missing = missing


def read_manifest(backup_path: str) -> dict[str, Any]:
    """The manifest beside backup_path: a JSON object, or ManifestError (missing, unreadable, not an object)."""
    manifest_path = backup_path + MANIFEST_SUFFIX
    try:
        with open(manifest_path) as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise ManifestError(manifest_path, "is missing", missing=True) from None
    except (OSError, ValueError) as exc:
        raise ManifestError(manifest_path, "cannot be read (%s)" % " ".join(str(exc).split())) from None
    if not isinstance(manifest, dict):
        raise ManifestError(manifest_path, "is not a JSON object")
    return manifest


def manifest_lacks(manifest: dict[str, Any]) -> list[str]:
    """The keys of MANIFEST_KEYS that manifest lacks or holds with another type (in MANIFEST_KEYS' order)."""
    return [key for key, kind in MANIFEST_KEYS.items() if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool)]


def manifest_time(backup_path: str) -> datetime | None:
    """When the manifest says the backup was taken; None when it does not say (or there is none)."""
    try:
        value = read_manifest(backup_path).get("created_at")
    except ManifestError:
        return None
    return _parse_time(value, MANIFEST_TIME) if isinstance(value, str) else None


def _parse_time(text: str, pattern: str) -> datetime | None:
    try:
        return datetime.strptime(text, pattern).replace(tzinfo=UTC)
    except ValueError:
        return None


# -- one database's backups -----------------------------------------------------------
@dataclass(frozen=True)
class BackupFile:
    """A backup file in a database's backup directory, with its age when known."""

    path: str
    created_at: datetime | None  # None: unknown age
    order: tuple[Any, ...]  # sorts oldest first among backups of known age


def scan_backup_directory(directory: str) -> list[os.DirEntry[str]]:
    """The entries directly in a backup directory (not recursive), by name; none when it does not exist yet.

    The one scan of a backup directory: the backups (list_backups) and the partial files (retention) are read from it."""
    try:
        return sorted(os.scandir(os.path.abspath(directory)), key=lambda entry: entry.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise FleetError("backup directory %s cannot be listed (%s): check the path and its permissions." % (directory, exc.strerror or exc)) from None


def list_backups(directory: str) -> list[BackupFile]:
    """The backups directly in directory (not recursive), each with its age if known."""
    entries = scan_backup_directory(directory)
    return [_backup_file(entry.path, entry.name, entry.stat(follow_symlinks=False).st_mtime_ns) for entry in entries if _is_backup(entry)]


def _is_backup(entry: os.DirEntry[str]) -> bool:
    """A regular file named like a backup; temp files (.partial, dot names), manifests and links are not."""
    name = entry.name
    return not name.startswith(".") and name.endswith(BACKUP_EXTENSIONS) and entry.is_file(follow_symlinks=False)


def _backup_file(path: str, name: str, mtime_ns: int) -> BackupFile:
    match = _NAME.match(name)
    created_at = manifest_time(path) or (_parse_time(match.group("stamp"), NAME_TIME) if match else None)
    copy = int(match.group("copy")) if match and match.group("copy") else 0
    # Times are whole seconds: two backups of one second (the one before and the one after a quick upgrade) are
    # told apart by when each file was written, not by their names (revision ids sort in no useful order).
    return BackupFile(path=path, created_at=created_at, order=(created_at, copy, mtime_ns, name))


def dated_backups(directory: str) -> list[BackupFile]:
    """The backups of known age in directory, newest first."""
    return sorted((b for b in list_backups(directory) if b.created_at is not None), key=lambda b: b.order, reverse=True)


def newest_backup(directory: str) -> tuple[str | None, list[str]]:
    """The newest backup in a database's backup directory that has a manifest beside it, and the newer ones
    without one (a db_backup that did not finish writing them)."""
    skipped: list[str] = []
    for backup in dated_backups(directory):
        if os.path.isfile(backup.path + MANIFEST_SUFFIX):
            return backup.path, skipped
        skipped.append(backup.path)
    return None, skipped


# -- side databases ------------------------------------------------------------------
def side_prefix(dbname: str, kind: str) -> str:
    """'<dbname>_<kind>_', the database name shortened so that the whole side name fits PostgreSQL's 63 bytes."""
    suffix = "_%s_" % kind
    budget = PG_NAME_LIMIT - len(suffix.encode()) - SIDE_HEX
    return dbname.encode()[:budget].decode("utf-8", errors="ignore") + suffix


def side_name(dbname: str, kind: str) -> str:
    """'<dbname>_<kind>_<6 hex>': a database beside dbname (restore, replaced, drill)."""
    return side_prefix(dbname, kind) + secrets.token_hex(SIDE_HEX // 2)


def is_side_name(name: str, prefix: str) -> bool:
    """Whether name is prefix followed by the SIDE_HEX lowercase hex digits side_name() adds."""
    rest = name[len(prefix) :]
    return name.startswith(prefix) and len(rest) == SIDE_HEX and all(c in "0123456789abcdef" for c in rest)

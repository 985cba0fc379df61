# -*- coding: utf-8 -*-
# The run ledger: one row per change (migrate, rollback, stamp, restore) in a
# table inside the target database, so the history travels with the database
# and survives a lost control node. A row is inserted as 'running' and
# committed before the change starts, then finished in the change's own
# transaction ('succeeded') or in a new one ('failed'); a row left 'running'
# by a killed run is marked 'interrupted' by the next run. Rows never hold a
# secret: the URL is password-free and no connection string is stored.
from __future__ import annotations

import getpass
import hashlib
import json
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ansible.module_utils.fleet.core.common import FleetError, plain_table_name
from ansible.module_utils.fleet.core.options import DEFAULT_LEDGER_TABLE

try:
    import sqlalchemy as sa
except ImportError:  # pragma: no cover - reported by the module
    sa = None  # type: ignore[assignment]

DEFAULT_TABLE = DEFAULT_LEDGER_TABLE
RUNNING, SUCCEEDED, FAILED, ROLLED_BACK, INTERRUPTED = "running", "succeeded", "failed", "rolled_back", "interrupted"
OUTCOMES = (RUNNING, SUCCEEDED, FAILED, ROLLED_BACK, INTERRUPTED)
ACTIONS = ("migrate", "rollback", "upgrade", "downgrade", "stamp", "restore", "unlock", "drill")

# Options every changing module takes to describe the run it belongs to.
LEDGER_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "ledger_table": dict(type="str", default=DEFAULT_TABLE),
    "record": dict(
        type="dict",
        default={},
        options=dict(
            run_id=dict(type="str"),
            action=dict(type="str", choices=list(ACTIONS)),
            environment=dict(type="str", default=""),
            host=dict(type="str", default=""),
            name=dict(type="str", default=""),
            operator=dict(type="str"),
            backup_path=dict(type="str"),
            backup_sha256=dict(type="str"),
            review=dict(type="list", elements="dict"),
        ),
    ),
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def file_sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def default_operator() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in a bare container
        user = "unknown"
    return "%s@%s" % (user, socket.gethostname())


@dataclass
class RunRecord:
    """Who, where and why: the context of one ledger row."""

    action: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    environment: str = ""
    host: str = ""
    name: str = ""
    operator: str = field(default_factory=default_operator)
    backup_path: str | None = None
    backup_sha256: str | None = None
    # alembic_lint's ledger_review: per revision, its reversibility and review findings with acknowledgements.
    review: list[dict[str, Any]] | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any], default_action: str) -> RunRecord:
        given = {k: v for k, v in (params.get("record") or {}).items() if v not in (None, "")}
        given.setdefault("action", default_action)
        return cls(**given)


def ledger_table(name: str = DEFAULT_TABLE, metadata: Any = None) -> Any:
    metadata = metadata if metadata is not None else sa.MetaData()
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("entry_id", sa.String(32), nullable=False, unique=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("operator", sa.String(255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("duration", sa.Float),
        sa.Column("from_revision", sa.String(255), nullable=False),
        sa.Column("to_revision", sa.String(255)),
        sa.Column("backup_path", sa.Text),
        sa.Column("backup_sha256", sa.String(64)),
        sa.Column("revisions", sa.Text, nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("undone_by", sa.String(32)),
    )


def _revisions_text(revisions: Iterable[str]) -> str:
    return " ".join(revisions)


class Ledger:
    """Reads and writes one database's ledger table."""

    def __init__(self, table_name: str = DEFAULT_TABLE) -> None:
        self.table = ledger_table(plain_table_name(table_name, "ledger_table"))

    @property
    def name(self) -> str:
        return str(self.table.name)

    def exists(self, conn: Any) -> bool:
        """Whether the table is there; one of another shape is refused, before a query fails on it with its SQL."""
        found = bool(sa.inspect(conn).has_table(self.name))
        if found:
            self._check_shape(conn)
        return found

    def ensure(self, conn: Any) -> None:
        if not self.exists(conn):
            self.table.create(conn, checkfirst=True)

    def _check_shape(self, conn: Any) -> None:
        present = {str(column["name"]).lower() for column in sa.inspect(conn).get_columns(self.name)}
        missing = [str(column.name) for column in self.table.columns if str(column.name).lower() not in present]
        if missing:
            raise FleetError(
                "the run ledger table %s lacks the column(s) %s (a table of an older or another shape): "
                "rename or drop that table so that alembic-fleet creates its own, or set ledger_table to another name." % (self.name, ", ".join(missing))
            )

    def start(self, conn: Any, record: RunRecord, from_revision: Iterable[str]) -> str:
        """Insert a 'running' row (caller commits); marks older 'running' rows interrupted."""
        try:
            return self._start(conn, record, from_revision)
        except sa.exc.DBAPIError as exc:
            detail = " ".join(str(getattr(exc, "orig", exc)).split())[:200]
            raise FleetError(
                "cannot write the run ledger table %s (%s): let the migration user create and write it, or set ledger_table to a table it may use; "
                "nothing was changed." % (self.name, detail)
            ) from None

    def _start(self, conn: Any, record: RunRecord, from_revision: Iterable[str]) -> str:
        self.ensure(conn)
        conn.execute(
            self.table.update()
            .where(self.table.c.outcome == RUNNING)
            .values(outcome=INTERRUPTED, message="the run ended without recording an outcome (killed or lost)")
        )
        entry_id = uuid.uuid4().hex
        conn.execute(
            self.table.insert().values(
                entry_id=entry_id,
                run_id=record.run_id,
                action=record.action,
                outcome=RUNNING,
                environment=record.environment,
                host=record.host,
                name=record.name,
                operator=record.operator,
                started_at=utcnow(),
                from_revision=_revisions_text(from_revision),
                backup_path=record.backup_path,
                backup_sha256=record.backup_sha256,
                revisions="[]",
            )
        )
        return entry_id

    def finish(
        self,
        conn: Any,
        entry_id: str,
        outcome: str,
        to_revision: Iterable[str],
        revisions: list[dict[str, Any]] | None = None,
        message: str | None = None,
    ) -> None:
        row = conn.execute(sa.select(self.table.c.started_at).where(self.table.c.entry_id == entry_id)).first()
        finished = utcnow()
        started = row[0] if row else finished
        if started.tzinfo is None:  # SQLite hands back naive datetimes
            started = started.replace(tzinfo=UTC)
        conn.execute(
            self.table.update()
            .where(self.table.c.entry_id == entry_id)
            .values(
                outcome=outcome,
                finished_at=finished,
                duration=round((finished - started).total_seconds(), 3),
                to_revision=_revisions_text(to_revision),
                revisions=json.dumps(revisions or []),
                message=message,
            )
        )

    def mark_unverified(self, conn: Any, entry_id: str, message: str) -> None:
        """A committed run whose verification failed: its revisions are in the database (to_revision and revisions
        stay as recorded), but it did not succeed."""
        conn.execute(self.table.update().where(self.table.c.entry_id == entry_id).values(outcome=FAILED, message=message))

    def mark_undone(self, conn: Any, entry_id: str, undone_by: str, how: str | None = None) -> None:
        """The run entry_id was undone by the row undone_by; its message keeps why (appended to what it said)."""
        why = "rolled back by entry %s%s" % (undone_by, " (%s)" % how if how else "")
        message = sa.case((self.table.c.message.is_(None), sa.literal(why)), else_=self.table.c.message + sa.literal("; " + why))
        conn.execute(self.table.update().where(self.table.c.entry_id == entry_id).values(outcome=ROLLED_BACK, undone_by=undone_by, message=message))

    def read(self, conn: Any, limit: int | None = 10) -> list[dict[str, Any]]:
        """Newest first; [] when the table does not exist yet."""
        if not self.exists(conn):
            return []
        query = sa.select(self.table).order_by(self.table.c.id.desc())
        if limit:
            query = query.limit(limit)
        return [row_to_dict(row._mapping) for row in conn.execute(query)]

    def running(self, conn: Any) -> dict[str, Any] | None:
        """The newest row still marked 'running' (its run holds the lock, or died)."""
        if not self.exists(conn):
            return None
        row = conn.execute(sa.select(self.table).where(self.table.c.outcome == RUNNING).order_by(self.table.c.id.desc()).limit(1)).first()
        return row_to_dict(row._mapping) if row else None

    def last_change(self, conn: Any) -> dict[str, Any] | None:
        """The newest migrate/upgrade row: the run a rollback would undo."""
        if not self.exists(conn):
            return None
        query = sa.select(self.table).where(self.table.c.action.in_(("migrate", "upgrade"))).order_by(self.table.c.id.desc()).limit(1)
        row = conn.execute(query).first()
        return row_to_dict(row._mapping) if row else None

    def applied_checksums(self, conn: Any) -> dict[str, dict[str, Any]]:
        """revision -> the newest successful upgrade record of its file."""
        found: dict[str, dict[str, Any]] = {}
        if not self.exists(conn):
            return found
        # A failed run records revisions only when they were applied (its verification failed after the commit).
        query = sa.select(self.table).where(self.table.c.outcome.in_((SUCCEEDED, ROLLED_BACK, FAILED))).order_by(self.table.c.id.asc())
        for row in conn.execute(query):
            entry = row_to_dict(row._mapping)
            for rev in entry["revisions"]:
                if rev.get("direction") == "upgrade" and rev.get("sha256"):
                    found[rev["revision"]] = {"sha256": rev["sha256"], "file": rev.get("file"), "run_id": entry["run_id"], "at": entry["finished_at"]}
                elif rev.get("direction") == "downgrade":
                    found.pop(rev["revision"], None)
        return found

    def copy_missing(self, source: Any, destination: Any) -> int:
        """Bring the destination's ledger up to the source's (by entry_id): history survives a restore.

        Rows the destination lacks are inserted; rows it has in an older state
        (a run finished or undone after the backup was taken) are updated.
        """
        if not self.exists(source):
            return 0
        self.ensure(destination)
        present = {row._mapping["entry_id"]: {k: v for k, v in row._mapping.items() if k != "id"} for row in destination.execute(sa.select(self.table))}
        rows = [{k: v for k, v in row._mapping.items() if k != "id"} for row in source.execute(sa.select(self.table).order_by(self.table.c.id.asc()))]
        missing = [row for row in rows if row["entry_id"] not in present]
        if missing:
            destination.execute(self.table.insert(), missing)
        stale = [row for row in rows if row["entry_id"] in present and present[row["entry_id"]] != row]
        for row in stale:
            destination.execute(self.table.update().where(self.table.c.entry_id == row["entry_id"]).values(**row))
        return len(missing) + len(stale)


def undo_description(record: RunRecord, what: str) -> str:
    """How a run was undone, for the undone row's message: 'downgrade by run <id> of <operator>'."""
    return "%s by %s run %s of %s" % (what, record.action, record.run_id, record.operator)


def row_to_dict(mapping: Any) -> dict[str, Any]:
    entry = dict(mapping)
    for key in ("started_at", "finished_at"):
        value = entry.get(key)
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            entry[key] = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for key in ("from_revision", "to_revision"):
        entry[key] = (entry.get(key) or "").split()
    try:
        entry["revisions"] = json.loads(entry.get("revisions") or "[]")
    except ValueError:
        entry["revisions"] = []
    entry.pop("id", None)
    return entry


def revision_records(steps: Iterable[Any], review: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """What the ledger keeps of each applied step, with its file's checksum and its review."""
    reviewed = {str(item.get("revision")): item for item in review or [] if isinstance(item, dict)}
    records = []
    for step in steps:
        entry = step.as_dict()
        try:
            entry["sha256"] = file_sha256(step.path)
        except OSError:
            entry["sha256"] = None
        entry.pop("down_revision", None)
        if entry["revision"] in reviewed:
            entry["review"] = {k: v for k, v in reviewed[entry["revision"]].items() if k != "revision"}
        records.append(entry)
    return records

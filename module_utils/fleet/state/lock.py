# -*- coding: utf-8 -*-
# One run at a time per database. PostgreSQL: a session-level advisory lock
# held by a dedicated connection for the whole module run, so it dies with the
# process or the connection (kill -9, a lost control node) and can never go
# stale. SQLite: an OS file lock (flock) on a sidecar file, which also dies with
# its process. A waiting run polls up to `wait` seconds, then fails naming the
# holder: its session (pid, application name with the run id, since when) and
# the ledger's 'running' row (operator, host).
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import struct
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from ansible.module_utils.fleet.core.common import DbTarget, FleetError, check_seconds
from ansible.module_utils.fleet.core.db import connect, create_engine, sqlite_path_problem
from ansible.module_utils.fleet.core.options import Connection, LedgerOptions
from ansible.module_utils.fleet.state.ledger import SUCCEEDED, Ledger, RunRecord

try:
    import sqlalchemy as sa
except ImportError:  # pragma: no cover - reported by the module
    pass

LOCK_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "lock_wait": dict(type="float", default=60),
}
POLL_SECONDS = 0.5
APP_PREFIX = "alembic-fleet"


def lock_key(target: DbTarget) -> int:
    """A stable signed 64-bit advisory-lock key for this database."""
    digest = hashlib.sha256(("alembic-fleet:%s" % target.dbname).encode()).digest()
    return int(struct.unpack(">q", digest[:8])[0])


def _key_parts(key: int) -> tuple[int, int]:
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF  # pg_locks.classid, objid


def application_name(run_id: str) -> str:
    return ("%s:%s" % (APP_PREFIX, run_id))[:63]


# What pg_stat_activity shows of another role's session to a user without pg_read_all_stats.
HIDDEN_QUERY = "<insufficient privilege>"
HIDDEN_CLIENT = "an address hidden from this user (grant it pg_read_all_stats to see other roles' sessions)"


def pg_holder(conn: Any, target: DbTarget) -> dict[str, Any] | None:
    """Who holds this database's run lock, from pg_locks and pg_stat_activity."""
    classid, objid = _key_parts(lock_key(target))
    row = conn.execute(
        sa.text(
            "select a.pid, a.application_name, a.usename, a.client_addr::text, a.backend_start, a.state, a.query "
            "from pg_locks l join pg_stat_activity a on a.pid = l.pid "
            "where l.locktype = 'advisory' and l.granted and l.classid = :classid and l.objid = :objid "
            "and l.objsubid = 1 and l.database = (select oid from pg_database where datname = current_database())"
        ),
        {"classid": classid, "objid": objid},
    ).first()
    if row is None:
        return None
    since = row[4]
    hidden = row[6] == HIDDEN_QUERY  # another role's session: PostgreSQL leaves its address and times NULL
    return {
        "pid": row[0],
        "application_name": row[1],
        "run_id": row[1][len(APP_PREFIX) + 1 :] if (row[1] or "").startswith(APP_PREFIX + ":") else None,
        "user": row[2],
        "client": HIDDEN_CLIENT if hidden else (row[3] or "local socket"),
        "since": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if since else None,
        "state": row[5],
    }


def sqlite_holder_path(target: DbTarget) -> str:
    """Who holds the lock, for messages only; the lock itself is on the database file."""
    return target.dbname + ".fleet-lock"


def sqlite_holder(target: DbTarget) -> dict[str, Any] | None:
    """The holder of a SQLite database's run lock, if it is really held."""
    if not os.path.exists(target.dbname):
        return None
    with open(target.dbname, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                with open(sqlite_holder_path(target)) as info:
                    return dict(json.loads(info.read() or "{}"))
            except (OSError, ValueError):
                return {"pid": None}
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def describe_holder(holder: dict[str, Any], running: dict[str, Any] | None) -> str:
    parts = ["pid %s" % holder.get("pid")]
    if holder.get("run_id"):
        parts.append("run %s" % holder["run_id"])
    if holder.get("user"):
        parts.append("user %s" % holder["user"])
    if holder.get("client"):
        parts.append("from %s" % holder["client"])
    if holder.get("since"):
        parts.append("since %s" % holder["since"])
    if running:
        parts.append(
            "ledger: %s by %s on host %s, started %s" % (running.get("action"), running.get("operator"), running.get("host") or "?", running.get("started_at"))
        )
    return ", ".join(parts)


class RunLock:
    """Held for the life of a changing module run."""

    def __init__(self, target: DbTarget, run_id: str, operator: str, wait: float) -> None:
        self.target = target
        self.run_id = run_id
        self.operator = operator
        check_seconds("lock_wait", wait, "give 0 or more seconds to wait for another run's lock (0: do not wait)")
        self.wait = float(wait)
        self.waited = 0.0
        self._conn: Any = None
        self._engine: Any = None
        self._file: Any = None

    @contextlib.contextmanager
    def held(self, running_row: Any = None) -> Iterator[RunLock]:
        started = time.monotonic()
        if self.target.dialect == "postgresql":
            self._acquire_pg(running_row)
        else:
            self._acquire_sqlite()
        self.waited = round(time.monotonic() - started, 3)
        try:
            yield self
        finally:
            self.release()

    def _acquire_pg(self, running_row: Any) -> None:
        self._engine = create_engine(self.target).execution_options(isolation_level="AUTOCOMMIT")
        self._conn = connect(self._engine, self.target)
        self._conn.execute(sa.text("select set_config('application_name', :name, false)"), {"name": application_name(self.run_id)})
        key = lock_key(self.target)
        deadline = time.monotonic() + self.wait
        while True:
            if self._conn.execute(sa.text("select pg_try_advisory_lock(:key)"), {"key": key}).scalar():
                return
            if time.monotonic() >= deadline:
                holder = pg_holder(self._conn, self.target) or {"pid": "?"}
                running = running_row(self._conn) if running_row else None
                self.release()
                raise FleetError(
                    "database %s is locked by another alembic-fleet run (%s) and stayed locked for %ss: "
                    "wait for it to finish, or if its holder is dead release it with release_lock.yml."
                    % (self.target.label, describe_holder(holder, running), int(self.wait))
                )
            time.sleep(POLL_SECONDS)

    def _acquire_sqlite(self) -> None:
        # flock() on the database file itself: independent of SQLite's own fcntl() locks, gone with the process,
        # and nothing left beside the database afterwards.
        try:
            self._file = open(self.target.dbname, "rb")
        except OSError as exc:
            raise FleetError(sqlite_path_problem(self.target.dbname) or "cannot open SQLite database %s: %s" % (self.target.dbname, exc.strerror)) from None
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = sqlite_holder(self.target) or {"pid": "?"}
                    self.release()
                    raise FleetError(
                        "database %s is locked by another alembic-fleet run (%s) and stayed locked for %ss: "
                        "wait for it to finish (the lock dies with its process)." % (self.target.label, describe_holder(holder, None), int(self.wait))
                    ) from None
                time.sleep(POLL_SECONDS)
        with contextlib.suppress(OSError), open(sqlite_holder_path(self.target), "w") as info:
            json.dump(
                {"pid": os.getpid(), "run_id": self.run_id, "operator": self.operator, "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
                info,
            )

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(sa.text("select pg_advisory_unlock(:key)"), {"key": lock_key(self.target)})
            except Exception:  # the session may already be gone; the lock went with it
                pass
            self._conn.close()
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self._file is not None:
            with contextlib.suppress(OSError):
                os.unlink(sqlite_holder_path(self.target))
            with contextlib.suppress(OSError):
                fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def release_pg_holder(target: DbTarget) -> dict[str, Any] | None:
    """Break-glass: end the session that holds this database's run lock."""
    engine = create_engine(target).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            holder = pg_holder(conn, target)
            if holder is None:
                return None
            if not (holder.get("application_name") or "").startswith(APP_PREFIX):
                raise FleetError(
                    "the run lock of %s is held by pid %s (%s), which is not an alembic-fleet session: investigate it before ending it by hand."
                    % (target.label, holder["pid"], holder.get("application_name") or "no application name")
                )
            ended = conn.execute(sa.text("select pg_terminate_backend(:pid)"), {"pid": holder["pid"]}).scalar()
            if not ended:
                raise FleetError(
                    "could not end pid %s holding the run lock of %s: ask a superuser to run pg_terminate_backend(%s)."
                    % (holder["pid"], target.label, holder["pid"])
                )
            return holder
    finally:
        engine.dispose()


def unlock(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    """Break-glass release of a database's run lock, recorded in the ledger."""
    target = Connection.from_params(params).target
    ledger = Ledger(LedgerOptions.from_params(params).table)  # a bad name fails before anything is ended
    result.update(database=target.label, holder=None)
    if target.dialect == "sqlite":
        holder = sqlite_holder(target)
        result["holder"] = holder
        if holder:
            raise FleetError(
                "the run lock of %s is held by live process %s on this machine (%s): stop that run; the lock dies with its process."
                % (target.label, holder.get("pid"), describe_holder(holder, None))
            )
        return
    autocommit = create_engine(target).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with autocommit.connect() as conn:
            holder = pg_holder(conn, target)
    finally:
        autocommit.dispose()
    result["holder"] = holder
    if holder is None or check_mode:
        result["changed"] = holder is not None
        return
    ended = release_pg_holder(target)
    record = RunRecord.from_params(params, default_action="unlock")
    engine = create_engine(target)
    try:
        with engine.begin() as conn:
            entry_id = ledger.start(conn, record, [])
            ledger.finish(conn, entry_id, SUCCEEDED, [], [], "break-glass: ended %s" % describe_holder(ended or holder, None))
    finally:
        engine.dispose()
    result.update(changed=True, ledger_entry_id=entry_id)

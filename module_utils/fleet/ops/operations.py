# -*- coding: utf-8 -*-
# The operations behind the Alembic modules. Each takes the module's params and
# check/diff flags (the Operation signature run_module() calls), reads the params
# ONCE at its top into frozen options (core.options; MigrateOptions, VerifyOptions
# here) and passes named, typed values inward; fills one result dict
# (before/after, changed = before != after) and raises FleetError for expected
# failures. The modules only wire AnsibleModule to these functions.
from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

try:
    import sqlalchemy as sa
except ImportError:  # pragma: no cover - reported by the module (IMPORT_ERROR)
    pass

from ansible.module_utils.fleet.alembic.graph import closure
from ansible.module_utils.fleet.alembic.run import (
    ALEMBIC_IMPORT_ERROR,
    AlembicRun,
    Step,
    describe_blocker,
    elapsed,
    explain_migration_failure,
    load_project,
)
from ansible.module_utils.fleet.alembic.source import uses_autocommit_block
from ansible.module_utils.fleet.backup.backup import BACKUP_OPTIONS as BACKUP_OPTIONS  # alembic_upgrade's `backup` option
from ansible.module_utils.fleet.backup.backup import backup, check_backup_options
from ansible.module_utils.fleet.backup.catalog import is_side_name, side_prefix
from ansible.module_utils.fleet.core.common import (
    CONNECTION_ARGUMENT_SPEC,
    PROJECT_ARGUMENT_SPEC,
    FleetError,
    argument_spec,
    scrub,
)
from ansible.module_utils.fleet.core.db import DatabaseMissing
from ansible.module_utils.fleet.core.forked import run_forked
from ansible.module_utils.fleet.core.module import Operation
from ansible.module_utils.fleet.core.options import DEFAULT_TARGET, AlembicOptions, Connection, LockOptions, Timeouts, given
from ansible.module_utils.fleet.core.progress import PROGRESS_ENV
from ansible.module_utils.fleet.ops.drift import (
    check_allowlist,
    ledger_highlights,
    mark_dead_drill,
    newest_backup_status,
    review_pending,
    review_policy,
    schema_drift,
)
from ansible.module_utils.fleet.review.cache import ReviewCache
from ansible.module_utils.fleet.review.downgrade import LOSSY, classify_downgrade
from ansible.module_utils.fleet.schema.scratch import expected_schema_differences, scratch_prefix
from ansible.module_utils.fleet.state.ledger import (
    FAILED,
    INTERRUPTED,
    LEDGER_ARGUMENT_SPEC,
    RUNNING,
    SUCCEEDED,
    Ledger,
    RunRecord,
    file_sha256,
    revision_records,
    undo_description,
)
from ansible.module_utils.fleet.state.lock import RunLock, pg_holder, sqlite_holder

CREATE_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "create_database": dict(type="bool", default=False),
    "maintenance_db": dict(type="str", default="postgres"),
}


IMPORT_ERROR = ALEMBIC_IMPORT_ERROR


def alembic_argument_spec(*extra_specs: dict[str, dict[str, Any]], **options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return argument_spec(CONNECTION_ARGUMENT_SPEC, PROJECT_ARGUMENT_SPEC, *extra_specs, **options)


BLOCKERS_SQL = (
    "select pid, application_name, state, extract(epoch from now() - coalesce(xact_start, query_start))::int, left(query, 120) "
    "from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() "
    "and application_name not like :ours and backend_type = 'client backend' "
    "and (application_name = 'pg_dump' or (xact_start is not null and now() - xact_start > make_interval(secs => :seconds))) "
    "order by xact_start nulls last"
)


def open_alembic(options: AlembicOptions) -> AlembicRun:
    """The AlembicRun of the options' project on the options' database (nothing is connected yet)."""
    project = options.project
    return AlembicRun(load_project(project.config, project.project_dir, project.ini_section), options.connection.target)


def _blockers(conn: Any, long_transaction_seconds: float) -> list[dict[str, Any]]:
    """Sessions a migration would queue behind: transactions older than long_transaction_seconds and running pg_dumps."""
    rows = conn.execute(sa.text(BLOCKERS_SQL), {"ours": "alembic-fleet%", "seconds": float(long_transaction_seconds)}).fetchall()
    return [{"pid": row[0], "application_name": row[1], "state": row[2], "seconds": row[3], "query": " ".join(str(row[4]).split())} for row in rows]


def _sees_all_sessions(conn: Any) -> bool:
    return bool(
        conn.execute(
            sa.text("select pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') or (select rolsuper from pg_roles where rolname = current_user)")
        ).scalar()
    )


def _leftovers(conn: Any, dbname: str) -> list[dict[str, Any]]:
    """The side databases of dbname on its server (a restore's scratch copy or replaced original, a drill's copy, a
    schema check's scratch database), each with its number of sessions: none means the run that made it is gone."""
    prefixes = [(side_prefix(dbname, kind), kind) for kind in ("restore", "replaced", "drill")] + [(scratch_prefix(dbname), "scratch")]
    rows = conn.execute(
        sa.text("SELECT d.datname, (SELECT count(*) FROM pg_stat_activity a WHERE a.datid = d.oid) FROM pg_database d ORDER BY d.datname")
    ).all()
    found = []
    for name, sessions in rows:
        for prefix, kind in prefixes:
            if is_side_name(name, prefix):
                found.append({"name": name, "kind": kind, "sessions": int(sessions)})
    return found


def _wait_for_quiet(run: AlembicRun, timeouts: Timeouts, pending: bool, blockers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Report blockers (as first read); with wait_for_quiet and something pending, wait for them or stop."""
    wait = timeouts.wait_for_quiet
    deadline = time.monotonic() + wait
    while blockers and pending and wait > 0:
        if time.monotonic() >= deadline:
            described = "; ".join(
                "pid %s (%s, %s) for %s s: %s" % (b["pid"], b["application_name"] or "no name", b["state"], b["seconds"], b["query"][:80]) for b in blockers
            )
            raise FleetError(
                "%s is busy and a migration would queue behind it (waited %ss): %s; let it finish or end it, then run again."
                % (run.target.label, int(wait), described)
            )
        time.sleep(2)
        with run.transaction() as conn:
            blockers = _blockers(conn, timeouts.long_transaction_seconds)
    return blockers


def _predict_heads(before: list[str], steps: list[Step]) -> list[str]:
    """The heads after the steps, without running them: what check mode reports as `after`."""
    heads = list(before)
    for step in steps:
        if step.direction == "upgrade":
            heads = [h for h in heads if h not in step.down_revision]
            heads.append(step.revision)
        else:
            heads = [h for h in heads if h != step.revision]
            heads.extend(d for d in step.down_revision if d not in heads)
    return heads


def _revision_text(heads: list[str]) -> str:
    return "revision: %s\n" % (", ".join(heads) if heads else "base (unversioned)")


# -- status -----------------------------------------------------------------
def status(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    _status(params, result, {})


def _status(params: dict[str, Any], result: dict[str, Any], scripts: dict[tuple[str, str, str], Any]) -> None:
    """The status of one database, read without changing it (alembic_status; status_many per entry).

    params: the module's (url, config, target, backup_dir, create_database, drift, review, wait_for_quiet, ...), read
    once here; scripts: loaded script directories shared between databases of one project. In order: checks the
    options (waits, URL, drift_allow, review policy), reads the newest backup's manifest (backup_dir), then on the
    database: the project's heads, whether it exists (a missing one is an error unless create_database), where it is,
    what is pending to the target (all heads when "head" is ambiguous), the ledger's last runs (a dead run's 'running'
    row shown as interrupted), the lock holder, blockers and leftover side databases (PostgreSQL), edited applied
    revision files, whether the post-upgrade backup is missing, and, when asked, schema drift and the review of the
    pending revisions. Fills result with all of it and returns nothing. Raises DatabaseMissing when the database does
    not exist (and create_database is off), FleetError when it is busy past wait_for_quiet or the project or target
    cannot be read."""
    started = time.monotonic()
    options = AlembicOptions.from_params(params)
    run = open_alembic(options)
    run.share_scripts(scripts)
    result["database"] = run.target.label
    allowlist = check_allowlist(params.get("drift_allow"))
    policy = review_policy(params) if params.get("review") else None
    backup_dir: str | None = given(params, "backup_dir", None)
    drift = bool(params.get("drift"))
    if backup_dir:
        try:
            result["backup"] = newest_backup_status(backup_dir)
        except FleetError as exc:
            result.update(backup=None, backup_note=str(exc))
    with run.session():
        heads = run.script_heads()
        result.update(heads=heads, multiple_heads=len(heads) > 1, revisions=len(run.revision_ids()))
        probe = run.probe()
        if not probe.exists and not options.create_database:
            raise DatabaseMissing(run.target)
        result.update(
            exists=probe.exists,
            versioned=probe.versioned,
            current=list(probe.current),
            server_version=probe.server_version,
        )
        spec_text, result["target_ambiguous"] = _status_target(heads, options.target)
        spec = run.parse(spec_text, "upgrade")
        steps = run.plan("upgrade", spec, list(probe.current))
        result.update(
            target=spec.given,
            pending=[step.as_dict() for step in steps],
            pending_count=len(steps),
            at_target=not steps,
        )
        ledger = Ledger(options.ledger.table)
        result.update(last_runs=[], last_change=None, last_success=None, last_drill=None, blockers=[], lock_holder=None, changed_files=[])
        if probe.exists:
            postgresql = run.target.dialect == "postgresql"
            blockers: list[dict[str, Any]] = []
            with run.transaction() as conn:  # one connection for all of these reads
                result["last_runs"] = ledger.read(conn, options.ledger.limit)
                result["last_change"] = ledger.last_change(conn)
                result["last_success"], result["last_drill"] = ledger_highlights(conn, ledger, result["last_runs"])
                if postgresql:
                    result["lock_holder"] = pg_holder(conn, run.target)
                    result["blockers_visible"] = _sees_all_sessions(conn)
                    blockers = _blockers(conn, options.timeouts.long_transaction_seconds)
                    result["leftovers"] = _leftovers(conn, run.target.dbname)
            if not postgresql:
                result["lock_holder"] = sqlite_holder(run.target)
            if result["lock_holder"] is None:  # no live holder: a 'running' row is a dead run
                _mark_interrupted([*result["last_runs"], result["last_change"]])
                mark_dead_drill(result["last_drill"])
            # Flyway's validate before anything runs: an applied revision edited since is caught here, not by the
            # verification after an upgrade (which would then undo that upgrade).
            result["changed_files"] = _changed_revision_files(run, ledger, list(probe.current)) if steps and probe.current else []
            if postgresql:
                if not result["blockers_visible"]:
                    result["blockers_note"] = (
                        "the user cannot see other users' sessions: grant it pg_read_all_stats so that long transactions and pg_dumps of other users are found"
                    )
                result["blockers"] = _wait_for_quiet(run, options.timeouts, bool(steps), blockers)
        result["post_backup_missing"] = _post_backup_missing(result.get("last_change"), list(probe.current), result.get("backup"), backup_dir)
        # Opt-in parts of a scheduled status run: nothing of this runs unless asked.
        if drift:
            result["drift"], result["model_drift"] = schema_drift(run, probe, heads, ledger, allowlist, options.connection.maintenance_db)
        if policy is not None:
            # A database that was empty before the run (missing, or no revision recorded) cannot block anyone.
            cache = ReviewCache(params.get("review_cache"))  # shared in memory by the databases of this call
            result["review"] = review_pending(run, steps, policy, probe.server_version, fresh=not probe.exists or not probe.current, cache=cache)
    result["duration"] = elapsed(started)


def _status_target(heads: list[str], target: str | None) -> tuple[str, bool]:
    """The target status reads pending revisions against, and whether the one given is ambiguous.

    A project with several heads (labelled branches) is migrated with an explicit target (heads, <branch>@head,
    a revision); "head" is then ambiguous, which the preflight refuses. Status still reads them all."""
    spec_text = target or DEFAULT_TARGET
    ambiguous = len(heads) > 1 and spec_text == DEFAULT_TARGET
    return ("heads" if ambiguous else spec_text), ambiguous


def _mark_interrupted(entries: list[dict[str, Any] | None]) -> None:
    """Ledger rows read while no run holds the lock: one still 'running' is a dead run, shown as interrupted."""
    for entry in entries:
        if entry and entry["outcome"] == RUNNING:
            entry["outcome"] = INTERRUPTED


def _post_backup_missing(last_change: dict[str, Any] | None, current: list[str], backup: dict[str, Any] | None, backup_dir: str | None) -> bool:
    """The last change was a successful upgrade to where the database is, and no backup of that revision was taken
    after it (the post-upgrade backup failed, or its run was killed): the next run takes it. Needs `backup_dir`."""
    if not backup_dir or not last_change or not current:
        return False
    if last_change.get("action") not in ("migrate", "upgrade") or last_change.get("outcome") != SUCCEEDED:
        return False
    if sorted(last_change.get("to_revision") or []) != sorted(current):
        return False
    if backup is None:
        return True
    # Both times are "%Y-%m-%dT%H:%M:%SZ" in UTC, so they compare as text.
    return bool(backup.get("revision") != "+".join(current) or (backup.get("created_at") or "") < (last_change.get("finished_at") or ""))


# An entry of a module's `databases` list (a host's databases in one module start: imports and Alembic are paid
# once): the database and its project; alembic_status and alembic_upgrade each add their own options.
ENTRY_OPTIONS: dict[str, dict[str, Any]] = {
    "name": dict(type="str", required=True),
    "config": dict(type="path", required=True),
    "url": dict(type="str", required=True),
    "password": dict(type="str", no_log=True),
    "project_dir": dict(type="path"),
    "target": dict(type="str"),
    "create_database": dict(type="bool"),
}
DATABASE_ENTRY_OPTIONS: dict[str, dict[str, Any]] = {
    **ENTRY_OPTIONS,
    "backup_dir": dict(type="path"),
    "drift_allow": dict(type="list", elements="str"),
}


def _entries(params: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Each entry of `databases` with its own params: the call's shared options, then the entry's own set ones."""
    shared = {key: value for key, value in params.items() if key not in ("databases", "parallel")}
    for entry in params["databases"]:
        own = dict(shared)
        own.update({key: value for key, value in entry.items() if value is not None and key != "name"})
        yield entry, own


def status_many(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    """status() of each entry of `databases`; one that cannot be read is reported in its entry, not raised."""
    started = time.monotonic()
    statuses = []
    scripts: dict[tuple[str, str, str], Any] = {}  # databases of one project share its loaded scripts
    for entry, own in _entries(params):
        one: dict[str, Any] = {"name": entry["name"], "changed": False}
        try:
            _status(own, one, scripts)
            one["failed"] = False
        except FleetError as exc:
            one.update(failed=True, msg=scrub(str(exc), entry.get("password")))
        statuses.append(one)
    result.update(databases=statuses, duration=elapsed(started))


# -- upgrade / downgrade ------------------------------------------------------
@dataclass(frozen=True)
class MigrateOptions:
    """alembic_upgrade's and alembic_downgrade's options, read once from the module's params."""

    alembic: AlembicOptions
    backup: dict[str, Any] | None = None  # db_backup's options for the backup first (None: none); checked when read
    verify: dict[str, Any] | None = None  # alembic_upgrade's `verify` (None: no verification after the upgrade)
    refuse: frozenset[str] = frozenset()  # downgrade: the reversibility kinds that refuse it
    floor: str | None = None  # downgrade: the revision(s) it may not undo
    undo_entry_id: str | None = None  # the ledger entry this run undoes

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> MigrateOptions:
        backup_options = params.get("backup")
        if backup_options is not None:
            check_backup_options(backup_options)  # a bad `backup` fails now, even when nothing is pending
        return cls(
            alembic=AlembicOptions.from_params(params),
            backup=backup_options,
            verify=params.get("verify"),
            refuse=frozenset(given(params, "refuse", ())),
            floor=params.get("floor"),
            undo_entry_id=given(params, "undo_entry_id", None),
        )


def make_migrate(direction: str) -> Operation:
    def migrate(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
        _migrate(direction, params, check_mode, want_diff, result)

    return migrate


# -- several databases in one module call ---------------------------------------
MIGRATE_ENTRY_OPTIONS: dict[str, dict[str, Any]] = {
    **ENTRY_OPTIONS,
    "backup": dict(type="dict", options=BACKUP_OPTIONS),
    "record": dict(type="dict", options=LEDGER_ARGUMENT_SPEC["record"]["options"]),
}


def make_migrate_many(direction: str) -> Operation:
    def migrate_many(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
        _migrate_many(direction, params, check_mode, want_diff, result)

    return migrate_many


def _migrate_many(direction: str, params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    """_migrate of each entry of `databases` (its own options over the shared ones), up to `parallel` at a time.

    Every entry's options are read first, so a bad one is refused before any database is reached. Each database
    then has its own lock, backup, transaction(s), verification and ledger row, exactly as one call of its own; with
    parallel > 1 each runs in a forked process of its own (Alembic's `op` and `context` are process-wide, so threads
    cannot share them), after this process has paid the imports once. A database that fails is reported in its
    entry (name, failed, msg and what it did) and does not stop the others; the call then fails naming them."""
    started = time.monotonic()
    jobs = []
    progress = os.environ.get(PROGRESS_ENV) or ""
    for index, (entry, own) in enumerate(_entries(params)):
        MigrateOptions.from_params(own)
        jobs.append(_Job(direction, str(entry["name"]), own, check_mode, want_diff, "%s.%d" % (progress, index) if progress else ""))
    workers = max(1, min(int(params.get("parallel") or 1), len(jobs)))
    if workers == 1:
        outcomes = [_migrate_one(job) for job in jobs]
    else:
        outcomes = run_forked(_migrate_one, jobs, workers, _lost)
    result.update(databases=outcomes, changed=any(outcome["changed"] for outcome in outcomes), duration=elapsed(started))
    diffs = [outcome.pop("diff") for outcome in outcomes if isinstance(outcome.get("diff"), dict)]
    if diffs:  # Ansible shows a list of diffs one after the other, each under its database's header
        result["diff"] = diffs
    failed = [outcome["name"] for outcome in outcomes if outcome["failed"]]
    if failed:
        raise FleetError(
            "the %s failed on %d of %d databases (%s): each entry of `databases` says why and where its database is; the others are done."
            % (direction, len(failed), len(outcomes), ", ".join(failed))
        )


@dataclass(frozen=True)
class _Job:
    """One database of _migrate_many."""

    direction: str
    name: str
    params: dict[str, Any]
    check_mode: bool
    want_diff: bool
    progress: str  # its own progress file (the action plugin shows one line per database), "" for none


def _migrate_one(job: _Job) -> dict[str, Any]:
    """One database of _migrate_many: its result, never an exception (a failure is in the entry)."""
    one: dict[str, Any] = {"name": job.name, "changed": False}
    before = os.environ.get(PROGRESS_ENV)
    if job.progress:
        os.environ[PROGRESS_ENV] = job.progress
    try:
        _migrate(job.direction, job.params, job.check_mode, job.want_diff, one)
        one["failed"] = False
    except FleetError as exc:
        one.update(failed=True, msg=scrub(str(exc), job.params.get("password")))
    except Exception as exc:  # a bug: the other databases go on, and this one says what happened
        one.update(failed=True, msg=scrub("unexpected %s: %s" % (type(exc).__name__, exc), job.params.get("password")))
    finally:
        if job.progress:
            with contextlib.suppress(OSError):
                os.unlink(job.progress)  # done: no more lines for this database
            if before is None:
                os.environ.pop(PROGRESS_ENV, None)
            else:
                os.environ[PROGRESS_ENV] = before
    return one


def _lost(job: _Job, how: str) -> dict[str, Any]:
    """The entry of a database whose process ended without a result: nothing is known of where it is."""
    return {
        "name": job.name,
        "changed": False,
        "failed": True,
        "msg": "the %s of %s ended without a result (its process %s): read where the database is (alembic_status) before anything else."
        % (job.direction, job.name, how),
    }


def _review_downgrade(refuse: frozenset[str], floor: str | None, steps: list[Step], result: dict[str, Any]) -> list[dict[str, Any]]:
    """Classify each revision to undo; refuse before anything runs when policy says so (a kind in refuse, or a
    revision at or below the floor: one revision id or prefix, or several comma-separated)."""
    planned = []
    refused: list[str] = []
    for step in steps:
        entry = step.as_dict()
        verdict = classify_downgrade(step.path)
        entry.update(reversibility=verdict.kind, reasons=list(verdict.reasons))
        planned.append(entry)
        if verdict.kind in refuse:
            refused.append("%s (%s: %s)" % (step.revision, verdict.kind, "; ".join(verdict.reasons)))
    result["pending"] = planned
    floors = [part.strip() for part in str(floor or "").split(",") if part.strip()]  # several heads: "a1b2,c3d4"
    below = [floor for floor in floors if any(step.revision == floor or step.revision.startswith(floor) for step in steps)]
    if below:
        raise FleetError(
            "downgrading to '%s' would undo revision %s, below the allowed floor: undo only the last run, or set the override to go further."
            % (result.get("target"), ", ".join(below))
        )
    if refused:
        raise FleetError(
            "refusing to downgrade: %s; restore the run's backup instead (fleet_rollback_strategy: restore), or allow it explicitly." % ", ".join(refused)
        )
    return planned


TIMEOUT_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "lock_timeout": dict(type="float"),
    "statement_timeout": dict(type="float"),
    "lock_retries": dict(type="int", default=3),
    "lock_retry_delay": dict(type="float", default=1.0),
    "transaction": dict(type="str", choices=["plan", "revision"], default="plan"),
}


@contextlib.contextmanager
def _changing(run: AlembicRun, lock_options: LockOptions, ledger: Ledger, record: RunRecord, result: dict[str, Any]) -> Iterator[None]:
    """Hold the database's run lock while a change is planned and made."""
    lock = RunLock(run.target, record.run_id, record.operator, lock_options.wait)

    def running_row(conn: Any) -> Any:
        return ledger.running(conn)

    with lock.held(running_row):
        result["lock_waited"] = lock.waited
        yield


def _migrate(direction: str, params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    """An upgrade or downgrade (direction) of one database: plan, optional backup first, apply under the run lock.

    params: the module's (url, config, target, backup, verify, lock and timeout options, record, ...), read once here
    into MigrateOptions (a bad `backup`, wait or timeout is refused before anything is reached). In order: parses the
    target, refuses a missing database unless create_database, takes the run lock (not in check mode, nor for a
    database still to be created, which takes it once created), then _plan_and_apply; after a real upgrade, the
    verification asked for (a failed one is recorded in the ledger). Fills result (before/after, applied, pending in
    check mode, diff when want_diff, ledger_entry_id, verify) and returns nothing. Raises FleetError for a refused plan
    or a failed migration (its message says where the database is now) and when the verification after an upgrade
    fails or cannot run."""
    started = time.monotonic()
    options = MigrateOptions.from_params(params)
    run = open_alembic(options.alembic)
    run.session_settings = options.alembic.timeouts.session_settings()
    ledger = Ledger(options.alembic.ledger.table)
    record = RunRecord.from_params(params, default_action=direction)
    result.update(database=run.target.label, direction=direction, before=[], after=[], applied=[])
    with run.session():
        spec = run.parse(options.alembic.target, direction)
        result["target"] = spec.given
        heads = run.script_heads()
        exists = run.exists()
        if not exists and not options.alembic.create_database:
            raise DatabaseMissing(run.target)
        if check_mode or not exists:
            _plan_and_apply(run, direction, spec, options, check_mode, want_diff, result, ledger, record)
        else:
            with _changing(run, options.alembic.lock, ledger, record, result):
                _plan_and_apply(run, direction, spec, options, check_mode, want_diff, result, ledger, record)
        result["log"] = run.log_lines()
    if direction == "upgrade" and options.verify is not None and not check_mode:
        try:
            _verify_after(options.alembic, options.verify, spec.given, heads, result)
        except FleetError as exc:
            if result.get("changed") and "problems" not in result.get("verify", {}):  # it could not run: nothing was judged
                result.pop("verify_failed", None)
                raise _unverified(result, "its verification could not run (%s)" % str(exc).rstrip(".")) from None
            _record_unverified(run, ledger, result, str(exc))
            raise
    result["duration"] = elapsed(started)


def _unverified(result: dict[str, Any], why: str) -> FleetError:
    """A change that committed and was recorded, and could not be checked: it is neither failed nor to be undone."""
    result["verify_error"] = True
    return FleetError(
        "the %s to %s is committed and recorded, but %s: nothing was undone; check it with alembic_verify (or status.yml) "
        "once the database is reachable." % (result.get("direction", "change"), ", ".join(result.get("after") or []) or "base", why)
    )


def _record_unverified(run: AlembicRun, ledger: Ledger, result: dict[str, Any], message: str) -> None:
    """The ledger never says `succeeded` for a run whose verification failed: the row says failed, where the
    database is and why (best effort: the server itself may be gone, and then the failure is in the result)."""
    entry_id = result.get("ledger_entry_id")
    if not entry_id or not result.get("changed"):
        return
    text = "%s; the revisions were applied (the database is at %s)" % (message.rstrip("."), ", ".join(result.get("after") or []) or "base")
    try:
        with run.session(), run.transaction() as conn:
            ledger.mark_unverified(conn, entry_id, scrub(text, run.target.password)[:2000])
    except Exception:
        result["ledger_note"] = "the failed verification could not be recorded in the ledger: the database was unreachable"


def _backup_first(
    backup_options: dict[str, Any], connection: Connection, before: list[str], check_mode: bool, record: RunRecord, result: dict[str, Any]
) -> None:
    """alembic_upgrade's `backup`: db_backup's backup of the database as it is, before anything runs."""
    options = dict(backup_options)
    options.update(connection.as_params(), revision="+".join(before))
    taken = _sub_step("backup", backup, options, check_mode, result)
    if not check_mode:
        record.backup_path = taken["path"]
        record.backup_sha256 = taken["manifest"]["sha256"]


def _verify_after(options: AlembicOptions, verify_options: dict[str, Any], target: str, run_heads: list[str], result: dict[str, Any]) -> None:
    """alembic_upgrade's `verify`: alembic_verify at where the upgrade went, in this process."""
    after = result["after"]
    checks = VerifyOptions(
        alembic=options,
        # Exactly the revisions the run ended at: on a project with branches that is not always the project's head.
        revision=DEFAULT_TARGET if target == DEFAULT_TARGET else (",".join(after) if after else "base"),
        # The project's heads were judged by the preflight: a project with several heads is migrated with an explicit
        # target (heads, <branch>@head, a revision), and its verification does not ask for one head.
        expected_heads=None if target == DEFAULT_TARGET else tuple(run_heads),
        check_files=True,
        compare_schema=verify_options.get("compare_schema", True),
    )
    _sub_step("verify", lambda _params, _check, _diff, sub: _verify(checks, sub), {}, False, result)


def _sub_step(name: str, operation: Operation, options: dict[str, Any], check_mode: bool, result: dict[str, Any]) -> dict[str, Any]:
    """Another module's operation, run in this process: its result goes under result[name]; a failure also sets `<name>_failed`."""
    sub: dict[str, Any] = {"changed": False}
    try:
        operation(options, check_mode, False, sub)
    except FleetError:
        result.update({name: sub, name + "_failed": True})
        raise
    result[name] = sub
    return sub


def _plan_and_apply(
    run: AlembicRun,
    direction: str,
    spec: Any,
    options: MigrateOptions,
    check_mode: bool,
    want_diff: bool,
    result: dict[str, Any],
    ledger: Ledger,
    record: RunRecord,
) -> None:
    """In order: plan the steps from where the database is, review a downgrade's (refusals before anything runs),
    render SQL for the diff, take the backup asked for (before an upgrade, or a lossy downgrade), then apply (or, in
    check mode, predict the heads). Creates a missing database (create_database) and takes the run lock in it.
    Fills result (before, after, pending in check mode, sql, diff) and returns nothing; raises FleetError as
    _review_downgrade, the backup and _apply do."""
    probe = run.probe()
    before = list(probe.current)
    result.update(before=before, after=before, exists=probe.exists)
    steps = run.plan(direction, spec, before)
    planned = _review_downgrade(options.refuse, options.floor, steps, result) if direction == "downgrade" else [step.as_dict() for step in steps]
    sql: str | None = None
    notes: list[str] = []
    if want_diff and steps:
        # Per revision: one that cannot render offline is named in the SQL and in sql_note; the rest is shown.
        sql, notes = run.render_plan_sql(steps, before)
        result["sql"] = sql
        if notes:
            result["sql_note"] = " ".join(notes)
    if not steps:
        result.pop("pending", None)
        return
    predicted = _predict_heads(before, steps)
    # Before an upgrade (when asked), and before a downgrade that throws data away: a lossy downgrade is the one
    # change whose loss no later step can give back.
    lossy = direction == "downgrade" and any(entry.get("reversibility") == LOSSY for entry in planned)
    if options.backup is not None and probe.exists and (direction == "upgrade" or lossy):
        _backup_first(options.backup, options.alembic.connection, before, check_mode, record, result)
    if check_mode:
        result.update(changed=True, pending=planned, after=predicted)
    else:
        result.pop("pending", None)
        if not probe.exists:
            run.ensure_database(True, options.alembic.connection.maintenance_db)
            result["database_created"] = True
            with _changing(run, options.alembic.lock, ledger, record, result):
                _apply(run, direction, spec, options, result, ledger, record, before, steps, planned, predicted)
        else:
            _apply(run, direction, spec, options, result, ledger, record, before, steps, planned, predicted)
    if want_diff:
        diff: dict[str, Any] = {
            "before": _revision_text(before),
            "after": _revision_text(result["after"]),
            "before_header": "%s (before)" % run.target.label,
            "after_header": "%s (after)" % run.target.label,
        }
        if sql:
            diff["prepared"] = sql
        elif notes:
            diff["prepared"] = "".join("-- %s\n" % note for note in notes)
        result["diff"] = diff


def _apply(
    run: AlembicRun,
    direction: str,
    spec: Any,
    options: MigrateOptions,
    result: dict[str, Any],
    ledger: Ledger,
    record: RunRecord,
    before: list[str],
    steps: list[Step],
    planned: list[dict[str, Any]],
    predicted: list[str],
) -> None:
    """Run the planned steps and record them: a ledger row started before, finished as succeeded in the
    migration's own transaction (and the undone run marked), or as failed with what committed. Raises FleetError that
    says where the database is, whether revisions before the failing one stayed, and whether a revision with an
    autocommit_block may have been left half done."""
    with run.transaction() as conn:
        entry_id = ledger.start(conn, record, before)
    result["ledger_entry_id"] = entry_id
    applied = revision_records(steps, record.review)
    undo = options.undo_entry_id
    outside = [step.revision for step in steps if uses_autocommit_block(step.path)]
    transactional = not outside
    per_revision = options.alembic.timeouts.per_revision and len(steps) > 1
    result["transactional"] = transactional and not per_revision

    def record_success(conn: Any) -> None:
        ledger.finish(conn, entry_id, SUCCEEDED, predicted, applied)
        if undo:
            ledger.mark_undone(conn, undo, entry_id, undo_description(record, direction))

    try:
        result["lock_retries"] = _with_lock_retries(
            run,
            options.alembic.lock,
            options.alembic.timeouts.lock_timeout,
            lambda: run.migrate(direction, spec, before_commit=record_success, transactional=transactional, per_revision=per_revision),
        )
    except Exception as exc:
        message = str(exc) if isinstance(exc, FleetError) else explain_migration_failure(exc, run.target, direction, run)
        now = _probe_after_failure(run, before)
        committed = _committed_steps(run, steps, now, direction)
        _record_failure(run, ledger, entry_id, before, now, revision_records(committed, record.review), message, result, planned)
        failing = _failing_step(run, steps, now, direction)
        if failing is not None and failing.revision in outside:
            result.update(partial=True, whole_revisions=False)
            outcome = " - %s ran statements outside the transaction (autocommit_block), so part of it may have stayed: restore the backup" % failing.revision
        elif (outside or per_revision) and now != before:
            # the revisions before the failing one were committed one by one; each of them whole unless autocommit_block
            result.update(partial=True, whole_revisions=not outside)
            outcome = " - the revisions before %s were committed and stayed" % (failing.revision if failing else "the failure")
        elif isinstance(exc, FleetError):
            raise
        else:
            outcome = " - the transaction was rolled back, nothing changed" if now == before else ""
        message = message.split("; the transaction was rolled back")[0]  # a lock give-up's "nothing changed" is untrue here
        raise FleetError("%s; the database is at %s (was %s)%s." % (message, ", ".join(now) or "base", ", ".join(before) or "base", outcome)) from None
    result.update(after=predicted, applied=planned, changed=True)  # committed: whatever fails now, this stays true
    try:
        result["after"] = list(run.probe().current)
    except Exception as exc:
        raise _unverified(result, "reading it back failed (%s)" % " ".join(str(exc).split())[:300]) from None


def _failing_step(run: AlembicRun, steps: list[Step], now: list[str], direction: str) -> Step | None:
    """The first planned step the database does not reflect: the one that failed."""
    applied = closure(run.script, now)
    for step in steps:
        if (step.revision in applied) != (direction == "upgrade"):
            return step
    return None


def _committed_steps(run: AlembicRun, steps: list[Step], now: list[str], direction: str) -> list[Step]:
    """The planned steps the database reflects after a failure (each committed in a transaction of its own)."""
    reached = closure(run.script, now)
    return [step for step in steps if (step.revision in reached) == (direction == "upgrade")]


def _probe_after_failure(run: AlembicRun, before: list[str]) -> list[str]:
    """Where the database is now; the server itself may be gone, and then where it was is all we know."""
    try:
        return list(run.probe().current)
    except Exception:
        return before


def _record_failure(
    run: AlembicRun,
    ledger: Ledger,
    entry_id: str,
    before: list[str],
    now: list[str],
    applied: list[dict[str, Any]],
    message: str,
    result: dict[str, Any],
    planned: list[dict[str, Any]],
) -> None:
    """Best effort: with the server gone the row stays 'running' (read as interrupted). applied: what committed."""
    try:
        with run.transaction() as conn:
            ledger.finish(conn, entry_id, FAILED, now, applied, message)
    except Exception:
        result["ledger_note"] = "the failure could not be recorded in the ledger: the database was unreachable"
    result.update(after=now, changed=now != before, failed_steps=planned, log=run.log_lines())


def _is_lock_timeout(exc: BaseException) -> bool:
    original = getattr(exc, "orig", None)
    return getattr(original, "pgcode", None) == "55P03" or "lock timeout" in str(original or exc)


def _with_lock_retries(run: AlembicRun, lock: LockOptions, lock_timeout: float | None, attempt: Callable[[], None]) -> int:
    """Retry a migration that gave up on a lock, with jittered backoff; say who held it."""
    retries = max(0, lock.retries)
    delay = max(0.0, lock.retry_delay)
    for number in range(retries + 1):
        try:
            attempt()
            return number
        except Exception as exc:
            if not _is_lock_timeout(exc):
                raise
            blocker = describe_blocker(run, exc)
            if number == retries:
                raise FleetError(
                    "gave up after %d attempt(s) with lock_timeout %ss: "
                    "%s; the transaction was rolled back and nothing changed - run again when it is done, or end it." % (retries + 1, lock_timeout, blocker)
                ) from None
            time.sleep(delay * (2**number) * random.uniform(0.5, 1.5))
    return retries


# -- stamp --------------------------------------------------------------------
def stamp(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    """alembic_stamp: record a revision in the version table without running migrations.

    params: url, config, target (a revision, heads or base), require_schema_match, record, ... Refuses a database at a
    revision the project lacks, and (with require_schema_match) one whose schema is not what the migrations build at the
    target. Records the stamp in the ledger under the run lock; fills result (before/after, diff). Raises FleetError."""
    started = time.monotonic()
    options = AlembicOptions.from_params(params)
    require_schema_match = bool(params.get("require_schema_match"))
    run = open_alembic(options)
    ledger = Ledger(options.ledger.table)
    result.update(database=run.target.label, before=[], after=[])
    with run.session():
        spec = run.parse(options.target, "stamp")
        result["target"] = spec.given
        probe = run.probe()
        if not probe.exists:
            raise DatabaseMissing(run.target)
        before = list(probe.current)
        unknown = sorted(set(before) - set(run.revision_ids()))
        if unknown:
            raise FleetError(
                "cannot stamp %s: it is at revision %s, which this project does not have; deploy the missing migration files, "
                "or check that url points at the right database; nothing was written." % (run.target.label, ", ".join(unknown))
            )
        if spec.ref == "base":
            wanted: list[str] = []
        elif spec.revisions:
            wanted = list(spec.revisions)
        else:
            try:
                wanted = [script.revision for script in run.script.get_revisions(spec.alembic)]
            except Exception as exc:
                raise FleetError("cannot stamp '%s': %s" % (spec.given, " ".join(str(exc).split()))) from None
        result.update(before=before, after=before)
        if sorted(wanted) == sorted(before):
            result["duration"] = elapsed(started)
            return
        if require_schema_match and wanted:
            # Baselining trusts nobody: the live schema must be what the migrations build at the target.
            differences = expected_schema_differences(run, wanted, [ledger.name], options.connection.maintenance_db)
            result["schema_differences"] = differences
            if differences:
                raise FleetError(
                    "refusing to stamp %s at %s: its schema differs from what the migrations build there in %d place(s): "
                    "%s; make them equal (or stamp the revision it really matches) first."
                    % (run.target.label, ", ".join(wanted), len(differences), "; ".join(differences))
                )
        if want_diff:
            sql, note = run.render_stamp_sql(spec, before)
            result["diff"] = {
                "before": _revision_text(before),
                "after": _revision_text(wanted),
                "prepared": sql if sql else "-- %s\n" % note,
            }
        if not check_mode:
            record = RunRecord.from_params(params, default_action="stamp")
            with _changing(run, options.lock, ledger, record, result):
                with run.transaction() as conn:
                    entry_id = ledger.start(conn, record, before)
                result["ledger_entry_id"] = entry_id
                try:
                    run.stamp(spec, before_commit=lambda conn: ledger.finish(conn, entry_id, SUCCEEDED, wanted, [], "stamped without running migrations"))
                except Exception as exc:
                    message = explain_migration_failure(exc, run.target, "stamp", run)
                    _record_failure(run, ledger, entry_id, before, _probe_after_failure(run, before), [], message, result, [])
                    raise FleetError("%s; nothing was stamped." % message) from None
                wanted = list(run.probe().current)
        result.update(changed=True, after=wanted, log=run.log_lines())
    result["duration"] = elapsed(started)


# -- verify -------------------------------------------------------------------
@dataclass(frozen=True)
class VerifyOptions:
    """alembic_verify's options, read once from the module's params (or given by alembic_upgrade's `verify`)."""

    alembic: AlembicOptions
    revision: str = DEFAULT_TARGET  # where the database should be: head, heads, base or revisions
    expected_heads: tuple[str, ...] | None = None  # the project's heads as they should be (None: one head, for "head")
    check_files: bool = True
    compare_schema: bool = True

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> VerifyOptions:
        expected = params.get("expected_heads")
        return cls(
            alembic=AlembicOptions.from_params(params),
            revision=given(params, "revision", DEFAULT_TARGET),
            expected_heads=tuple(expected) if expected else None,
            check_files=params.get("check_files", True),
            compare_schema=params.get("compare_schema", True),
        )


def verify(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    """alembic_verify: check a database is where it should be, without changing it (see _verify)."""
    _verify(VerifyOptions.from_params(params), result)


def _verify(options: VerifyOptions, result: dict[str, Any]) -> None:
    """Checks, in order: the project's heads (expected_heads, or one head when verifying at "head"), that the database
    exists, its revisions against the expected ones, applied revision files unchanged since (the ledger's checksums,
    check_files), and, when nothing failed so far, the live schema against the models or what the migrations build
    (compare_schema). Fills result (heads, current, expected, problems, schema_*, log) and returns nothing; raises
    DatabaseMissing, or FleetError listing every problem."""
    started = time.monotonic()
    run = open_alembic(options.alembic)
    result["database"] = run.target.label
    problems: list[str] = []
    with run.session():
        heads = run.script_heads()
        result["heads"] = heads
        if options.expected_heads:
            resolved = sorted(run.parse(head, "stamp").ref or "" for head in options.expected_heads)
            if sorted(heads) != resolved:
                problems.append("the project's heads are %s, expected %s" % (", ".join(heads), ", ".join(resolved)))
        elif len(heads) != 1 and options.revision == DEFAULT_TARGET:
            # Only "head" asks for one head; a database verified at base, heads or given revisions (a rollback on a
            # project with labelled branches) is checked by its revisions alone.
            problems.append(
                "the project has %d heads (%s): merge them (alembic merge heads) or list them in expected_heads" % (len(heads), ", ".join(heads) or "none")
            )
        probe = run.probe(compare=False)
        if not probe.exists:
            raise DatabaseMissing(run.target)
        current = list(probe.current)
        spec = run.parse(options.revision, "stamp")
        if spec.ref == "base":
            expected: list[str] = []
        elif spec.ref in ("head", "heads"):
            expected = heads
        elif spec.revisions:
            expected = list(spec.revisions)
        else:
            expected = [script.revision for script in run.script.get_revisions(spec.alembic)]
        result.update(current=current, expected=expected)
        if sorted(current) != sorted(expected):
            problems.append("the database is at %s, expected %s" % (", ".join(current) or "base", ", ".join(expected) or "base"))
        ledger = Ledger(options.alembic.ledger.table)
        if options.check_files:
            problems.extend(_changed_revision_files(run, ledger, current))
        result["schema_compared"] = False
        if options.compare_schema and not problems:
            _compare_schema(run, options.alembic.connection.maintenance_db, ledger, current, heads, problems, result)
        result["problems"] = problems
        result["log"] = run.log_lines()
    result["duration"] = elapsed(started)
    if problems:
        raise FleetError("verification of %s failed: %s." % (run.target.label, "; ".join(problems)))


def _changed_revision_files(run: AlembicRun, ledger: Ledger, current: list[str]) -> list[str]:
    """Flyway's validate: an applied revision whose file was edited afterwards."""
    with run.transaction() as conn:
        recorded = ledger.applied_checksums(conn)
    problems = []
    for script in run.lineage(current):
        record = recorded.get(script.revision)
        if record and record["sha256"] != file_sha256(script.path):
            problems.append(
                "revision %s (%s) was changed after it was applied (run %s, %s): "
                "restore the applied file from version control and put the change in a new revision"
                % (script.revision, os.path.basename(script.path), record["run_id"], record["at"])
            )
    return problems


def _compare_schema(
    run: AlembicRun, maintenance_db: str, ledger: Ledger, current: list[str], heads: list[str], problems: list[str], result: dict[str, Any]
) -> None:
    if sorted(current) == sorted(heads):
        probe = run.probe(compare=True, ignore_tables=[ledger.name])
        if not probe.metadata_available:
            result["schema_note"] = probe.metadata_note or "env.py exposes no target_metadata, so the schema was not compared with models"
            return
        differences = probe.diffs or []
        against = "the models"
    elif current:
        differences = expected_schema_differences(run, current, [ledger.name], maintenance_db)
        against = "what the migrations build at %s" % ", ".join(current)
    else:
        differences = expected_schema_differences(run, [], [ledger.name], maintenance_db)
        against = "an empty database"
    result.update(schema_compared=True, schema_compared_with=against, schema_differences=differences)
    if differences:
        problems.append("the live schema differs from %s in %d place(s): %s" % (against, len(differences), "; ".join(differences)))

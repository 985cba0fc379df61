# -*- coding: utf-8 -*-
# The operations behind the Alembic modules. Each takes the module's params and
# check/diff flags, fills one result dict (before/after, changed = before !=
# after) and raises FleetError for expected failures. The modules only wire
# AnsibleModule to these functions through run_module().
from __future__ import annotations

import os
import time
from typing import Any

from ansible.module_utils.fleet_alembic import (
    ALEMBIC_IMPORT_ERROR,
    AlembicRun,
    Step,
    elapsed,
    explain_migration_failure,
    load_project,
)
from ansible.module_utils.fleet_common import (
    CONNECTION_ARGUMENT_SPEC,
    PROJECT_ARGUMENT_SPEC,
    FleetError,
    argument_spec,
    parse_target,
)
from ansible.module_utils.fleet_db import DatabaseMissing
from ansible.module_utils.fleet_ledger import (
    DEFAULT_TABLE,
    FAILED,
    SUCCEEDED,
    Ledger,
    RunRecord,
    file_sha256,
    revision_records,
)
from ansible.module_utils.fleet_module import Operation
from ansible.module_utils.fleet_review import classify_downgrade
from ansible.module_utils.fleet_scratch import expected_schema_differences

CREATE_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "create_database": dict(type="bool", default=False),
    "maintenance_db": dict(type="str", default="postgres"),
}


IMPORT_ERROR = ALEMBIC_IMPORT_ERROR


def alembic_argument_spec(*extra_specs: dict[str, dict[str, Any]], **options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return argument_spec(CONNECTION_ARGUMENT_SPEC, PROJECT_ARGUMENT_SPEC, *extra_specs, **options)


def _open(params: dict[str, Any]) -> AlembicRun:
    target = parse_target(params["url"], params.get("password"), params.get("connect_timeout") or 10)
    project = load_project(params["config"], params.get("project_dir"), params.get("ini_section") or "alembic")
    return AlembicRun(project, target)


def _predict_heads(before: list[str], steps: list[Step]) -> list[str]:
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
    started = time.monotonic()
    run = _open(params)
    result["database"] = run.target.label
    with run.session():
        heads = run.script_heads()
        result.update(heads=heads, multiple_heads=len(heads) > 1, revisions=len(run.revision_ids()))
        probe = run.probe()
        if not probe.exists and not params.get("create_database"):
            raise DatabaseMissing(run.target)
        result.update(
            exists=probe.exists,
            versioned=probe.versioned,
            current=list(probe.current),
            server_version=probe.server_version,
        )
        spec_text = params.get("target") or "head"
        if len(heads) > 1 and spec_text == "head":
            spec_text = "heads"
        spec = run.parse(spec_text, "upgrade")
        steps = run.plan("upgrade", spec, list(probe.current))
        result.update(
            target=spec.given,
            pending=[step.as_dict() for step in steps],
            pending_count=len(steps),
            at_target=not steps,
        )
        ledger = Ledger(params.get("ledger_table") or DEFAULT_TABLE)
        result.update(last_runs=[], last_change=None)
        if probe.exists:
            with run.transaction() as conn:
                result["last_runs"] = ledger.read(conn, params.get("ledger_limit") or 5)
                result["last_change"] = ledger.last_change(conn)
    result["duration"] = elapsed(started)


# -- upgrade / downgrade ------------------------------------------------------
def make_migrate(direction: str) -> Operation:
    def migrate(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
        _migrate(direction, params, check_mode, want_diff, result)

    return migrate


def _review_downgrade(params: dict[str, Any], steps: list[Step], result: dict[str, Any]) -> list[dict[str, Any]]:
    """Classify each revision to undo; refuse before anything runs when policy says so."""
    planned = []
    refused: list[str] = []
    refuse = set(params.get("refuse") or ())
    for step in steps:
        entry = step.as_dict()
        verdict = classify_downgrade(step.path)
        entry.update(reversibility=verdict.kind, reasons=list(verdict.reasons))
        planned.append(entry)
        if verdict.kind in refuse:
            refused.append("%s (%s: %s)" % (step.revision, verdict.kind, "; ".join(verdict.reasons)))
    result["pending"] = planned
    floor = params.get("floor")
    if floor and any(step.revision == floor or step.revision.startswith(floor) for step in steps):
        raise FleetError(
            "downgrading to '%s' would undo revision %s, below the allowed floor: undo only the last run, or set the override to go further."
            % (result.get("target"), floor)
        )
    if refused:
        raise FleetError(
            "refusing to downgrade: %s; restore the run's backup instead (rollback_strategy: restore), or allow it explicitly."
            % ", ".join(refused)
        )
    return planned


def _migrate(direction: str, params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    started = time.monotonic()
    run = _open(params)
    ledger = Ledger(params.get("ledger_table") or DEFAULT_TABLE)
    result.update(database=run.target.label, direction=direction, before=[], after=[], applied=[])
    with run.session():
        spec = run.parse(params.get("target"), direction)
        result["target"] = spec.given
        probe = run.probe()
        if not probe.exists and not params.get("create_database"):
            raise DatabaseMissing(run.target)
        before = list(probe.current)
        result.update(before=before, after=before, exists=probe.exists)
        steps = run.plan(direction, spec, before)
        if direction == "downgrade":
            planned = _review_downgrade(params, steps, result)
        else:
            planned = [step.as_dict() for step in steps]
        sql = note = None
        if want_diff and steps:
            sql, note = run.render_sql(direction, spec, before)
            result["sql"] = sql
            if note:
                result["sql_note"] = note
        if not steps:
            result.pop("pending", None)
            result["log"] = run.log_lines()
            result["duration"] = elapsed(started)
            return
        predicted = _predict_heads(before, steps)
        if check_mode:
            result.update(changed=True, pending=planned, after=predicted)
        else:
            result.pop("pending", None)
            if not probe.exists:
                run.ensure_database(True, params.get("maintenance_db") or "postgres")
                result["database_created"] = True
            record = RunRecord.from_params(params, default_action=direction)
            with run.transaction() as conn:
                entry_id = ledger.start(conn, record, before)
            result["ledger_entry_id"] = entry_id
            applied = revision_records(steps)
            undo = params.get("undo_entry_id")

            def record_success(conn: Any) -> None:
                ledger.finish(conn, entry_id, SUCCEEDED, predicted, applied)
                if undo:
                    ledger.mark_undone(conn, undo, entry_id)

            try:
                run.migrate(direction, spec, before_commit=record_success)
            except FleetError:
                raise
            except Exception as exc:
                message = explain_migration_failure(exc, run.target, direction)
                try:
                    now = list(run.probe().current)
                except Exception:  # the database itself may be gone
                    now = []
                with run.transaction() as conn:
                    ledger.finish(conn, entry_id, FAILED, now, [], message)
                result.update(after=now, changed=now != before, failed_steps=planned, log=run.log_lines())
                raise FleetError(
                    "%s; the database is at %s (was %s)%s."
                    % (
                        message,
                        ", ".join(now) or "base",
                        ", ".join(before) or "base",
                        " - the transaction was rolled back, nothing changed" if now == before else "",
                    )
                ) from None
            after = list(run.probe().current)
            result.update(after=after, applied=planned, changed=True)
        if want_diff:
            diff: dict[str, Any] = {
                "before": _revision_text(before),
                "after": _revision_text(result["after"]),
                "before_header": "%s (before)" % run.target.label,
                "after_header": "%s (after)" % run.target.label,
            }
            if sql:
                diff["prepared"] = sql
            elif note:
                diff["prepared"] = "-- %s\n" % note
            result["diff"] = diff
        result["log"] = run.log_lines()
    result["duration"] = elapsed(started)


# -- stamp --------------------------------------------------------------------
def stamp(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    started = time.monotonic()
    run = _open(params)
    ledger = Ledger(params.get("ledger_table") or DEFAULT_TABLE)
    result.update(database=run.target.label, before=[], after=[])
    with run.session():
        spec = run.parse(params.get("target"), "stamp")
        result["target"] = spec.given
        probe = run.probe()
        if not probe.exists:
            raise DatabaseMissing(run.target)
        before = list(probe.current)
        if spec.ref == "base":
            wanted: list[str] = []
        else:
            try:
                wanted = [script.revision for script in run.script.get_revisions(spec.alembic)]
            except Exception as exc:
                raise FleetError("cannot stamp '%s': %s" % (spec.given, " ".join(str(exc).split()))) from None
        result.update(before=before, after=before)
        if sorted(wanted) == sorted(before):
            result["duration"] = elapsed(started)
            return
        if want_diff:
            sql, note = run.render_stamp_sql(spec, before)
            result["diff"] = {
                "before": _revision_text(before),
                "after": _revision_text(wanted),
                "prepared": sql if sql else "-- %s\n" % note,
            }
        if not check_mode:
            with run.transaction() as conn:
                entry_id = ledger.start(conn, RunRecord.from_params(params, default_action="stamp"), before)
            result["ledger_entry_id"] = entry_id
            run.stamp(spec, before_commit=lambda conn: ledger.finish(conn, entry_id, SUCCEEDED, wanted, [], "stamped without running migrations"))
            wanted = list(run.probe().current)
        result.update(changed=True, after=wanted, log=run.log_lines())
    result["duration"] = elapsed(started)


# -- verify -------------------------------------------------------------------
def verify(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    started = time.monotonic()
    run = _open(params)
    result["database"] = run.target.label
    problems: list[str] = []
    with run.session():
        heads = run.script_heads()
        expected_heads = params.get("expected_heads")
        result["heads"] = heads
        if expected_heads:
            resolved = sorted(run.parse(head, "stamp").ref or "" for head in expected_heads)
            if sorted(heads) != resolved:
                problems.append("the project's heads are %s, expected %s" % (", ".join(heads), ", ".join(resolved)))
        elif len(heads) != 1:
            problems.append(
                "the project has %d heads (%s): merge them (alembic merge heads) or list them in expected_heads"
                % (len(heads), ", ".join(heads) or "none")
            )
        probe = run.probe(compare=False)
        if not probe.exists:
            raise DatabaseMissing(run.target)
        current = list(probe.current)
        revision = params.get("revision") or "head"
        spec = run.parse(revision, "stamp")
        if spec.ref == "base":
            expected: list[str] = []
        elif spec.ref in ("head", "heads"):
            expected = heads
        else:
            expected = [script.revision for script in run.script.get_revisions(spec.alembic)]
        result.update(current=current, expected=expected)
        if sorted(current) != sorted(expected):
            problems.append("the database is at %s, expected %s" % (", ".join(current) or "base", ", ".join(expected) or "base"))
        ledger = Ledger(params.get("ledger_table") or DEFAULT_TABLE)
        if params.get("check_files", True):
            problems.extend(_changed_revision_files(run, ledger, current))
        result["schema_compared"] = False
        if params.get("compare_schema", True) and not problems:
            _compare_schema(run, params, ledger, current, heads, problems, result)
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
                "revision %s (%s) was changed after it was applied (run %s, %s): restore the applied file from version control and put the change in a new revision"
                % (script.revision, os.path.basename(script.path), record["run_id"], record["at"])
            )
    return problems


def _compare_schema(
    run: AlembicRun, params: dict[str, Any], ledger: Ledger, current: list[str], heads: list[str], problems: list[str], result: dict[str, Any]
) -> None:
    if sorted(current) == sorted(heads):
        probe = run.probe(compare=True, ignore_tables=[ledger.name])
        if not probe.metadata_available:
            result["schema_note"] = "env.py exposes no target_metadata, so the schema was not compared with models"
            return
        differences = probe.diffs or []
        against = "the models"
    elif len(current) == 1:
        differences = expected_schema_differences(run, current[0], [ledger.name], params.get("maintenance_db") or "postgres")
        against = "what the migrations build at %s" % current[0]
    else:
        result["schema_note"] = "the database is at several heads below head, so the schema was not compared"
        return
    result.update(schema_compared=True, schema_compared_with=against, schema_differences=differences)
    if differences:
        problems.append("the live schema differs from %s in %d place(s): %s" % (against, len(differences), "; ".join(differences)))

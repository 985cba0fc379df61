# -*- coding: utf-8 -*-
# The operations behind the Alembic modules. Each takes the module's params and
# check/diff flags, fills one result dict (before/after, changed = before !=
# after) and raises FleetError for expected failures. The modules only wire
# AnsibleModule to these functions through run_module().
from __future__ import annotations

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
from ansible.module_utils.fleet_module import Operation

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
    result["duration"] = elapsed(started)


# -- upgrade / downgrade ------------------------------------------------------
def make_migrate(direction: str) -> Operation:
    def migrate(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
        _migrate(direction, params, check_mode, want_diff, result)

    return migrate


def _migrate(direction: str, params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    started = time.monotonic()
    run = _open(params)
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
        planned = [step.as_dict() for step in steps]
        sql = note = None
        if want_diff and steps:
            sql, note = run.render_sql(direction, spec, before)
            result["sql"] = sql
            if note:
                result["sql_note"] = note
        if not steps:
            result["log"] = run.log_lines()
            result["duration"] = elapsed(started)
            return
        if check_mode:
            result.update(changed=True, pending=planned, after=_predict_heads(before, steps))
        else:
            if not probe.exists:
                run.ensure_database(True, params.get("maintenance_db") or "postgres")
                result["database_created"] = True
            try:
                run.migrate(direction, spec)
            except FleetError:
                raise
            except Exception as exc:
                message = explain_migration_failure(exc, run.target, direction)
                try:
                    now = list(run.probe().current)
                except Exception:  # the database itself may be gone
                    now = []
                result.update(after=now, changed=now != before, failed_steps=planned, log=run.log_lines())
                raise FleetError(
                    "%s; the database is at %s (was %s)%s." % (
                        message,
                        ", ".join(now) or "base",
                        ", ".join(before) or "base",
                        " - the transaction was rolled back, nothing changed" if now == before else "",
                    )
                ) from None
            after = list(run.probe().current)
            result.update(after=after, applied=planned, changed=after != before or bool(result.get("database_created")))
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
            run.stamp(spec)
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
        result["schema_compared"] = False
        if params.get("compare_schema", True) and not problems and sorted(current) == sorted(heads):
            probe = run.probe(compare=True)
            if probe.metadata_available:
                result["schema_compared"] = True
                result["schema_differences"] = probe.diffs or []
                if probe.diffs:
                    problems.append(
                        "the live schema differs from the models in %d place(s): %s" % (len(probe.diffs), "; ".join(probe.diffs))
                    )
            else:
                result["schema_note"] = "env.py exposes no target_metadata, so the schema was not compared with models"
        elif params.get("compare_schema", True) and not problems:
            result["schema_note"] = "the database is not at the project's head, so the models (which describe head) were not compared"
        result["problems"] = problems
        result["log"] = run.log_lines()
    result["duration"] = elapsed(started)
    if problems:
        raise FleetError("verification of %s failed: %s." % (run.target.label, "; ".join(problems)))

# -*- coding: utf-8 -*-
# alembic_lint: the pending revisions, one at a time, rendered to SQL with
# Alembic's offline mode and checked by squawk (a PostgreSQL migration
# linter), plus alembic-fleet's own source-level rule on each revision's
# downgrade(). Read-only: it never changes anything and never connects with
# offline: true.
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from ansible.module_utils.fleet_alembic import AlembicRun, Step, elapsed
from ansible.module_utils.fleet_common import FleetError
from ansible.module_utils.fleet_ops import _open
from ansible.module_utils.fleet_review import IRREVERSIBLE, LOSSY, classify_downgrade

# alembic-fleet sets lock_timeout and statement_timeout on the migration's own
# connection (the lock_timeout / statement_timeout options of the upgrade
# module), so squawk's advice to SET them inside the migration does not apply.
DROPPED_RULES = frozenset({"require-lock-timeout", "require-statement-timeout"})
SQUAWK_TIMEOUT = 120
_VERSION_TABLE = re.compile(r"\balembic_version\b", re.IGNORECASE)


def squawk_binary() -> str:
    """squawk from the same environment as the running Python, else from PATH."""
    beside = Path(sys.executable).parent / "squawk"
    if beside.is_file() and os.access(str(beside), os.X_OK):
        return str(beside)
    found = shutil.which("squawk")
    if found:
        return found
    raise FleetError(
        "the squawk SQL linter is not installed: pip install squawk-cli==2.70.0 into the Python that runs the module (%s)." % sys.executable
    )


def _statements(sql: str) -> list[str]:
    """Split Alembic's offline output into statements (each ends a line with ';')."""
    statements: list[str] = []
    current: list[str] = []
    for line in sql.splitlines():
        if not current and not line.strip():
            continue
        if not current and line.lstrip().startswith("--"):
            statements.append(line)  # a comment line of its own ("-- Running upgrade a -> b")
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current))
            current = []
    if current and "".join(current).strip():
        statements.append("\n".join(current))
    return statements


def lintable_sql(sql: str) -> tuple[str, list[tuple[int, int, str]]]:
    """The revision's SQL without Alembic's own version-table bookkeeping.

    Returns the text and (first line, last line, statement) spans, 0-based, so that squawk's line numbers can be
    mapped back to statements.
    """
    kept: list[str] = []
    spans: list[tuple[int, int, str]] = []
    line = 0
    for statement in _statements(sql):
        if statement.lstrip().startswith("--") and statement.count("\n") == 0:
            kept.append(statement)  # "-- Running upgrade a -> b" comments
            line += 1
            continue
        if _VERSION_TABLE.search(statement):
            continue  # CREATE TABLE / INSERT / UPDATE alembic_version: Alembic's, not the revision's
        count = statement.count("\n") + 1
        spans.append((line, line + count - 1, statement))
        kept.append(statement)
        line += count
    return "\n".join(kept) + "\n", spans


def _statement_at(spans: Sequence[tuple[int, int, str]], line: int) -> str:
    for first, last, text in spans:
        if first <= line <= last:
            return " ".join(text.split())
    return ""


def run_squawk(binary: str, sql: str, workdir: str, name: str) -> list[dict[str, Any]]:
    """squawk --reporter json over one revision's SQL; findings in the module's shape."""
    text, spans = lintable_sql(sql)
    path = os.path.join(workdir, name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    try:
        # cwd: the private temp dir, so no .squawk.toml of the caller's tree changes the rules.
        done = subprocess.run(
            [binary, "--reporter", "json", path], cwd=workdir, capture_output=True, text=True, timeout=SQUAWK_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise FleetError("squawk did not finish within %d s on %s." % (SQUAWK_TIMEOUT, name)) from None
    except OSError as exc:
        raise FleetError("squawk (%s) cannot run: %s; reinstall squawk-cli." % (binary, exc.strerror or exc)) from None
    try:
        raw = json.loads(done.stdout or "[]")
    except ValueError:
        detail = " ".join((done.stderr or done.stdout or "no output").split())[:300]
        raise FleetError("squawk failed on %s (exit %d): %s" % (name, done.returncode, detail)) from None
    if not isinstance(raw, list):
        raise FleetError("squawk printed unexpected JSON on %s: %s" % (name, json.dumps(raw)[:200]))
    findings = []
    for item in raw:
        rule = str(item.get("rule_name") or "")
        if rule in DROPPED_RULES:
            continue
        line = item.get("line")
        line = int(line) if isinstance(line, int) else None
        findings.append(
            {
                "rule": rule,
                "severity": "error" if str(item.get("level") or "").lower() == "error" else "warning",
                "statement": _statement_at(spans, line) if line is not None else "",
                "line": None if line is None else line + 1,
                "why": item.get("message") or "",
                "fix": item.get("help") or "",
                "source": "squawk",
            }
        )
    return findings


def downgrade_findings(path: str) -> tuple[str, list[str], list[dict[str, Any]]]:
    verdict = classify_downgrade(path)
    reasons = list(verdict.reasons)
    findings: list[dict[str, Any]] = []
    if verdict.kind in (IRREVERSIBLE, LOSSY):
        irreversible = verdict.kind == IRREVERSIBLE
        findings.append(
            {
                "rule": "irreversible-downgrade" if irreversible else "lossy-downgrade",
                "severity": "error" if irreversible else "warning",
                "statement": "",
                "line": None,
                "why": "downgrade() %s: %s" % ("cannot undo this revision" if irreversible else "loses data", "; ".join(reasons)),
                "fix": "write a downgrade() that restores the schema (and data), or plan a restore from backup as this revision's rollback."
                if irreversible
                else "keep the run's backup: undoing this revision throws data away.",
                "source": "alembic-fleet",
            }
        )
    return verdict.kind, reasons, findings


def _offline_start(run: AlembicRun, from_revision: str | None) -> list[str]:
    if not from_revision or from_revision.strip() == "base":
        return []
    spec = run.parse(from_revision, "upgrade")
    try:
        revisions = run.script.get_revisions(spec.alembic)
    except Exception as exc:
        raise FleetError(
            "from_revision '%s' is not a revision of this project (%s): give base or a revision id." % (spec.given, " ".join(str(exc).split()))
        ) from None
    found = [rev.revision for rev in revisions if rev is not None]
    if not found:
        raise FleetError("from_revision '%s' names no revision: give base or a revision id." % spec.given)
    return found


def _lint_step(run: AlembicRun, binary: str, workdir: str, step: Step) -> dict[str, Any]:
    entry: dict[str, Any] = {"revision": step.revision, "file": os.path.basename(step.path), "message": step.message, "note": None}
    kind, reasons, own = downgrade_findings(step.path)
    findings: list[dict[str, Any]] = []
    sql, note = run.render_sql("upgrade", run.parse(step.revision, "upgrade"), list(step.down_revision))
    if sql is None:
        entry["note"] = "%s Only source-level checks were made." % (note or "SQL not rendered.")
    else:
        findings.extend(run_squawk(binary, sql, workdir, "%s.sql" % step.revision))
        if run.target.dialect != "postgresql":
            entry["note"] = "squawk's rules are written for PostgreSQL; this SQL was rendered for %s." % run.target.dialect
    findings.extend(own)
    entry.update(
        findings=findings,
        reversibility=kind,
        reversibility_reasons=reasons,
        sql_rendered=sql is not None,
    )
    return entry


def lint(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    started = time.monotonic()
    binary = squawk_binary()
    run = _open(params)
    result["database"] = run.target.label
    offline = bool(params.get("offline"))
    result["offline"] = offline
    with run.session():
        heads = run.script_heads()
        if offline:
            current = _offline_start(run, params.get("from_revision"))
        else:
            probe = run.probe()
            if not probe.exists:
                raise FleetError(
                    "database %s does not exist: nothing is pending on it; lint the project with offline: true instead." % run.target.label
                )
            current = list(probe.current)
        result["current"] = current
        spec_text = params.get("target") or "head"
        if len(heads) > 1 and spec_text == "head":
            spec_text = "heads"
        spec = run.parse(spec_text, "upgrade")
        result["target"] = spec.given
        steps = run.plan("upgrade", spec, current)
        with tempfile.TemporaryDirectory(prefix="alembic-fleet-lint-") as workdir:
            revisions = [_lint_step(run, binary, workdir, step) for step in steps]
    findings = [f for entry in revisions for f in entry["findings"]]
    result.update(
        revisions=revisions,
        pending_count=len(steps),
        summary={
            "errors": sum(1 for f in findings if f["severity"] == "error"),
            "warnings": sum(1 for f in findings if f["severity"] == "warning"),
        },
        duration=elapsed(started),
    )

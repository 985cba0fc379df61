# -*- coding: utf-8 -*-
# alembic_lint: the review of the pending revisions, one at a time. Each is
# rendered to SQL with Alembic's offline mode and checked by squawk (a
# PostgreSQL migration linter) and by alembic-fleet's own statement rules
# (data and schema mixed, non-transactional statements); a revision that
# cannot render offline is reviewed from its upgrade() operations instead.
# Every revision's downgrade() is classified (reversible, lossy,
# irreversible). The policy (fleet_rules levels, overridden per environment)
# makes each finding an error, a warning or nothing; a revision's
# fleet_acknowledge names the rules it accepts, with a reason. Read-only: it
# never changes anything and never connects with offline: true.
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible.module_utils.fleet_alembic import AlembicRun, Step, elapsed
from ansible.module_utils.fleet_common import FleetError
from ansible.module_utils.fleet_ops import _open
from ansible.module_utils.fleet_review import (
    IRREVERSIBLE,
    LOSSY,
    classify_downgrade,
    read_acknowledgements,
    review_upgrade,
)
from ansible.module_utils.fleet_rules import ERROR, LEVELS, OFF, RULES, rule_level

SQUAWK_TIMEOUT = 120
STATEMENT_PREVIEW = 200
_VERSION_TABLE = re.compile(r"\balembic_version\b", re.IGNORECASE)
_RULE_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_TX_CONTROL = re.compile(r"^(BEGIN|COMMIT|ROLLBACK|START\s+TRANSACTION|END)\b", re.IGNORECASE)
_DATA = re.compile(r"^(INSERT|UPDATE|DELETE|MERGE|COPY|WITH)\b", re.IGNORECASE)
_NON_TRANSACTIONAL = re.compile(r"\bCONCURRENTLY\b|^VACUUM\b|^ALTER\s+SYSTEM\b|^(CREATE|DROP)\s+DATABASE\b", re.IGNORECASE)
_RERUNNABLE = re.compile(r"\bIF\s+(NOT\s+)?EXISTS\b", re.IGNORECASE)
_TABLE_PATTERNS = (
    re.compile(r"^ALTER\s+TABLE\s+(?:ONLY\s+)?(?:IF\s+EXISTS\s+)?([\w.\"]+)", re.IGNORECASE),
    re.compile(r"^CREATE\s+(?:UNIQUE\s+)?INDEX\s+.*?\bON\s+(?:ONLY\s+)?([\w.\"]+)", re.IGNORECASE | re.DOTALL),
    re.compile(r"^(?:CREATE|DROP)\s+TABLE\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?([\w.\"]+)", re.IGNORECASE),
    re.compile(r"^(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|TRUNCATE(?:\s+TABLE)?)\s+(?:ONLY\s+)?([\w.\"]+)", re.IGNORECASE),
)


# -- policy ------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    """Rule levels over fleet_rules' defaults, and whether errors block."""

    overrides: dict[str, str]
    block: bool

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Policy:
        overrides: dict[str, str] = {}
        for rule, level in (params.get("rules") or {}).items():
            name, wanted = str(rule).strip(), str(level).strip().lower()
            if not _RULE_NAME.match(name):
                raise FleetError("rules: '%s' is not a rule name (lower-case words joined by '-', e.g. ban-drop-column): fix the review policy." % rule)
            if wanted not in LEVELS:
                raise FleetError("rules: %s is set to '%s': give one of %s." % (name, level, ", ".join(LEVELS)))
            overrides[name] = wanted
        return cls(overrides, bool(params.get("block")))

    def level(self, rule: str) -> str:
        return rule_level(rule, self.overrides)


def _finding(rule: str, statement: str, source: str, line: int | None = None, why: str = "", fix: str = "") -> dict[str, Any]:
    known = RULES.get(rule)
    text = " ".join(statement.split())
    return {
        "rule": rule,
        "severity": None,  # set by the policy
        "table": table_of(text),
        "statement": text if len(text) <= STATEMENT_PREVIEW else text[:STATEMENT_PREVIEW] + "...",
        "line": line,
        "why": known.why if known else why,
        "fix": known.fix if known else fix,
        "source": source,
        "acknowledged": False,
        "acknowledgement": None,
    }


def table_of(statement: str) -> str | None:
    """The table a SQL statement works on, when its first words say so."""
    for pattern in _TABLE_PATTERNS:
        match = pattern.match(statement.strip())
        if match:
            return match.group(1).replace('"', "")
    return None


# -- the revision's SQL ------------------------------------------------------
def squawk_binary() -> str:
    """squawk from the same environment as the running Python, else from PATH."""
    beside = Path(sys.executable).parent / "squawk"
    if beside.is_file() and os.access(str(beside), os.X_OK):
        return str(beside)
    found = shutil.which("squawk")
    if found:
        return found
    raise FleetError("the squawk SQL linter is not installed: pip install squawk-cli==2.70.0 into the Python that runs the module (%s)." % sys.executable)


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


def _is_comment(statement: str) -> bool:
    return statement.lstrip().startswith("--") and statement.count("\n") == 0


def lintable_sql(sql: str) -> tuple[str, list[tuple[int, int, str]]]:
    """The revision's SQL without Alembic's own version-table bookkeeping.

    Returns the text and (first line, last line, statement) spans, 0-based, so that squawk's line numbers can be
    mapped back to statements.
    """
    kept: list[str] = []
    spans: list[tuple[int, int, str]] = []
    line = 0
    for statement in _statements(sql):
        if _is_comment(statement):
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
            return text
    return ""


def _pg_version(server_version: str | None) -> str | None:
    match = re.match(r"(\d+)(?:\.(\d+))?", server_version or "")
    return "%s.%s" % (match.group(1), match.group(2) or "0") if match else None


def run_squawk(binary: str, sqls: dict[str, str], workdir: str, pg_version: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """One squawk --reporter json run over several revisions' SQL (file name -> SQL); findings per file name."""
    spans_of: dict[str, Sequence[tuple[int, int, str]]] = {}
    paths = []
    for name, sql in sqls.items():
        text, spans_of[name] = lintable_sql(sql)
        paths.append(os.path.join(workdir, name))
        with open(paths[-1], "w", encoding="utf-8") as handle:
            handle.write(text)
    findings: dict[str, list[dict[str, Any]]] = {name: [] for name in sqls}
    if not paths:
        return findings
    names = ", ".join(sqls)
    argv = [binary, "--reporter", "json"] + (["--pg-version", pg_version] if pg_version else []) + paths
    try:
        # cwd: the private temp dir, so no .squawk.toml of the caller's tree changes the rules.
        done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=SQUAWK_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise FleetError("squawk did not finish within %d s on %s." % (SQUAWK_TIMEOUT, names)) from None
    except OSError as exc:
        raise FleetError("squawk (%s) cannot run: %s; reinstall squawk-cli." % (binary, exc.strerror or exc)) from None
    try:
        raw = json.loads(done.stdout or "[]")
    except ValueError:
        detail = " ".join((done.stderr or done.stdout or "no output").split())[:300]
        raise FleetError("squawk failed on %s (exit %d): %s" % (names, done.returncode, detail)) from None
    if not isinstance(raw, list):
        raise FleetError("squawk printed unexpected JSON on %s: %s" % (names, json.dumps(raw)[:200]))
    for item in raw:
        name = os.path.basename(str(item.get("file") or ""))
        if name not in findings:
            raise FleetError("squawk reported a file it was not given (%s) on %s." % (name, names))
        line = item.get("line") if isinstance(item.get("line"), int) else None
        statement = _statement_at(spans_of[name], line) if line is not None else ""
        findings[name].append(
            _finding(
                str(item.get("rule_name") or ""),
                statement,
                "squawk",
                None if line is None else line + 1,
                why=str(item.get("message") or ""),
                fix=str(item.get("help") or ""),
            )
        )
    return findings


def statement_findings(sql: str) -> tuple[list[dict[str, Any]], bool]:
    """alembic-fleet's own rules on the revision's statements; and whether it all runs in one transaction.

    Alembic wraps a revision's statements in BEGIN/COMMIT when the dialect has transactional DDL; whatever is
    rendered outside them (an autocommit_block) is not rolled back with the rest.
    """
    statements = [s for s in _statements(sql) if not _is_comment(s) and not _VERSION_TABLE.search(s)]
    wrapped = any(_TX_CONTROL.match(s.strip()) and s.strip().upper().startswith(("BEGIN", "START")) for s in statements)
    in_transaction = False
    data: list[str] = []
    schema: list[str] = []
    outside: list[str] = []
    for statement in statements:
        text = statement.strip()
        if _TX_CONTROL.match(text):
            in_transaction = text.upper().startswith(("BEGIN", "START"))
            continue
        if (wrapped and not in_transaction) or _NON_TRANSACTIONAL.search(text):
            outside.append(text)
        elif _DATA.match(text):
            data.append(text)
        else:
            schema.append(text)
    findings: list[dict[str, Any]] = []
    if data and (schema or outside):
        findings.append(_finding("mixed-data-and-schema", data[0], "alembic-fleet"))
    fragile = [s for s in outside if not _RERUNNABLE.search(s)]
    if outside and (data or schema or fragile):
        findings.append(_finding("non-transactional", (fragile or outside)[0], "alembic-fleet"))
    return findings, not outside


# -- one revision ------------------------------------------------------------
def downgrade_findings(path: str) -> tuple[str, list[str], list[dict[str, Any]]]:
    verdict = classify_downgrade(path)
    reasons = list(verdict.reasons)
    findings: list[dict[str, Any]] = []
    if verdict.kind in (IRREVERSIBLE, LOSSY):
        rule = "irreversible-downgrade" if verdict.kind == IRREVERSIBLE else "lossy-downgrade"
        finding = _finding(rule, "", "alembic-fleet")
        finding["why"] = "%s (%s)" % (finding["why"].rstrip("."), "; ".join(reasons))
        findings.append(finding)
    return verdict.kind, reasons, findings


def _operation_findings(path: str) -> tuple[list[dict[str, Any]], bool]:
    review = review_upgrade(path)
    findings = []
    for item in review.findings:
        finding = _finding(item.rule, item.statement, "alembic-fleet (source)", item.line)
        finding["table"] = item.table
        findings.append(finding)
    transactional = not any(f["rule"] == "non-transactional" for f in findings)
    return findings, transactional


def _lint_step(run: AlembicRun, step: Step, rendered: tuple[str | None, str | None], squawked: list[dict[str, Any]] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"revision": step.revision, "file": os.path.basename(step.path), "message": step.message, "note": None}
    kind, reasons, findings = downgrade_findings(step.path)
    sql, note = rendered
    if sql is None:
        entry["note"] = "%s Its upgrade() operations were reviewed from the source instead." % (note or "SQL not rendered.")
        own, transactional = _operation_findings(step.path)
    else:
        own, transactional = statement_findings(sql)
        own = (squawked or []) + own
        if run.target.dialect != "postgresql":
            entry["note"] = "squawk's rules are written for PostgreSQL; this SQL was rendered for %s." % run.target.dialect
    acknowledgements, problem = read_acknowledgements(step.path)
    if problem:
        findings.append(_finding("invalid-acknowledgement", "", "alembic-fleet"))
        findings[-1]["why"] = problem
    entry.update(
        findings=own + findings,
        acknowledgements=acknowledgements,
        reversibility=kind,
        reversibility_reasons=reasons,
        transactional=transactional,
        sql_rendered=sql is not None,
    )
    return entry


def apply_policy(entry: dict[str, Any], policy: Policy) -> None:
    """Give each finding its level, drop the ones that are off, mark acknowledged ones."""
    kept = []
    used: set[str] = set()
    for finding in entry["findings"]:
        level = policy.level(finding["rule"])
        if level == OFF:
            continue
        finding["severity"] = level
        reason = entry["acknowledgements"].get(finding["rule"])
        if reason and finding["rule"] != "invalid-acknowledgement":
            finding.update(acknowledged=True, acknowledgement=reason)
            used.add(finding["rule"])
        kept.append(finding)
    entry["findings"] = kept
    entry["unused_acknowledgements"] = sorted(set(entry["acknowledgements"]) - used)


def ledger_review(revisions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the ledger keeps of the review: per revision its reversibility and findings."""
    return [
        {
            "revision": entry["revision"],
            "reversibility": entry["reversibility"],
            "findings": [
                {"rule": f["rule"], "severity": f["severity"], "table": f["table"], "acknowledgement": f["acknowledgement"]} for f in entry["findings"]
            ],
        }
        for entry in revisions
    ]


def finding_line(entry: dict[str, Any], finding: dict[str, Any]) -> str:
    """One line per finding: revision, file, level, rule, table, statement, fix (and the acknowledgement)."""
    where = " on %s" % finding["table"] if finding["table"] else ""
    statement = ' ("%s")' % finding["statement"] if finding["statement"] else ""
    line = "%s (%s): %s %s%s%s - fix: %s" % (
        entry["revision"],
        entry["file"],
        finding["severity"],
        finding["rule"],
        where,
        statement,
        finding["fix"].rstrip("."),
    )
    if finding["acknowledged"]:
        line += " - acknowledged: %s" % finding["acknowledgement"]
    return line


# -- the module ----------------------------------------------------------------
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


def review_steps(
    run: AlembicRun, steps: Sequence[Step], policy: Policy, pg_version: str | None, binary: str | None = None
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], dict[str, Any]]], list[str]]:
    """Review each planned step on the open run: (revisions, (revision, finding) pairs, lines of blocking errors)."""
    binary = binary or squawk_binary()
    # One offline rendering of the whole plan and one squawk run over all of it, not one of each per revision.
    rendered = run.render_steps_sql(steps)
    sqls = {"%s.sql" % step.revision: sql for step, (sql, _) in zip(steps, rendered, strict=True) if sql is not None}
    with tempfile.TemporaryDirectory(prefix="alembic-fleet-lint-") as workdir:
        squawked = run_squawk(binary, sqls, workdir, pg_version)
    revisions = [_lint_step(run, step, pair, squawked.get("%s.sql" % step.revision)) for step, pair in zip(steps, rendered, strict=True)]
    for entry in revisions:
        apply_policy(entry, policy)
    findings = [(entry, f) for entry in revisions for f in entry["findings"]]
    blocking = [finding_line(entry, f) for entry, f in findings if f["severity"] == ERROR and not f["acknowledged"]]
    return revisions, findings, blocking


def lint(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    started = time.monotonic()
    policy = Policy.from_params(params)
    binary = squawk_binary()
    run = _open(params)
    result["database"] = run.target.label
    offline = bool(params.get("offline"))
    result["offline"] = offline
    pg_version = None
    with run.session():
        heads = run.script_heads()
        if offline:
            current = _offline_start(run, params.get("from_revision"))
        else:
            probe = run.probe()
            current = list(probe.current)
            if not probe.exists:
                result["note"] = "database %s does not exist yet: every revision up to the target is reviewed." % run.target.label
            elif run.target.dialect == "postgresql":
                pg_version = _pg_version(probe.server_version)
        result["current"] = current
        spec_text = params.get("target") or "head"
        if len(heads) > 1 and spec_text == "head":
            spec_text = "heads"
        spec = run.parse(spec_text, "upgrade")
        result["target"] = spec.given
        steps = run.plan("upgrade", spec, current)
        revisions, findings, blocking = review_steps(run, steps, policy, pg_version, binary)
    result.update(
        revisions=revisions,
        pending_count=len(steps),
        summary={
            "errors": sum(1 for _, f in findings if f["severity"] == ERROR and not f["acknowledged"]),
            "warnings": sum(1 for _, f in findings if f["severity"] != ERROR and not f["acknowledged"]),
            "acknowledged": sum(1 for _, f in findings if f["acknowledged"]),
        },
        report=[finding_line(entry, f) for entry, f in findings],
        errors=blocking,
        blocked=bool(blocking) and policy.block,
        ledger_review=ledger_review(revisions),
        pg_version=pg_version,
        duration=elapsed(started),
    )

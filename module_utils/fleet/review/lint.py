# -*- coding: utf-8 -*-
# alembic_lint: the review of the pending revisions, one at a time. Each is
# rendered to SQL with Alembic's offline mode and checked by squawk (a
# PostgreSQL migration linter) and by alembic-fleet's own statement rules
# (data and schema mixed, non-transactional statements), reading the SQL with
# pglast; a revision that cannot render offline is reviewed from its upgrade()
# operations instead. Every revision's downgrade() is classified (reversible,
# lossy, irreversible, unknown). Findings that need an existing table are left
# out for tables created earlier in the plan, and for every table of a
# database that was empty (a fresh install cannot block anyone). The policy
# (review.rules levels, overridden per environment) makes each finding an
# error, a warning or nothing; what the source cannot tell is never more than
# a warning. Findings are acknowledged by revision and rule in fleet-review.yml
# beside alembic.ini, the acknowledge option, or a revision's own
# fleet_acknowledge. A rule that does not concern the database's dialect (the
# PostgreSQL-only lock rules on SQLite) is left out and listed as skipped.
# Read-only: it never changes anything and never connects with offline: true.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible.module_utils.fleet.alembic.run import AlembicRun, Step, elapsed, open_run
from ansible.module_utils.fleet.core.common import FleetError
from ansible.module_utils.fleet.core.options import DEFAULT_TARGET, given
from ansible.module_utils.fleet.review.acknowledge import (
    IN_FILE,
    OPTION,
    REVIEW_FILE,
    Acknowledgement,
    Acknowledgements,
    check_mapping,
    merge,
    read_review_file,
    resolve,
    review_file_path,
)
from ansible.module_utils.fleet.review.cache import ReviewCache
from ansible.module_utils.fleet.review.downgrade import (
    IRREVERSIBLE,
    LOSSY,
    UNKNOWN,
    classify_downgrade,
)
from ansible.module_utils.fleet.review.rules import ERROR, LEVELS, OFF, RULES, WARNING, new_table_exempt, rule_applies, rule_fix, rule_level
from ansible.module_utils.fleet.review.sql import DATA, SCHEMA, TRANSACTION, Statement, batch_copy_of, batch_copy_parts, read_sql, read_statement, table_of
from ansible.module_utils.fleet.review.upgrade import OperationFinding, read_acknowledgements, review_upgrade

SQUAWK_TIMEOUT = 120
STATEMENT_PREVIEW = 200
VERSION_TABLE = "alembic_version"
_RULE_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_DOWNGRADE_RULES = {IRREVERSIBLE: "irreversible-downgrade", LOSSY: "lossy-downgrade", UNKNOWN: "uncertain-downgrade"}


# -- policy ------------------------------------------------------------------
@dataclass(frozen=True)
class ReviewPolicy:
    """Rule levels over review.rules' defaults, and whether errors block."""

    overrides: dict[str, str]
    block: bool
    acknowledge: dict[str, dict[str, str]] = field(default_factory=dict)  # the acknowledge option, shape-checked
    per_revision: bool = False  # the upgrade commits each revision on its own (transaction: revision)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ReviewPolicy:
        overrides: dict[str, str] = {}
        for rule, level in (params.get("rules") or {}).items():
            name, wanted = str(rule).strip(), str(level).strip().lower()
            if not _RULE_NAME.match(name):
                raise FleetError("rules: '%s' is not a rule name (lower-case words joined by '-', e.g. ban-drop-column): fix the review policy." % rule)
            if wanted not in LEVELS:
                raise FleetError("rules: %s is set to '%s': give one of %s." % (name, level, ", ".join(LEVELS)))
            overrides[name] = wanted
        acknowledge = check_mapping(params.get("acknowledge"), "the acknowledge option")
        return cls(overrides, bool(params.get("block")), acknowledge, params.get("transaction") == "revision")

    def level(self, rule: str) -> str:
        return rule_level(rule, self.overrides)


def _finding(rule: str, statement: str, source: str, line: int | None = None, why: str = "", fix: str = "", sql: bool = True) -> dict[str, Any]:
    known = RULES.get(rule)
    text = " ".join(statement.split())
    return {
        "rule": rule,
        "severity": None,  # set by the policy
        "table": table_of(text) if sql else None,
        "statement": text if len(text) <= STATEMENT_PREVIEW else text[:STATEMENT_PREVIEW] + "...",
        "line": line,
        "why": known.why if known else (" ".join(why.split()) or "squawk's rule %s." % rule),
        "fix": rule_fix(rule, fix),
        "source": source,
        "uncertain": None,
        "acknowledged": False,
        "acknowledgement": None,
        "acknowledged_by": None,
    }


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
        if _version_bookkeeping(statement):
            continue  # CREATE TABLE / INSERT / UPDATE alembic_version: Alembic's, not the revision's
        count = statement.count("\n") + 1
        spans.append((line, line + count - 1, statement))
        kept.append(statement)
        line += count
    return "\n".join(kept) + "\n", spans


def _version_bookkeeping(statement: str) -> bool:
    return read_statement(statement).table == VERSION_TABLE


def _span_at(spans: Sequence[tuple[int, int, str]], line: int) -> int | None:
    for index, (first, last, _) in enumerate(spans):
        if first <= line <= last:
            return index
    return None


def parse_pg_version(server_version: str | None) -> str | None:
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
        span = _span_at(spans_of[name], line) if line is not None else None
        finding = _finding(
            str(item.get("rule_name") or ""),
            spans_of[name][span][2] if span is not None else "",
            "squawk",
            None if line is None else line + 1,
            why=str(item.get("message") or ""),
            fix=str(item.get("help") or ""),
        )
        finding["span"] = span  # which statement: read (and removed) by _lint_step for the new-table check
        findings[name].append(finding)
    return findings


def statement_findings(sql: str) -> tuple[list[dict[str, Any]], bool]:
    """alembic-fleet's own rules on the revision's statements; and whether it all runs in one transaction.

    Alembic wraps a revision's statements in BEGIN/COMMIT when the dialect has transactional DDL; whatever is
    rendered outside them (an autocommit_block) is not rolled back with the rest.
    """
    statements = [read_statement(s) for s in _statements(sql) if not _is_comment(s)]
    statements = [s for s in statements if s.table != VERSION_TABLE]
    copies = batch_copy_parts(statements)  # batch mode's row copy is how the schema change runs, not a data migration
    wrapped = any(s.kind == TRANSACTION and s.begins for s in statements)
    in_transaction = False
    data: list[str] = []
    schema: list[str] = []
    outside: list[Statement] = []
    for index, statement in enumerate(statements):
        if statement.kind == TRANSACTION:
            in_transaction = statement.begins
            continue
        if (wrapped and not in_transaction) or statement.outside_transaction:
            outside.append(statement)
        elif statement.kind == DATA and index not in copies:
            data.append(statement.text)
        elif statement.kind == SCHEMA:
            schema.append(statement.text)  # a read-only SELECT or a SET is neither data nor schema
    findings: list[dict[str, Any]] = []
    if data and (schema or outside):
        findings.append(_finding("mixed-data-and-schema", data[0], "alembic-fleet"))
    fragile = [s for s in outside if not s.rerunnable]
    if outside and (data or schema or fragile):
        findings.append(_finding("non-transactional", (fragile or outside)[0].text, "alembic-fleet"))
    return findings, not outside


# -- new tables ----------------------------------------------------------------
class NewTables:
    """The tables no one can be using yet: those created earlier in the plan, or every table of a fresh database."""

    def __init__(self, fresh: bool) -> None:
        self.fresh = fresh
        self.created: set[str] = set()
        self.replaced: set[str] = set()  # tables that existed before the plan and were dropped in it

    def walk(self, statements: Sequence[str]) -> list[bool]:
        """For each statement in order, whether the table it works on is new before it runs."""
        new = []
        for text in statements:
            statement = read_statement(text)
            new.append(self.fresh or (statement.table is not None and statement.table in self.created))
            self._apply(statement)
        return new

    def _apply(self, statement: Statement) -> None:
        if statement.creates and not statement.creates_if_missing:
            self.created.add(statement.creates)
        # A batch-mode copy renamed onto the table it rewrites is that table still: its readers are the same.
        rewritten = batch_copy_of(statement.table, statement.renamed_to) and statement.renamed_to in self.replaced
        if statement.renamed_to and statement.table in self.created and not rewritten:
            self.created.add(statement.renamed_to)
        self.replaced.update(table for table in statement.drops if table not in self.created)
        self.created.difference_update(statement.drops)

    def exempt(self, finding: dict[str, Any], new: bool) -> bool:
        return new and new_table_exempt(finding["rule"])

    def describe(self, finding: dict[str, Any]) -> str:
        why = "the database was empty before this run" if self.fresh else "the table is created earlier in this plan"
        on = " on %s" % finding["table"] if finding["table"] else ""
        return "%s%s: %s, so nothing can be blocked" % (finding["rule"], on, why)


# -- one revision ------------------------------------------------------------
def downgrade_findings(path: str) -> tuple[str, list[str], list[dict[str, Any]]]:
    verdict = classify_downgrade(path)
    reasons = list(verdict.reasons)
    findings: list[dict[str, Any]] = []
    rule = _DOWNGRADE_RULES.get(verdict.kind)
    if rule is not None:
        finding = _finding(rule, "", "alembic-fleet")
        finding["why"] = "%s (%s)" % (finding["why"].rstrip("."), "; ".join(reasons))
        findings.append(finding)
    return verdict.kind, reasons, findings


def _operation_findings(path: str, tables: NewTables) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    """The findings of upgrade()'s operations, and those left out because their table is new."""
    review = review_upgrade(path, tables.created)
    # Reviewed again as if the plan had created nothing, to list what the plan's new tables silenced.
    silenced = [item for item in review_upgrade(path).findings if item not in review.findings] if tables.created else []
    tables.created = set(review.new_tables)
    findings: list[dict[str, Any]] = []
    skipped = [_operation_finding(item) for item in silenced]
    for item in review.findings:
        finding = _operation_finding(item)
        (skipped if tables.exempt(finding, tables.fresh) else findings).append(finding)
    transactional = not any(f["rule"] == "non-transactional" for f in findings)
    return findings, skipped, transactional


def _operation_finding(item: OperationFinding) -> dict[str, Any]:
    finding = _finding(item.rule, item.statement, "alembic-fleet (source)", item.line, sql=False)
    finding.update(table=item.table, uncertain=item.uncertain or None)
    return finding


def _sql_findings(sql: str, squawked: list[dict[str, Any]], tables: NewTables, path: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    """The findings of the rendered SQL, and those left out because their table is new."""
    _, spans = lintable_sql(sql)
    texts = [text for _, _, text in spans]
    before = set(tables.created)
    new = tables.walk(texts)
    copies = batch_copy_parts([read_statement(text) for text in texts])
    kept: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for finding in squawked:
        span = finding.pop("span", None)
        if span in copies:
            continue  # the copy's DROP TABLE and RENAME are how batch mode rewrites a table: its operations are judged below
        (skipped if tables.exempt(finding, span is not None and new[span]) else kept).append(finding)
    found, silenced = _batch_findings(path, set(copies.values()), before, kept)
    skipped.extend(silenced)
    for finding in found:
        (skipped if tables.exempt(finding, tables.fresh) else kept).append(finding)
    own, transactional = statement_findings(sql)
    return kept + own, skipped, transactional


def _batch_findings(path: str, rewritten: set[str], before: set[str], found: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What the batch operations on the rewritten tables do, read from upgrade(): the copy's SQL hides it.

    A batch-mode copy that leaves out a column drops it, yet its SQL only shows the columns kept. Findings the SQL
    already gave (same rule, same table) are not repeated. Returns the findings, and those left out because the
    plan created their table earlier.
    """
    if not rewritten:
        return [], []
    seen = {(f["rule"], f["table"]) for f in found}
    kept = [item for item in review_upgrade(path, before).findings if item.table in rewritten]
    every = [item for item in review_upgrade(path).findings if item.table in rewritten] if before else kept
    new = [_operation_finding(item) for item in kept]
    silenced = [_operation_finding(item) for item in every if item not in kept]
    return [f for f in new if (f["rule"], f["table"]) not in seen], silenced


def _render_note(step: Step, note: str | None) -> str:
    if len(step.down_revision) > 1:
        # Offline mode renders from one revision; a merge starts from several. No database is involved here.
        return "merge revision of %s: offline mode cannot render a revision with several parents." % ", ".join(step.down_revision)
    return note or "SQL not rendered."


def _lint_step(
    run: AlembicRun, step: Step, rendered: tuple[str | None, str | None], squawked: list[dict[str, Any]] | None, tables: NewTables
) -> dict[str, Any]:
    """The review of one revision: its rendered SQL's findings (or its operations' from the source when
    it cannot render offline), its downgrade's reversibility, and its acknowledgements; the revision's entry."""
    entry: dict[str, Any] = {"revision": step.revision, "file": os.path.basename(step.path), "message": step.message, "note": None}
    kind, reasons, findings = downgrade_findings(step.path)
    sql, note = rendered
    skipped: list[dict[str, Any]] = []
    if sql is None:
        entry["note"] = "%s Its upgrade() operations were reviewed from the source instead." % _render_note(step, note)
        own, skipped, transactional = _operation_findings(step.path, tables)
    else:
        own, skipped, transactional = _sql_findings(sql, squawked or [], tables, step.path)
        if run.target.dialect != "postgresql":
            entry["note"] = "squawk's rules are written for PostgreSQL; this SQL was rendered for %s: its PostgreSQL-only rules are left out." % (
                run.target.dialect
            )
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
        skipped=[tables.describe(f) for f in skipped],
    )
    return entry


def _lock_held_findings(revisions: Sequence[dict[str, Any]], sqls: Sequence[str | None], per_revision: bool) -> None:
    """Long work while an ACCESS EXCLUSIVE lock taken earlier in the same transaction is held.

    A transaction is the whole plan, or one revision with a transaction per revision; a revision that runs outside
    it (autocommit_block) ends it. A revision whose SQL could not be rendered is not judged (its statements are
    unknown). The lock of a table created in this plan keeps no reader waiting. The long work of the revision that
    took the lock, on that same table, is that revision's own cost (other rules name it): not reported here.
    """
    held: dict[str, tuple[str, str]] = {}  # locked table -> (revision, statement)
    reported: set[str] = set()
    created: set[str] = set()
    for entry, sql in zip(revisions, sqls, strict=True):
        if per_revision or not entry["transactional"]:
            held, reported = {}, set()
        for statement in read_sql(sql) if sql is not None else ():
            if statement.creates:
                created.add(statement.creates)
            waiting = [
                (table, rev, text) for table, (rev, text) in held.items() if (rev != entry["revision"] or table != statement.table) and table not in reported
            ]
            long_work = statement.bulk and statement.table not in created  # work on a table made in this plan is quick
            if long_work and waiting and not _version_bookkeeping(statement.text):
                table, rev, text = waiting[0]
                reported.add(table)  # once per locked table: the first long work that keeps it
                finding = _finding("lock-held-through-long-work", statement.text, "alembic-fleet")
                finding["table"] = table
                finding["why"] = "ACCESS EXCLUSIVE on %s, taken by %s (%s), is held while this runs: every query of %s waits until the %s commits." % (
                    table,
                    rev,
                    _preview(text),
                    table,
                    "revision" if per_revision else "plan",
                )
                entry["findings"].append(finding)
            if statement.exclusive and statement.table and statement.table not in created:
                held.setdefault(statement.table, (entry["revision"], statement.text))
        if not entry["transactional"]:
            held, reported = {}, set()


def drop_other_dialects(revisions: Sequence[dict[str, Any]], dialect: str, policy: ReviewPolicy) -> None:
    """Leave out the findings of rules that do not concern dialect (PostgreSQL's locks on SQLite).

    Those the policy would report are listed as skipped; a rule that is off says nothing either way.
    """
    for entry in revisions:
        kept = []
        for finding in entry["findings"]:
            if rule_applies(finding["rule"], dialect):
                kept.append(finding)
                continue
            if policy.level(finding["rule"]) == OFF:
                continue
            on = " on %s" % finding["table"] if finding["table"] else ""
            only = " and ".join(RULES[finding["rule"]].dialects)
            entry["skipped"].append("%s%s: a rule for %s only, and this database is %s" % (finding["rule"], on, only, dialect))
        entry["findings"] = kept


def _preview(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def apply_policy(entry: dict[str, Any], policy: ReviewPolicy, outside: dict[str, Acknowledgement] | None = None) -> None:
    """Give each finding its level, drop the ones that are off, mark acknowledged ones.

    outside: the revision's acknowledgements from fleet-review.yml and the acknowledge option (rule ->
    acknowledgement); they win over the revision's own fleet_acknowledge. What the source cannot tell (uncertain)
    is never more than a warning.
    """
    own = {rule: Acknowledgement(reason, IN_FILE) for rule, reason in entry["acknowledgements"].items()}
    acknowledged = {**own, **(outside or {})}
    kept = []
    used: set[str] = set()
    for finding in entry["findings"]:
        level = policy.level(finding["rule"])
        if level == OFF:
            continue
        finding["severity"] = WARNING if finding.get("uncertain") and level == ERROR else level
        given = acknowledged.get(finding["rule"])
        if given is not None and finding["rule"] != "invalid-acknowledgement":
            finding.update(acknowledged=True, acknowledgement=given.reason, acknowledged_by=given.source)
            used.add(finding["rule"])
        kept.append(finding)
    entry["findings"] = kept
    entry["acknowledgements"] = {rule: given.reason for rule, given in acknowledged.items()}
    entry["acknowledgement_sources"] = {rule: given.source for rule, given in acknowledged.items()}
    entry["unused_acknowledgements"] = sorted(set(acknowledged) - used)


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
    uncertain = " (uncertain: %s)" % finding["uncertain"] if finding.get("uncertain") else ""
    line = "%s (%s): %s %s%s%s%s - fix: %s" % (
        entry["revision"],
        entry["file"],
        finding["severity"],
        finding["rule"],
        where,
        statement,
        uncertain,
        finding["fix"].rstrip("."),
    )
    if finding["acknowledged"]:
        line += " - acknowledged (%s): %s" % (finding.get("acknowledged_by") or IN_FILE, finding["acknowledgement"])
    return line


def block_message(database: str, review_file: str, blocking: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    """The lines that stop a run: what blocks, then every way out, each on a line of its own."""
    if not blocking:
        return []
    wanted: dict[str, list[str]] = {}
    for entry, finding in blocking:
        wanted.setdefault(entry["revision"], [])
        if finding["rule"] not in wanted[entry["revision"]]:
            wanted[entry["revision"]].append(finding["rule"])
    acknowledge = ", ".join("%s: {%s}" % (rev, ", ".join("%s: <why it is safe>" % rule for rule in rules)) for rev, rules in wanted.items())
    rules = list(dict.fromkeys(rule for names in wanted.values() for rule in names))
    return [
        "%s: the review blocks the upgrade and nothing was changed:" % database,
        *("  %s" % finding_line(entry, finding) for entry, finding in blocking),
        "ways out:",
        "- fix the revision",
        "- acknowledge: add to %s: acknowledge: {%s}" % (review_file, acknowledge),
        "- change the rule's level: fleet_review_rules: {%s}" % ", ".join("%s: warning" % rule for rule in rules),
        "- stop blocking in this environment: fleet_review_block: false",
    ]


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


def acknowledgements_of(run: AlembicRun, policy: ReviewPolicy) -> Acknowledgements:
    """fleet-review.yml beside alembic.ini, then the acknowledge option over it, keyed by full revision ids."""
    path = review_file_path(run.project.config_path)
    ids = run.revision_ids()
    in_file = resolve(read_review_file(path), ids, path, REVIEW_FILE)
    given = resolve(policy.acknowledge, ids, "the acknowledge option", OPTION)
    return merge(in_file, given)


@dataclass
class Review:
    """review_steps' answer: the reviewed revisions, every (revision, finding), the blocking ones and their message."""

    revisions: list[dict[str, Any]]
    findings: list[tuple[dict[str, Any], dict[str, Any]]]
    blocking: list[str]
    block_message: list[str]


def review_steps(
    run: AlembicRun,
    steps: Sequence[Step],
    policy: ReviewPolicy,
    pg_version: str | None,
    binary: str | None = None,
    fresh: bool = False,
    cache: ReviewCache | None = None,
) -> Review:
    """Review each planned step on the open run.

    fresh: the database was empty before this run (no revision recorded, or it does not exist yet), so no table can
    be in use and the findings that need an existing table are left out.
    cache: where the plan's review may already be (review/cache.py): what it keeps is the review before the policy
    and the acknowledgements, which are applied here every time.
    """
    acknowledged = acknowledgements_of(run, policy)  # a bad review file fails before any work
    binary = binary or squawk_binary()
    key = cache.key(run, steps, pg_version, fresh, policy.per_revision, binary) if cache is not None else None
    revisions = cache.get(key) if cache is not None and key is not None else None
    if revisions is None:
        revisions = _review_revisions(run, steps, pg_version, binary, fresh, policy.per_revision)
        if cache is not None and key is not None:
            cache.put(key, revisions)
    drop_other_dialects(revisions, run.target.dialect, policy)
    for entry in revisions:
        apply_policy(entry, policy, acknowledged.get(entry["revision"]))
    findings = [(entry, f) for entry in revisions for f in entry["findings"]]
    blocking = [(entry, f) for entry, f in findings if f["severity"] == ERROR and not f["acknowledged"]]
    message = block_message(run.target.dbname or run.target.label, review_file_path(run.project.config_path), blocking) if policy.block else []
    return Review(revisions, findings, [finding_line(entry, f) for entry, f in blocking], message)


def _review_revisions(run: AlembicRun, steps: Sequence[Step], pg_version: str | None, binary: str, fresh: bool, per_revision: bool) -> list[dict[str, Any]]:
    """The review of each step before any policy: rendered offline, linted, its downgrade classified."""
    # One offline rendering of the whole plan and one squawk run over all of it, not one of each per revision.
    rendered = run.render_steps_sql(steps)
    sqls = {"%s.sql" % step.revision: sql for step, (sql, _) in zip(steps, rendered, strict=True) if sql is not None}
    with tempfile.TemporaryDirectory(prefix="alembic-fleet-lint-") as workdir:
        squawked = run_squawk(binary, sqls, workdir, pg_version)
    tables = NewTables(fresh)
    revisions = [_lint_step(run, step, pair, squawked.get("%s.sql" % step.revision), tables) for step, pair in zip(steps, rendered, strict=True)]
    if not fresh:  # an empty database has no readers to keep waiting
        _lock_held_findings(revisions, [sql for sql, _ in rendered], per_revision)
    return revisions


def lint(params: dict[str, Any], check_mode: bool, want_diff: bool, result: dict[str, Any]) -> None:
    """alembic_lint: the review of the revisions pending to the target, without running them.

    params: url, config, target, offline and from_revision (review without a database), and the ReviewPolicy options.
    Reviews each pending revision's upgrade SQL (squawk and alembic-fleet's rules), its downgrade's reversibility and
    its acknowledgements. Fills result (revisions, summary, report, errors, blocked, block_message, ledger_review);
    raises FleetError when the project, the target or squawk cannot be used."""
    started = time.monotonic()
    policy = ReviewPolicy.from_params(params)
    binary = squawk_binary()
    run = open_run(params)
    result["database"] = run.target.label
    offline = bool(params.get("offline"))
    result["offline"] = offline
    pg_version = None
    with run.session():
        heads = run.script_heads()
        if offline:
            current = _offline_start(run, params.get("from_revision"))
            fresh = not current  # reviewed from base: a fresh install
        else:
            probe = run.probe()
            current = list(probe.current)
            fresh = not probe.exists or not current
            if not probe.exists:
                result["note"] = "database %s does not exist yet: every revision up to the target is reviewed." % run.target.label
            elif run.target.dialect == "postgresql":
                pg_version = parse_pg_version(probe.server_version)
        result.update(current=current, fresh=fresh)
        spec_text = given(params, "target", DEFAULT_TARGET)
        if len(heads) > 1 and spec_text == "head":
            spec_text = "heads"
        spec = run.parse(spec_text, "upgrade")
        result["target"] = spec.given
        steps = run.plan("upgrade", spec, current)
        cache = ReviewCache(params.get("cache"))
        review = review_steps(run, steps, policy, pg_version, binary, fresh=fresh, cache=cache)
    findings = review.findings
    result.update(
        revisions=review.revisions,
        pending_count=len(steps),
        summary={
            "errors": sum(1 for _, f in findings if f["severity"] == ERROR and not f["acknowledged"]),
            "warnings": sum(1 for _, f in findings if f["severity"] != ERROR and not f["acknowledged"]),
            "acknowledged": sum(1 for _, f in findings if f["acknowledged"]),
        },
        report=[finding_line(entry, f) for entry, f in findings],
        errors=review.blocking,
        blocked=bool(review.blocking) and policy.block,
        block_message=review.block_message,
        review_file=review_file_path(run.project.config_path),
        ledger_review=ledger_review(review.revisions),
        pg_version=pg_version,
        cached=cache.hits > 0,
        duration=elapsed(started),
    )

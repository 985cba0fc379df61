# -*- coding: utf-8 -*-
# Reversibility of a revision's downgrade(), read from the revision file with
# the ast module so a rollback can be refused or allowed before anything runs.
# Nothing is imported or executed: only the source is read. Pure Python: no
# Alembic or SQLAlchemy import.
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.fleet_common import FleetError

REVERSIBLE, LOSSY, IRREVERSIBLE = "reversible", "lossy", "irreversible"

# SQL that throws rows or columns away when found in a literal in downgrade().
_LOSSY_SQL = re.compile(r"\bDROP\s+TABLE\b|\bDROP\s+COLUMN\b|\bTRUNCATE\b|\bDELETE\s+FROM\b", re.IGNORECASE)
_SQL_CALLS = ("execute", "exec_driver_sql", "text")
_SQL_PREVIEW = 80


@dataclass(frozen=True)
class Reversibility:
    """How safely downgrade() undoes its revision, with one line per finding."""

    kind: str  # REVERSIBLE, LOSSY or IRREVERSIBLE
    reasons: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "reasons": list(self.reasons)}


@dataclass
class _Findings:
    irreversible: list[str] = field(default_factory=list)
    lossy: list[str] = field(default_factory=list)

    def verdict(self) -> Reversibility:
        reasons = tuple(dict.fromkeys(self.irreversible + self.lossy))  # ordered, without repeats
        if self.irreversible:
            return Reversibility(IRREVERSIBLE, reasons)
        if self.lossy:
            return Reversibility(LOSSY, reasons)
        return Reversibility(REVERSIBLE, ())


def classify_downgrade(path: str) -> Reversibility:
    """Classify the downgrade() of the revision file at path."""
    try:
        with open(path, "rb") as handle:
            source = handle.read()
    except OSError as exc:
        raise FleetError(
            "revision file %s cannot be read (%s): check the project's versions directory." % (path, exc.strerror or exc)
        ) from None
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError) as exc:
        return Reversibility(IRREVERSIBLE, (_syntax_reason(exc),))
    return _classify_module(tree)


def _syntax_reason(exc: SyntaxError | ValueError) -> str:
    if isinstance(exc, SyntaxError):
        where = " at line %s" % exc.lineno if exc.lineno else ""
        detail = "SyntaxError: %s%s" % (exc.msg, where)
    else:
        detail = "%s: %s" % (type(exc).__name__, exc)
    return "the revision file does not parse (%s): its downgrade() cannot be reviewed or run" % detail


def _classify_module(tree: ast.Module) -> Reversibility:
    functions = {
        node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    downgrade = functions.get("downgrade")
    if downgrade is None:
        return Reversibility(IRREVERSIBLE, ("the revision has no downgrade() function",))
    empty = _empty_body(downgrade.body)
    if empty:
        reason = "downgrade() is empty (%s): the schema would stay while the version goes back" % empty
        return Reversibility(IRREVERSIBLE, (reason,))
    findings = _Findings()
    reviewer = _Reviewer(findings, _module_constants(tree), functions, "downgrade", follow=True)
    reviewer.review(downgrade)
    return findings.verdict()


def _empty_body(body: list[ast.stmt]) -> str:
    """'pass', '...' or 'only a docstring' when body does nothing, else ''."""
    kinds: list[str] = []
    for statement in body:
        if isinstance(statement, ast.Pass):
            kinds.append("pass")
        elif isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            value = statement.value.value
            if value is Ellipsis:
                kinds.append("...")
            elif isinstance(value, str):
                continue
            else:
                return ""
        else:
            return ""
    return ", ".join(dict.fromkeys(kinds)) or "only a docstring"


def _module_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level NAME = "text" assignments, to resolve op.drop_table(TABLE)."""
    constants: dict[str, str] = {}
    targets: list[ast.expr]
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            for target in targets:
                if isinstance(target, ast.Name):
                    constants[target.id] = value.value
    return constants


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


class _Reviewer(ast.NodeVisitor):
    """Walks one function body, recording what would lose data or cannot run."""

    def __init__(
        self,
        findings: _Findings,
        constants: dict[str, str],
        functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef],
        where: str,
        follow: bool,
    ) -> None:
        self.findings = findings
        self.constants = constants
        self.functions = functions
        self.where = where
        self.follow = follow
        self.batches: dict[str, str | None] = {}  # batch_op name -> table
        self.followed: set[str] = set()

    # -- entry and bookkeeping --------------------------------------------
    def review(self, function: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for statement in function.body:
            self.visit(statement)

    def _lossy(self, text: str) -> None:
        suffix = "" if self.where == "downgrade" else " (in %s(), called by downgrade())" % self.where
        self.findings.lossy.append(text + suffix)

    def _who(self) -> str:
        return "downgrade()" if self.where == "downgrade" else "%s(), called by downgrade()," % self.where

    # -- literals ---------------------------------------------------------
    def _text(self, node: ast.expr | None) -> str | None:
        """The string a node stands for, when it is known without running code."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return self.constants.get(node.id)
        if isinstance(node, ast.Call) and _call_name(node.func) == "f" and node.args:
            return self._text(node.args[0])  # op.f("ix_name") only marks a final name
        return None

    def _argument(self, call: ast.Call, position: int | None, *keywords: str) -> ast.expr | None:
        """The argument at position, or passed by one of the keywords."""
        for item in call.keywords:
            if item.arg in keywords:
                return item.value
        if position is not None and len(call.args) > position:
            return call.args[position]
        return None

    def _qualified(self, call: ast.Call, table: str | None) -> str | None:
        schema = self._text(self._argument(call, None, "schema"))
        return "%s.%s" % (schema, table) if schema and table else table

    # -- statements -------------------------------------------------------
    def visit_With(self, node: ast.With) -> None:
        self._visit_with(node)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> None:
        self._visit_with(node)

    def _visit_with(self, node: ast.With | ast.AsyncWith) -> None:
        saved = dict(self.batches)
        for item in node.items:
            self.visit(item.context_expr)
            call = item.context_expr
            if (
                isinstance(call, ast.Call)
                and _call_name(call.func) == "batch_alter_table"
                and isinstance(item.optional_vars, ast.Name)
            ):
                table = self._text(self._argument(call, 0, "table_name"))
                self.batches[item.optional_vars.id] = self._qualified(call, table)
        for statement in node.body:
            self.visit(statement)
        self.batches = saved

    def visit_Raise(self, node: ast.Raise) -> None:
        self.findings.irreversible.append("%s raises %s" % (self._who(), _describe_raise(node)))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node.func)
        handler = {
            "drop_table": self._drop_table,
            "drop_column": self._drop_column,
            "alter_column": self._alter_column,
        }.get(name)
        if handler is not None:
            handler(node)
        elif name in _SQL_CALLS:
            self._sql(node)
        elif isinstance(node.func, ast.Name):
            self._follow(node.func.id)
        self.generic_visit(node)

    # -- operations -------------------------------------------------------
    def _batch_table(self, call: ast.Call) -> tuple[bool, str | None]:
        """(True, table) when call is made on a batch_alter_table's batch_op."""
        receiver = call.func.value if isinstance(call.func, ast.Attribute) else None
        if isinstance(receiver, ast.Name) and receiver.id in self.batches:
            return True, self.batches[receiver.id]
        return False, None

    def _table_and_column(self, call: ast.Call) -> tuple[str | None, str | None]:
        in_batch, table = self._batch_table(call)
        if in_batch:
            return table, self._text(self._argument(call, 0, "column_name"))
        table = self._qualified(call, self._text(self._argument(call, 0, "table_name")))
        return table, self._text(self._argument(call, 1, "column_name"))

    def _drop_table(self, call: ast.Call) -> None:
        table = self._qualified(call, self._text(self._argument(call, 0, "table_name")))
        self._lossy("drops table %s (its rows are lost)" % table if table else "drops a table (its rows are lost)")

    def _drop_column(self, call: ast.Call) -> None:
        self._lossy("drops %s" % _column_label(*self._table_and_column(call)))

    def _alter_column(self, call: ast.Call) -> None:
        if not any(item.arg == "type_" for item in call.keywords):
            return
        label = _column_label(*self._table_and_column(call)).replace("column ", "", 1)
        self._lossy("changes the type of %s: values may be truncated or fail to convert" % label)

    def _sql(self, call: ast.Call) -> None:
        node = self._argument(call, 0, "sqltext", "statement", "text")
        if isinstance(node, ast.Call) and _call_name(node.func) in _SQL_CALLS:
            return  # op.execute(sa.text("...")): the inner call is reviewed on its own
        for statement in _lossy_statements(self._text(node) or ""):
            self._lossy('runs SQL that deletes data: "%s"' % statement)

    def _follow(self, name: str) -> None:
        """Review a function of the same module called from downgrade(), one level deep."""
        function = self.functions.get(name)
        if not self.follow or function is None or name == "downgrade" or name in self.followed:
            return
        self.followed.add(name)
        helper = _Reviewer(self.findings, self.constants, self.functions, name, follow=False)
        helper.review(function)


def _column_label(table: str | None, column: str | None) -> str:
    if table and column:
        return "column %s.%s" % (table, column)
    if column:
        return "column %s of a table" % column
    if table:
        return "a column of %s" % table
    return "a column"


def _lossy_statements(sql: str) -> list[str]:
    """The statements of sql that lose data, each cut to its first 80 characters."""
    found: list[str] = []
    for statement in sql.split(";"):
        text = " ".join(statement.split())
        if _LOSSY_SQL.search(text):
            found.append(text if len(text) <= _SQL_PREVIEW else text[:_SQL_PREVIEW] + "...")
    return found


def _describe_raise(node: ast.Raise) -> str:
    exc = node.exc
    if exc is None:
        return "(a bare raise)"
    target = exc.func if isinstance(exc, ast.Call) else exc
    name = ast.unparse(target)
    if isinstance(exc, ast.Call) and exc.args and isinstance(exc.args[0], ast.Constant) and isinstance(exc.args[0].value, str):
        message = " ".join(exc.args[0].value.split())
        return "%s (%s)" % (name, message[:_SQL_PREVIEW])
    return name

# -*- coding: utf-8 -*-
# Reversibility of a revision's downgrade(), read from the revision file with
# the ast module so a rollback can be refused or allowed before anything runs:
# only a certain loss (lossy) or a raise on every path (irreversible) is
# proven; what the source cannot tell (a raise under a condition, a call that
# may refuse) is unknown, with the reason. Nothing is imported or executed:
# only the source is read (SQL literals with pglast). No Alembic or SQLAlchemy.
# The upgrade's hazards are the other analysis, in review.upgrade.
from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.fleet.alembic.source import Functions, SourceVisitor, call_name, module_constants, module_functions, parse_detail, read_source
from ansible.module_utils.fleet.review.sql import read_sql

REVERSIBLE, LOSSY, IRREVERSIBLE, UNKNOWN = "reversible", "lossy", "irreversible", "unknown"

_SQL_CALLS = ("execute", "exec_driver_sql", "text")
_SQL_PREVIEW = 80
# Words in the name of a function downgrade() calls but cannot be read (imported) that say it may refuse.
_REFUSING_WORDS = ("irreversible", "notimplemented", "not_implemented", "unsupported", "refuse", "forbid", "abort", "fail", "raise", "cannot")


@dataclass(frozen=True)
class Reversibility:
    """How safely downgrade() undoes its revision, with one line per finding."""

    kind: str  # REVERSIBLE, LOSSY, IRREVERSIBLE or UNKNOWN
    reasons: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "reasons": list(self.reasons)}


@dataclass
class _Findings:
    raises: list[str] = field(default_factory=list)  # every raise found, on any path
    lossy: list[str] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)  # calls that may refuse
    always_raises: bool = False  # a raise on every path of downgrade()

    def verdict(self) -> Reversibility:
        if self.always_raises:
            raises = self.raises or ["downgrade() raises on every path (in a function it calls)"]
            return Reversibility(IRREVERSIBLE, _unique(raises + self.lossy))
        conditional = ["%s, only under a condition: whether it refuses cannot be told before it runs" % reason for reason in self.raises]
        if self.lossy:
            return Reversibility(LOSSY, _unique(self.lossy + conditional + self.uncertain))
        if conditional or self.uncertain:
            return Reversibility(UNKNOWN, _unique(conditional + self.uncertain))
        return Reversibility(REVERSIBLE, ())


def _unique(reasons: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(reasons))  # ordered, without repeats


def classify_downgrade(path: str) -> Reversibility:
    """Classify the downgrade() of the revision file at path."""
    source = read_source(path)
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError) as exc:
        return Reversibility(IRREVERSIBLE, (_syntax_reason(exc),))
    return _classify_module(tree)


def _syntax_reason(exc: SyntaxError | ValueError) -> str:
    return "the revision file does not parse (%s): its downgrade() cannot be reviewed or run" % parse_detail(exc)


def _classify_module(tree: ast.Module) -> Reversibility:
    functions = module_functions(tree)
    downgrade = functions.get("downgrade")
    if downgrade is None:
        return Reversibility(IRREVERSIBLE, ("the revision has no downgrade() function",))
    empty = _empty_body(downgrade.body)
    if empty:
        upgrade = functions.get("upgrade")
        if upgrade is None or _empty_body(upgrade.body):
            return Reversibility(REVERSIBLE, ())  # a merge point or a no-op: nothing to undo
        reason = "downgrade() is empty (%s) while upgrade() is not: the schema would stay while the version goes back" % empty
        return Reversibility(IRREVERSIBLE, (reason,))
    findings = _Findings(always_raises=_always_raises(downgrade.body, functions, {"downgrade"}))
    reviewer = _Reviewer(findings, module_constants(tree), functions, "downgrade", follow=True)
    reviewer.review(downgrade)
    return findings.verdict()


def _always_raises(body: list[ast.stmt], functions: Functions, seen: set[str]) -> bool:
    """Whether running body raises on every path: a raise no condition, return or loop can avoid."""
    for statement in body:
        if _statement_raises(statement, functions, seen):
            return True
        if any(isinstance(node, (ast.Return, ast.Break, ast.Continue)) for node in _own_nodes(statement)):
            return False  # a path may leave before the raise
    return False


def _statement_raises(statement: ast.stmt, functions: Functions, seen: set[str]) -> bool:
    if isinstance(statement, ast.Raise):
        return True
    if isinstance(statement, ast.Assert):
        return isinstance(statement.test, ast.Constant) and not statement.test.value
    if isinstance(statement, ast.If):
        if isinstance(statement.test, ast.Constant):  # if True: / if 0: - only one branch can run
            return _always_raises(statement.body if statement.test.value else statement.orelse, functions, seen)
        return _always_raises(statement.body, functions, seen) and _always_raises(statement.orelse, functions, seen)
    if isinstance(statement, (ast.With, ast.AsyncWith)):
        return _always_raises(statement.body, functions, seen)
    if isinstance(statement, (ast.Try, ast.TryStar)):
        if _always_raises(statement.finalbody, functions, seen):
            return True
        handled = all(_always_raises(handler.body, functions, seen) for handler in statement.handlers)
        return _always_raises(statement.body, functions, seen) and handled
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call) and isinstance(statement.value.func, ast.Name):
        name = statement.value.func.id
        helper = functions.get(name)
        if helper is not None and name not in seen:
            return _always_raises(helper.body, functions, seen | {name})
    return False


def _own_nodes(statement: ast.stmt) -> list[ast.AST]:
    """The nodes of statement, without those of functions or classes defined inside it."""
    found: list[ast.AST] = []
    stack: list[ast.AST] = [statement]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(child for child in ast.iter_child_nodes(node) if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)))
    return found


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


class _Reviewer(SourceVisitor):
    """Walks one function body of downgrade(), recording what would lose data or cannot run."""

    def __init__(self, findings: _Findings, constants: dict[str, str], functions: Functions, where: str, follow: bool) -> None:
        super().__init__(constants, functions)
        self.findings = findings
        self.where = where
        self.follow = follow
        self.followed: set[str] = set()

    def _lossy(self, text: str) -> None:
        suffix = "" if self.where == "downgrade" else " (in %s(), called by downgrade())" % self.where
        self.findings.lossy.append(text + suffix)

    def _who(self) -> str:
        return "downgrade()" if self.where == "downgrade" else "%s(), called by downgrade()," % self.where

    def visit_Raise(self, node: ast.Raise) -> None:
        self.findings.raises.append("%s raises %s" % (self._who(), _describe_raise(node)))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = call_name(node.func)
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
        if name not in self.functions and _may_refuse(name):
            self.findings.uncertain.append("%s calls %s(), which cannot be read here and may refuse" % (self._who(), name))
        self.generic_visit(node)

    # -- operations -------------------------------------------------------
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
        if isinstance(node, ast.Call) and call_name(node.func) in _SQL_CALLS:
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
    for statement in read_sql(sql):
        text = statement.text
        if statement.loses_data:
            found.append(text if len(text) <= _SQL_PREVIEW else text[:_SQL_PREVIEW] + "...")
    return found


def _may_refuse(name: str) -> bool:
    if name.endswith(("Error", "Exception")):
        return False  # building an exception refuses nothing; its raise is reviewed on its own
    lowered = name.lower()
    return any(word in lowered for word in _REFUSING_WORDS)


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

# -*- coding: utf-8 -*-
# Reversibility of a revision's downgrade(), read from the revision file with
# the ast module so a rollback can be refused or allowed before anything runs:
# only a certain loss (lossy) or a raise on every path (irreversible) is
# proven; what the source cannot tell (a raise under a condition, a call that
# may refuse) is unknown, with the reason. And the hazards of its upgrade()
# operations, the linter's fallback when a revision cannot be rendered to SQL
# offline, with its fleet_acknowledge. Nothing is imported or executed: only
# the source is read (SQL literals with pglast). No Alembic or SQLAlchemy.
from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.fleet_common import FleetError
from ansible.module_utils.fleet_rules import RULES
from ansible.module_utils.fleet_sql import DATA, READ, SCHEMA, read_sql

REVERSIBLE, LOSSY, IRREVERSIBLE, UNKNOWN = "reversible", "lossy", "irreversible", "unknown"

_SQL_CALLS = ("execute", "exec_driver_sql", "text")
_SQL_PREVIEW = 80
# Words in the name of a function downgrade() calls but cannot be read (imported) that say it may refuse.
_REFUSING_WORDS = ("irreversible", "notimplemented", "not_implemented", "unsupported", "refuse", "forbid", "abort", "fail", "raise", "cannot")

_Functions = dict[str, "ast.FunctionDef | ast.AsyncFunctionDef"]


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
    source = _read_source(path)
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError) as exc:
        return Reversibility(IRREVERSIBLE, (_syntax_reason(exc),))
    return _classify_module(tree)


def _read_source(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise FleetError("revision file %s cannot be read (%s): check the project's versions directory." % (path, exc.strerror or exc)) from None


def _parse_detail(exc: SyntaxError | ValueError) -> str:
    if isinstance(exc, SyntaxError):
        where = " at line %s" % exc.lineno if exc.lineno else ""
        detail = "SyntaxError: %s%s" % (exc.msg, where)
    else:
        detail = "%s: %s" % (type(exc).__name__, exc)
    return " ".join(detail.split())


def _syntax_reason(exc: SyntaxError | ValueError) -> str:
    return "the revision file does not parse (%s): its downgrade() cannot be reviewed or run" % _parse_detail(exc)


def _classify_module(tree: ast.Module) -> Reversibility:
    functions = _module_functions(tree)
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
    reviewer = _Reviewer(findings, _module_constants(tree), functions, "downgrade", follow=True)
    reviewer.review(downgrade)
    return findings.verdict()


def _always_raises(body: list[ast.stmt], functions: _Functions, seen: set[str]) -> bool:
    """Whether running body raises on every path: a raise no condition, return or loop can avoid."""
    for statement in body:
        if _statement_raises(statement, functions, seen):
            return True
        if any(isinstance(node, (ast.Return, ast.Break, ast.Continue)) for node in _own_nodes(statement)):
            return False  # a path may leave before the raise
    return False


def _statement_raises(statement: ast.stmt, functions: _Functions, seen: set[str]) -> bool:
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


def _module_functions(tree: ast.Module) -> _Functions:
    return {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


class _Source(ast.NodeVisitor):
    """Walks one function body, knowing its literals and its batch_alter_table tables."""

    def __init__(self, constants: dict[str, str], functions: _Functions) -> None:
        self.constants = constants
        self.functions = functions
        self.batches: dict[str, str | None] = {}  # batch_op name -> table

    def review(self, function: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for statement in function.body:
            self.visit(statement)

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
            if isinstance(call, ast.Call) and _call_name(call.func) == "batch_alter_table" and isinstance(item.optional_vars, ast.Name):
                table = self._text(self._argument(call, 0, "table_name"))
                self.batches[item.optional_vars.id] = self._qualified(call, table)
        for statement in node.body:
            self.visit(statement)
        self.batches = saved

    # -- tables and columns -------------------------------------------------
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


class _Reviewer(_Source):
    """Walks one function body of downgrade(), recording what would lose data or cannot run."""

    def __init__(self, findings: _Findings, constants: dict[str, str], functions: _Functions, where: str, follow: bool) -> None:
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


# == upgrade(): the operations' hazards, and fleet_acknowledge ==================
ACKNOWLEDGE = "fleet_acknowledge"
_STATEMENT_PREVIEW = 120
# Schema operations of op and batch_op that have no rule of their own here.
_OTHER_SCHEMA_OPERATIONS = frozenset({"create_primary_key", "create_exclude_constraint", "drop_constraint", "create_table_comment", "drop_table_comment"})
# Methods of op that are not operations themselves.
_NOT_OPERATIONS = frozenset({"get_bind", "get_context", "f", "inline_literal", "batch_alter_table", "implementation_for", "register_operation"})
# Column arguments that give existing rows a value on the server.
_SERVER_VALUES = frozenset({"Identity", "Computed", "FetchedValue", "DefaultClause"})
# Calls given the connection only to read the catalog (sa.inspect(bind).has_table(...)).
_CATALOG_READS = frozenset({"inspect"})
# SQLAlchemy Core statements that change rows: op.execute(table.update().values(...)).
_CORE_DML = frozenset({"insert", "update", "delete"})
# SQLAlchemy Core statements that only read: bind.execute(sa.select(...)).
_CORE_READS = frozenset({"select", "exists"})
# What the connection is asked to run SQL with.
_CONNECTION_SQL = frozenset({"execute", "exec_driver_sql", "scalar", "scalars"})


@dataclass(frozen=True)
class OperationFinding:
    """One hazardous operation of upgrade(), named by its rule (a key of fleet_rules.RULES)."""

    rule: str
    table: str | None  # schema-qualified when a schema= is given
    statement: str  # the operation's source, whitespace-collapsed, cut to 120 characters + "..."
    line: int  # in the revision file
    uncertain: str = ""  # why the source cannot tell whether the hazard is real (decided at run time); "" when certain

    @property
    def why(self) -> str:
        return RULES[self.rule].why

    @property
    def fix(self) -> str:
        return RULES[self.rule].fix


@dataclass(frozen=True)
class UpgradeReview:
    """The findings of a revision's upgrade() and its acknowledgements (rule -> reason)."""

    findings: tuple[OperationFinding, ...] = ()
    acknowledgements: dict[str, str] = field(default_factory=dict)
    acknowledgement_error: str | None = None  # one line when fleet_acknowledge is not valid
    new_tables: frozenset[str] = frozenset()  # the tables new after upgrade(): those given and those it creates


def review_upgrade(path: str, new_tables: Iterable[str] = ()) -> UpgradeReview:
    """Review the upgrade() operations of the revision file at path, and read its fleet_acknowledge.

    new_tables are tables created earlier in the same plan: no finding that needs an existing table is made on them.
    """
    tree, error = _parse_revision(path)
    if tree is None:
        return UpgradeReview((), {}, error, frozenset(new_tables))
    acknowledgements, error = _acknowledgements(tree)
    findings, created = _review_upgrade_module(tree, set(new_tables))
    return UpgradeReview(findings, acknowledgements, error, frozenset(created))


def read_acknowledgements(path: str) -> tuple[dict[str, str], str | None]:
    """The revision's fleet_acknowledge (rule -> reason) and a one-line error, None when it is valid or absent."""
    tree, error = _parse_revision(path)
    if tree is None:
        return {}, error
    return _acknowledgements(tree)


def _parse_revision(path: str) -> tuple[ast.Module | None, str | None]:
    source = _read_source(path)
    try:
        return ast.parse(source, filename=path), None
    except (SyntaxError, ValueError) as exc:
        reason = "the revision file does not parse (%s): its upgrade() and %s cannot be reviewed"
        return None, reason % (_parse_detail(exc), ACKNOWLEDGE)


# -- fleet_acknowledge ---------------------------------------------------------
def _acknowledgements(tree: ast.Module) -> tuple[dict[str, str], str | None]:
    """fleet_acknowledge as rule -> reason (both stripped), or {} and why it is not valid."""
    binding = _acknowledgement_binding(tree)
    if binding is None:
        return {}, None
    line, value = binding
    where = "%s (line %d)" % (ACKNOWLEDGE, line)
    if value is None:
        return {}, '%s is not assigned a literal dict: write it as %s = {"rule-name": "why this is safe here"}' % (
            where,
            ACKNOWLEDGE,
        )
    try:
        literal = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return {}, '%s is not a literal: write it as {"rule-name": "why this is safe here"}' % where
    if not isinstance(literal, dict):
        return {}, "%s is a %s, not a dict of rule names to reasons" % (where, type(literal).__name__)
    acknowledgements: dict[str, str] = {}
    for rule, reason in literal.items():
        problem = _acknowledgement_problem(rule, reason)
        if problem:
            return {}, "%s %s" % (where, problem)
        acknowledgements[rule.strip()] = reason.strip()
    return acknowledgements, None


def _acknowledgement_problem(rule: object, reason: object) -> str:
    """What is wrong with one entry of fleet_acknowledge, '' when nothing is."""
    if not isinstance(rule, str) or not rule.strip():
        return "has a key that is not a rule name (a non-empty string): %s" % _short_repr(rule)
    if not isinstance(reason, str):
        return "gives %s a reason that is not a string (%s)" % (_short_repr(rule), type(reason).__name__)
    if not reason.strip():
        return "gives %s an empty reason: say why the finding is safe here" % _short_repr(rule)
    return ""


def _acknowledgement_binding(tree: ast.Module) -> tuple[int, ast.expr | None] | None:
    """(line, value) of the last module-level binding of fleet_acknowledge; value None unless a plain assignment."""
    found: tuple[int, ast.expr | None] | None = None
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == ACKNOWLEDGE:
                    found = (node.lineno, node.value)
                elif _binds(target, ACKNOWLEDGE):
                    found = (node.lineno, None)  # unpacked from something: not a literal of its own
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and _binds(node.target, ACKNOWLEDGE):
            value = node.value if isinstance(node, ast.AnnAssign) else None
            found = (node.lineno, value)
    return found


def _binds(target: ast.expr, name: str) -> bool:
    return any(isinstance(node, ast.Name) and node.id == name for node in ast.walk(target))


def _short_repr(value: object) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:60] + "..."


# -- upgrade() -----------------------------------------------------------------
def _review_upgrade_module(tree: ast.Module, new_tables: set[str]) -> tuple[tuple[OperationFinding, ...], set[str]]:
    functions = _module_functions(tree)
    upgrade = functions.get("upgrade")
    if upgrade is None:
        return (), new_tables
    state = _UpgradeState(created=new_tables)
    _UpgradeReviewer(state, _module_constants(tree), functions, follow=True, autocommit=False).review(upgrade)
    return state.verdict(), state.created


@dataclass
class _Operation:
    call: ast.Call
    table: str | None
    autocommit: bool  # inside an autocommit_block()
    schema: bool = False  # changes the schema
    data: bool = False  # moves data (or uses the connection)


@dataclass
class _UpgradeState:
    """What upgrade() and the helpers it calls do, in the order they do it."""

    findings: list[OperationFinding] = field(default_factory=list)
    operations: list[_Operation] = field(default_factory=list)
    created: set[str] = field(default_factory=set)  # tables op.create_table made earlier
    blocks: list[ast.expr] = field(default_factory=list)  # the autocommit_block() calls
    followed: set[str] = field(default_factory=set)

    def add(self, rule: str, table: str | None, node: ast.expr, uncertain: str = "") -> None:
        self.findings.append(OperationFinding(rule, table, _statement(node), node.lineno, uncertain))

    def verdict(self) -> tuple[OperationFinding, ...]:
        self._mixed_data_and_schema()
        self._outside_autocommit()
        return tuple(sorted(dict.fromkeys(self.findings), key=lambda finding: finding.line))

    def _mixed_data_and_schema(self) -> None:
        data = [operation for operation in self.operations if operation.data]
        if data and any(operation.schema for operation in self.operations):
            self.add("mixed-data-and-schema", data[0].table, data[0].call)

    def _outside_autocommit(self) -> None:
        """One finding when autocommit blocks are only part of upgrade()'s work."""
        if not self.blocks or all(operation.autocommit for operation in self.operations):
            return
        inside = [operation for operation in self.operations if operation.autocommit]
        if inside:
            self.add("non-transactional", inside[0].table, inside[0].call)
        else:
            self.add("non-transactional", None, self.blocks[0])


class _UpgradeReviewer(_Source):
    """Walks one function body of upgrade() (or a helper it calls), recording operations and hazards."""

    def __init__(self, state: _UpgradeState, constants: dict[str, str], functions: _Functions, follow: bool, autocommit: bool) -> None:
        super().__init__(constants, functions)
        self.state = state
        self.follow = follow
        self.autocommit = autocommit
        self.binds: set[str] = set()  # names bound to op.get_bind() (or a connection from it)
        self.handlers: dict[str, Callable[[ast.Call], None]] = {
            "create_table": self._create_table,
            "drop_table": self._drop_table,
            "rename_table": self._rename_table,
            "add_column": self._add_column,
            "drop_column": self._drop_column,
            "alter_column": self._alter_column,
            "create_index": self._create_index,
            "drop_index": self._drop_index,
            "create_foreign_key": self._create_foreign_key,
            "create_check_constraint": self._create_check_constraint,
            "create_unique_constraint": self._create_unique_constraint,
            "bulk_insert": self._bulk_insert,
        }

    # -- statements -------------------------------------------------------
    def _visit_with(self, node: ast.With | ast.AsyncWith) -> None:
        blocks = [
            item.context_expr for item in node.items if isinstance(item.context_expr, ast.Call) and _call_name(item.context_expr.func) == "autocommit_block"
        ]
        for item in node.items:
            if isinstance(item.optional_vars, ast.Name) and self._is_connection(item.context_expr):
                self.binds.add(item.optional_vars.id)
        self.state.blocks.extend(blocks)
        saved = self.autocommit
        self.autocommit = saved or bool(blocks)
        super()._visit_with(node)
        self.autocommit = saved

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        self._bind(node.targets, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.generic_visit(node)
        self._bind([node.target], node.value)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.generic_visit(node)
        self._bind([node.target], node.value)

    def _bind(self, targets: list[ast.expr], value: ast.expr | None) -> None:
        if value is not None and self._is_connection(value):
            self.binds.update(target.id for target in targets if isinstance(target, ast.Name))

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node.func)
        if isinstance(node.func, ast.Name) and name in self.functions:
            if self._uses_connection(node):
                self._operation(node, None, data=True)  # helper(op.get_bind())
            self._follow(name)
        elif name in self.handlers:
            self.handlers[name](node)
        elif name == "execute" and self._runs_sql(node):
            self._execute(node)
        elif name in _CONNECTION_SQL and self._on_connection(node):
            self._connection_sql(node)
        elif self._uses_connection(node):
            self._operation(node, None, data=True)
        elif name in _OTHER_SCHEMA_OPERATIONS:
            self._operation(node, None, schema=True)
        elif self._on_op(node) and name not in _NOT_OPERATIONS:
            self._operation(node, None)
        self.generic_visit(node)

    def _follow(self, name: str) -> None:
        """Review a function of the same module called from upgrade(), one level deep."""
        function = self.functions.get(name)
        if not self.follow or function is None or name == "upgrade" or name in self.state.followed:
            return
        self.state.followed.add(name)
        helper = _UpgradeReviewer(self.state, self.constants, self.functions, follow=False, autocommit=self.autocommit)
        helper.review(function)

    # -- receivers ----------------------------------------------------------
    def _on_op(self, call: ast.Call) -> bool:
        """True when call is a method of op (alembic.op) or of a batch_op."""
        if not isinstance(call.func, ast.Attribute):
            return False
        receiver = call.func.value
        if isinstance(receiver, ast.Name):
            return receiver.id == "op" or receiver.id in self.batches
        return isinstance(receiver, ast.Attribute) and receiver.attr == "op"

    def _runs_sql(self, call: ast.Call) -> bool:
        """op.execute, batch_op.execute or the migration context's execute (not the connection's)."""
        if self._on_op(call):
            return True
        receiver = call.func.value if isinstance(call.func, ast.Attribute) else None
        if isinstance(receiver, ast.Name):
            return receiver.id == "context"
        return isinstance(receiver, ast.Call) and _call_name(receiver.func) == "get_context"

    def _is_bind(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Starred):
            node = node.value
        if isinstance(node, ast.Name):
            return node.id in self.binds
        return isinstance(node, ast.Call) and _call_name(node.func) == "get_bind"

    def _is_connection(self, node: ast.expr) -> bool:
        """op.get_bind(), a name bound to it, or bind.connect() / bind.begin() and the like."""
        if self._is_bind(node):
            return True
        return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and self._is_bind(node.func.value)

    def _on_connection(self, call: ast.Call) -> bool:
        """bind.execute(...), op.get_bind().exec_driver_sql(...): a method of the connection itself."""
        return isinstance(call.func, ast.Attribute) and self._is_bind(call.func.value)

    def _uses_connection(self, call: ast.Call) -> bool:
        """conn.execute(...), op.get_bind().execute(...), Session(bind=bind): data moved outside op."""
        if isinstance(call.func, ast.Attribute) and self._is_bind(call.func.value):
            return True
        if _call_name(call.func) in _CATALOG_READS:
            return False
        return any(self._is_bind(value) for value in [*call.args, *(item.value for item in call.keywords)])

    # -- bookkeeping ----------------------------------------------------------
    def _operation(self, call: ast.Call, table: str | None, schema: bool = False, data: bool = False) -> None:
        self.state.operations.append(_Operation(call, table, self.autocommit, schema, data))

    def _add(self, rule: str, table: str | None, call: ast.Call) -> None:
        self.state.add(rule, table, call)

    def _is_new(self, table: str | None) -> bool:
        """True when op.create_table made the table earlier in this upgrade()."""
        return table is not None and table in self.state.created

    def _table(self, call: ast.Call, position: int, keyword: str = "table_name") -> str | None:
        """The table of an operation: batch_op's, else the argument at position (schema-qualified)."""
        in_batch, table = self._batch_table(call)
        if in_batch:
            return table
        return self._qualified(call, self._text(self._argument(call, position, keyword)))

    # -- tables and columns -----------------------------------------------------
    def _create_table(self, call: ast.Call) -> None:
        table = self._table(call, 0)
        self._operation(call, table, schema=True)
        if table is not None and not _keyword_is(call, "if_not_exists", True):
            self.state.created.add(table)  # with if_not_exists the table may be an old one

    def _drop_table(self, call: ast.Call) -> None:
        table = self._table(call, 0)
        self._operation(call, table, schema=True)
        if not self._is_new(table):
            self._add("ban-drop-table", table, call)
        elif table is not None:
            self.state.created.discard(table)  # dropped again: a later create_table makes it new once more

    def _rename_table(self, call: ast.Call) -> None:
        table = self._table(call, 0, "old_table_name")
        self._operation(call, table, schema=True)
        if not self._is_new(table):
            self._add("renaming-table", table, call)
            return
        renamed = self._qualified(call, self._text(self._argument(call, 1, "new_table_name")))
        if renamed is not None:
            self.state.created.add(renamed)

    def _add_column(self, call: ast.Call) -> None:
        in_batch, table = self._batch_table(call)
        column = self._argument(call, 0 if in_batch else 1, "column")
        table = self._table(call, 0)
        self._operation(call, table, schema=True)
        if not self._is_new(table) and _required_column(column):
            self._add("adding-required-field", table, call)

    def _drop_column(self, call: ast.Call) -> None:
        table, _ = self._table_and_column(call)
        self._operation(call, table, schema=True)
        if not self._is_new(table):
            self._add("ban-drop-column", table, call)

    def _alter_column(self, call: ast.Call) -> None:
        table, _ = self._table_and_column(call)
        self._operation(call, table, schema=True)
        if self._is_new(table):
            return
        if _given(call, "type_"):
            self._add("changing-column-type", table, call)
        if _given(call, "new_column_name"):
            self._add("renaming-column", table, call)
        if _keyword_is(call, "nullable", False):
            self._add("adding-not-nullable-field", table, call)

    # -- indexes and constraints -------------------------------------------------
    def _create_index(self, call: ast.Call) -> None:
        table = self._table(call, 1)
        self._operation(call, table, schema=True)
        concurrently = _flag(call, "postgresql_concurrently")
        if concurrently is True and not self.autocommit:
            self._add("ban-concurrent-index-creation-in-transaction", table, call)
        elif concurrently is not True and not self._is_new(table):
            self.state.add("require-concurrent-index-creation", table, call, _run_time(call, "postgresql_concurrently", concurrently))
        if self.autocommit and not _keyword_is(call, "if_not_exists", True):
            self._add("non-transactional", table, call)

    def _drop_index(self, call: ast.Call) -> None:
        table = self._table(call, 1)
        self._operation(call, table, schema=True)
        concurrently = _flag(call, "postgresql_concurrently")
        if concurrently is not True and not self._is_new(table):
            self.state.add("require-concurrent-index-deletion", table, call, _run_time(call, "postgresql_concurrently", concurrently))
        if self.autocommit and not _keyword_is(call, "if_exists", True):
            self._add("non-transactional", table, call)

    def _create_foreign_key(self, call: ast.Call) -> None:
        in_batch, table = self._batch_table(call)
        if not in_batch:
            source = self._text(self._argument(call, 1, "source_table"))
            schema = self._text(self._argument(call, None, "source_schema"))
            table = "%s.%s" % (schema, source) if schema and source else source
        self._operation(call, table, schema=True)
        not_valid = _flag(call, "postgresql_not_valid")
        if not self._is_new(table) and not_valid is not True:
            self.state.add("adding-foreign-key-constraint", table, call, _run_time(call, "postgresql_not_valid", not_valid))

    def _create_check_constraint(self, call: ast.Call) -> None:
        table = self._table(call, 1)
        self._operation(call, table, schema=True)
        not_valid = _flag(call, "postgresql_not_valid")
        if not self._is_new(table) and not_valid is not True:
            self.state.add("constraint-missing-not-valid", table, call, _run_time(call, "postgresql_not_valid", not_valid))

    def _create_unique_constraint(self, call: ast.Call) -> None:
        table = self._table(call, 1)
        self._operation(call, table, schema=True)
        if not self._is_new(table):
            self._add("disallowed-unique-constraint", table, call)

    # -- data and SQL ---------------------------------------------------------------
    def _bulk_insert(self, call: ast.Call) -> None:
        target = self._argument(call, 0, "table")
        table = None
        if isinstance(target, ast.Call) and _call_name(target.func) in ("table", "Table"):
            table = self._qualified(target, self._text(self._argument(target, 0, "name")))
        self._operation(call, table, data=True)

    def _execute(self, call: ast.Call) -> None:
        node = self._argument(call, 0, "sqltext")
        sql = self._sql_text(node)
        if sql is None:
            self._operation(call, None, data=_core_dml(node))
            return
        statements = read_sql(sql)
        data = [statement for statement in statements if statement.kind == DATA]
        table = data[0].table if data else None
        schema = any(statement.kind == SCHEMA for statement in statements)
        self._operation(call, table, schema=schema, data=bool(data))
        for statement in statements:
            if statement.creates and not statement.creates_if_missing:
                self.state.created.add(statement.creates)
        if self.autocommit and any(s.outside_transaction and not s.rerunnable for s in statements):
            self._add("non-transactional", table, call)

    def _connection_sql(self, call: ast.Call) -> None:
        """SQL run on the connection itself: data moved outside op, unless it only reads (a SELECT of the catalog)."""
        node = self._argument(call, 0, "statement", "sql")
        sql = self._sql_text(node)
        if sql is None:
            if not _core_read(node):
                self._operation(call, None, data=True)
            return
        statements = read_sql(sql)
        if statements and all(statement.kind == READ for statement in statements):
            return  # a read-only SELECT moves no data
        data = [statement for statement in statements if statement.kind != SCHEMA]
        schema = any(statement.kind == SCHEMA for statement in statements)
        self._operation(call, data[0].table if data else None, schema=schema, data=bool(data) or not statements)

    def _sql_text(self, node: ast.expr | None) -> str | None:
        """The SQL of op.execute's argument: a literal, sa.text(literal), its .bindparams(...), dedent(literal)."""
        text = self._text(node)
        if text is not None or not isinstance(node, ast.Call):
            return text
        name = _call_name(node.func)
        if name in ("text", "dedent") and node.args:
            return self._sql_text(node.args[0])
        if name in ("bindparams", "columns", "execution_options") and isinstance(node.func, ast.Attribute):
            return self._sql_text(node.func.value)
        return None


def _statement(node: ast.AST) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= _STATEMENT_PREVIEW else text[:_STATEMENT_PREVIEW] + "..."


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    for item in call.keywords:
        if item.arg == name:
            return item.value
    return None


def _keyword_is(call: ast.Call, name: str, value: bool) -> bool:
    node = _keyword(call, name)
    return isinstance(node, ast.Constant) and node.value is value


def _flag(call: ast.Call, name: str) -> bool | None:
    """A boolean keyword's value: True or False when the source says it (absent is False), None when decided at run time."""
    node = _keyword(call, name)
    if node is None:
        return False
    if isinstance(node, ast.Constant):
        return bool(node.value)
    return None


def _run_time(call: ast.Call, name: str, value: bool | None) -> str:
    """Why a finding is uncertain: the keyword's value is only known when the revision runs; "" when it is known."""
    if value is not None:
        return ""
    return "%s=%s is decided at run time" % (name, ast.unparse(_keyword(call, name) or call))


def _given(call: ast.Call, name: str) -> bool:
    node = _keyword(call, name)
    return node is not None and not (isinstance(node, ast.Constant) and node.value is None)


def _required_column(column: ast.expr | None) -> bool:
    """sa.Column(..., nullable=False) or primary_key=True, with no value for existing rows."""
    if not (isinstance(column, ast.Call) and _call_name(column.func) == "Column"):
        return False
    if _given(column, "server_default"):
        return False
    if any(isinstance(arg, ast.Call) and _call_name(arg.func) in _SERVER_VALUES for arg in column.args):
        return False
    return _keyword_is(column, "nullable", False) or _keyword_is(column, "primary_key", True)


def _core_dml(node: ast.expr | None) -> bool:
    """True for table.update().where(...).values(...), sa.insert(table), and the like."""
    while isinstance(node, ast.Call):
        if _call_name(node.func) in _CORE_DML:
            return True
        node = node.func.value if isinstance(node.func, ast.Attribute) else None
    return False


def _core_read(node: ast.expr | None) -> bool:
    """True for sa.select(...).where(...), sa.exists(...): Core statements that only read."""
    while isinstance(node, ast.Call):
        if _call_name(node.func) in _CORE_DML:
            return False
        if _call_name(node.func) in _CORE_READS:
            return True
        node = node.func.value if isinstance(node.func, ast.Attribute) else None
    return False


def uses_autocommit_block(path: str) -> bool:
    """Whether the revision file calls autocommit_block() anywhere: it then cannot run inside one outer transaction."""
    try:
        tree = ast.parse(_read_source(path), filename=path)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(node, ast.Call) and _call_name(node.func) == "autocommit_block" for node in ast.walk(tree))

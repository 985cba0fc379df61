# -*- coding: utf-8 -*-
# The hazards of a revision's upgrade() operations, read from the revision file
# with the ast module: the linter's fallback when a revision cannot be rendered
# to SQL offline, and its fleet_acknowledge. Nothing is imported or executed:
# only the source is read (SQL literals with pglast). No Alembic or SQLAlchemy.
from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ansible.module_utils.fleet.alembic.source import Functions, SourceVisitor, call_name, module_constants, module_functions, parse_detail, read_source
from ansible.module_utils.fleet.review.rules import RULES
from ansible.module_utils.fleet.review.sql import DATA, READ, SCHEMA, read_sql

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
    """One hazardous operation of upgrade(), named by its rule (a key of review.rules.RULES)."""

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
    source = read_source(path)
    try:
        return ast.parse(source, filename=path), None
    except (SyntaxError, ValueError) as exc:
        reason = "the revision file does not parse (%s): its upgrade() and %s cannot be reviewed"
        return None, reason % (parse_detail(exc), ACKNOWLEDGE)


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
    functions = module_functions(tree)
    upgrade = functions.get("upgrade")
    if upgrade is None:
        return (), new_tables
    state = _UpgradeState(created=new_tables)
    _UpgradeReviewer(state, module_constants(tree), functions, follow=True, autocommit=False).review(upgrade)
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


class _UpgradeReviewer(SourceVisitor):
    """Walks one function body of upgrade() (or a helper it calls), recording operations and hazards."""

    def __init__(self, state: _UpgradeState, constants: dict[str, str], functions: Functions, follow: bool, autocommit: bool) -> None:
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
            item.context_expr for item in node.items if isinstance(item.context_expr, ast.Call) and call_name(item.context_expr.func) == "autocommit_block"
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
        name = call_name(node.func)
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
        return isinstance(receiver, ast.Call) and call_name(receiver.func) == "get_context"

    def _is_bind(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Starred):
            node = node.value
        if isinstance(node, ast.Name):
            return node.id in self.binds
        return isinstance(node, ast.Call) and call_name(node.func) == "get_bind"

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
        if call_name(call.func) in _CATALOG_READS:
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
        if isinstance(target, ast.Call) and call_name(target.func) in ("table", "Table"):
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
        name = call_name(node.func)
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
    if not (isinstance(column, ast.Call) and call_name(column.func) == "Column"):
        return False
    if _given(column, "server_default"):
        return False
    if any(isinstance(arg, ast.Call) and call_name(arg.func) in _SERVER_VALUES for arg in column.args):
        return False
    return _keyword_is(column, "nullable", False) or _keyword_is(column, "primary_key", True)


def _core_dml(node: ast.expr | None) -> bool:
    """True for table.update().where(...).values(...), sa.insert(table), and the like."""
    while isinstance(node, ast.Call):
        if call_name(node.func) in _CORE_DML:
            return True
        node = node.func.value if isinstance(node.func, ast.Attribute) else None
    return False


def _core_read(node: ast.expr | None) -> bool:
    """True for sa.select(...).where(...), sa.exists(...): Core statements that only read."""
    while isinstance(node, ast.Call):
        if call_name(node.func) in _CORE_DML:
            return False
        if call_name(node.func) in _CORE_READS:
            return True
        node = node.func.value if isinstance(node.func, ast.Attribute) else None
    return False

# -*- coding: utf-8 -*-
# A revision file's source, read with the ast module and never run: the shared
# reading of the review's two analyses (review.downgrade, review.upgrade) and
# the one fact a run needs before it starts (does a revision use
# autocommit_block()). No Alembic or SQLAlchemy.
from __future__ import annotations

import ast

from ansible.module_utils.fleet.core.common import FleetError

Functions = dict[str, "ast.FunctionDef | ast.AsyncFunctionDef"]


def read_source(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise FleetError("revision file %s cannot be read (%s): check the project's versions directory." % (path, exc.strerror or exc)) from None


def parse_detail(exc: SyntaxError | ValueError) -> str:
    if isinstance(exc, SyntaxError):
        where = " at line %s" % exc.lineno if exc.lineno else ""
        detail = "SyntaxError: %s%s" % (exc.msg, where)
    else:
        detail = "%s: %s" % (type(exc).__name__, exc)
    return " ".join(detail.split())


def module_constants(tree: ast.Module) -> dict[str, str]:
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


def module_functions(tree: ast.Module) -> Functions:
    return {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


class SourceVisitor(ast.NodeVisitor):
    """Walks one function body, knowing its literals and its batch_alter_table tables."""

    def __init__(self, constants: dict[str, str], functions: Functions) -> None:
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
        if isinstance(node, ast.Call) and call_name(node.func) == "f" and node.args:
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
            if isinstance(call, ast.Call) and call_name(call.func) == "batch_alter_table" and isinstance(item.optional_vars, ast.Name):
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


def uses_autocommit_block(path: str) -> bool:
    """Whether the revision file calls autocommit_block() anywhere: it then cannot run inside one outer transaction."""
    try:
        tree = ast.parse(read_source(path), filename=path)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(node, ast.Call) and call_name(node.func) == "autocommit_block" for node in ast.walk(tree))

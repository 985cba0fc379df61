# -*- coding: utf-8 -*-
# SQL read with PostgreSQL's own parser (pglast, libpg_query): what a statement
# does (changes data, changes the schema, only reads, controls the
# transaction), the table it works on, the tables it creates, drops or renames,
# and whether it runs outside a transaction, can be re-run or throws data away.
# The review reads Alembic's offline SQL and the SQL literals of revision files
# with it. A statement pglast cannot parse (another dialect's SQL, a fragment)
# falls back to its first words, and says so (parsed=False). Alembic's batch
# mode on SQLite rewrites a table by copying it (create a temp table, copy the
# rows, drop the table, rename the copy): batch_copy_parts finds those steps so
# that the review judges the revision's operations, not the copy's DROP TABLE.
from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ansible.module_utils.fleet.core.common import FleetError

PGLAST_IMPORT_ERROR: str | None
try:
    from pglast import ast as pg
    from pglast import parse_sql
    from pglast.parser import ParseError
except ImportError:  # pragma: no cover - reported when SQL is first read
    PGLAST_IMPORT_ERROR = traceback.format_exc()
else:
    PGLAST_IMPORT_ERROR = None

DATA, SCHEMA, READ, TRANSACTION, OTHER = "data", "schema", "read", "transaction", "other"
BATCH_TEMP_PREFIX = "_alembic_tmp_"  # alembic.operations.batch names its copy of table t _alembic_tmp_t

# Functions that change something although they are called from a SELECT.
_WRITING_FUNCTIONS = frozenset({"setval", "nextval", "lo_import", "lo_unlink", "pg_terminate_backend"})
# Statements that only set up the session.
_SESSION_NODES = ("VariableSetStmt", "VariableShowStmt", "LockStmt", "DiscardStmt", "CheckPointStmt")
_DATA_NODES = ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "CopyStmt")
_OUTSIDE_NODES = ("VacuumStmt", "AlterSystemStmt", "CreatedbStmt", "DropdbStmt")
# ALTER TABLE subcommands that take a weaker lock than ACCESS EXCLUSIVE (reads go on): PostgreSQL's ALTER TABLE docs.
_WEAKER_ALTERS = frozenset(
    {"AT_ValidateConstraint", "AT_SetStatistics", "AT_ClusterOn", "AT_DropCluster", "AT_SetOptions", "AT_ResetOptions", "AT_AttachPartition"}
)
_ACCESS_EXCLUSIVE = 8  # LOCK TABLE's mode number (AccessExclusiveLock)

# The fallback for what pglast cannot parse: the first words, as before there was a parser.
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_FALLBACK_TABLE = (
    re.compile(r"^ALTER\s+TABLE\s+(?:ONLY\s+)?(?:IF\s+EXISTS\s+)?([\w.\"]+)", re.IGNORECASE),
    re.compile(r"^CREATE\s+(?:UNIQUE\s+)?INDEX\s+.*?\bON\s+(?:ONLY\s+)?([\w.\"]+)", re.IGNORECASE | re.DOTALL),
    re.compile(r"^(?:CREATE|DROP)\s+TABLE\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?([\w.\"]+)", re.IGNORECASE),
    re.compile(r"^(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|TRUNCATE(?:\s+TABLE)?|MERGE\s+INTO|COPY)\s+(?:ONLY\s+)?([\w.\"]+)", re.IGNORECASE),
)
_FALLBACK_DATA = re.compile(r"^(INSERT|UPDATE|DELETE|MERGE|COPY)\b", re.IGNORECASE)
_FALLBACK_READ = re.compile(r"^(SELECT|SHOW|EXPLAIN|VALUES)\b", re.IGNORECASE)
_FALLBACK_TRANSACTION = re.compile(r"^(BEGIN|COMMIT|ROLLBACK|START\s+TRANSACTION|END)\b", re.IGNORECASE)
_FALLBACK_OUTSIDE = re.compile(r"\bCONCURRENTLY\b|^VACUUM\b|^ALTER\s+SYSTEM\b|^(CREATE|DROP)\s+DATABASE\b", re.IGNORECASE)
_FALLBACK_RERUNNABLE = re.compile(r"\bIF\s+(NOT\s+)?EXISTS\b", re.IGNORECASE)
_FALLBACK_LOSSY = re.compile(r"^DROP\s+TABLE\b|\bDROP\s+COLUMN\b|^TRUNCATE\b|^DELETE\s+FROM\b", re.IGNORECASE)


@dataclass(frozen=True)
class Statement:
    """One SQL statement, as far as the review needs to know it."""

    text: str  # whitespace-collapsed, without comments
    kind: str  # DATA, SCHEMA, READ, TRANSACTION or OTHER
    table: str | None = None  # the table it works on (schema-qualified unless public)
    creates: str | None = None  # the table it creates
    creates_if_missing: bool = False  # CREATE TABLE IF NOT EXISTS: the table may have existed
    drops: tuple[str, ...] = ()  # the tables it drops
    renamed_to: str | None = None  # the new name of the table it renames
    outside_transaction: bool = False  # CONCURRENTLY, VACUUM, ALTER SYSTEM, CREATE/DROP DATABASE
    rerunnable: bool = False  # IF [NOT] EXISTS
    loses_data: bool = False  # DROP TABLE, DROP COLUMN, TRUNCATE, DELETE
    begins: bool = False  # BEGIN / START TRANSACTION
    exclusive: bool = False  # takes an ACCESS EXCLUSIVE lock on table (ALTER/DROP/RENAME/TRUNCATE/LOCK TABLE)
    bulk: bool = False  # works through a whole table, or many rows: UPDATE, DELETE, INSERT ... SELECT, CREATE INDEX
    parsed: bool = True  # False: pglast could not parse it, read from its first words


def batch_copy_of(temp: str | None, target: str | None) -> bool:
    """Whether renaming temp to target ends a batch-mode copy of target (_alembic_tmp_t renamed to t)."""
    if not temp or not target:
        return False
    name = temp.rsplit(".", 1)[-1]
    return name.startswith(BATCH_TEMP_PREFIX) and name[len(BATCH_TEMP_PREFIX) :] == target.rsplit(".", 1)[-1]


def batch_copy_parts(statements: Sequence[Statement]) -> dict[int, str]:
    """The statements that are a batch-mode table copy (by index), each with the table it rewrites.

    A copy is only recognised whole: its temp table renamed onto the table it replaces. Its CREATE TABLE, its
    INSERT ... SELECT, the DROP TABLE of the original and the RENAME are the copy's; anything else is not.
    """
    moves = {s.table: s.renamed_to for s in statements if s.renamed_to and batch_copy_of(s.table, s.renamed_to)}
    parts: dict[int, str] = {}
    for index, statement in enumerate(statements):
        if statement.table in moves and (statement.creates or statement.renamed_to or statement.kind == DATA):
            parts[index] = str(moves[statement.table])
        elif statement.drops and all(dropped in moves.values() for dropped in statement.drops):
            parts[index] = statement.drops[0]
    return parts


def _require_pglast() -> None:
    if PGLAST_IMPORT_ERROR is not None:
        raise FleetError("the pglast SQL parser is not installed: pip install pglast==8.8 into the Python that runs the module.")


def read_sql(sql: str) -> list[Statement]:
    """The statements of sql, in order (empty ones left out)."""
    _require_pglast()
    try:
        raw = parse_sql(sql)
    except ParseError:
        return [read_statement(piece) for piece in _split(sql)]
    encoded = sql.encode("utf-8")  # libpg_query's locations count bytes
    statements = []
    for item in raw:
        start = item.stmt_location or 0
        end = start + item.stmt_len if item.stmt_len else len(encoded)
        text = encoded[start:end].decode("utf-8", "replace")
        statements.append(_describe(item.stmt, _collapse(text)))
    return statements


@functools.lru_cache(maxsize=4096)
def read_statement(text: str) -> Statement:
    """One statement (the first, when text holds several). Statements are immutable, so one parse serves every
    caller that reads the same text (the review reads each statement of a plan several times)."""
    _require_pglast()
    collapsed = _collapse(text)
    try:
        raw = parse_sql(text)
    except ParseError:
        return _fallback(collapsed)
    if not raw:
        return Statement(collapsed, OTHER)
    return _describe(raw[0].stmt, collapsed)


def table_of(text: str) -> str | None:
    """The table a statement works on, or None."""
    return read_statement(text).table if text.strip() else None


def _split(sql: str) -> list[str]:
    pieces = (_collapse(part) for part in _COMMENTS.sub(" ", sql).split(";"))
    return [piece for piece in pieces if piece]


def _collapse(text: str) -> str:
    return " ".join(_COMMENTS.sub(" ", text).split()).rstrip(";").strip()


# -- parsed statements ---------------------------------------------------------
def _describe(node: Any, text: str) -> Statement:
    name = type(node).__name__
    if name == "TransactionStmt":
        begins = _object_type(node.kind) in ("TRANS_STMT_BEGIN", "TRANS_STMT_START")
        return Statement(text, TRANSACTION, begins=begins)
    flags = _flags(node, ("if_not_exists", "missing_ok", "concurrent"))
    rerunnable = "if_not_exists" in flags or "missing_ok" in flags
    outside = name in _OUTSIDE_NODES or "concurrent" in flags
    common: dict[str, Any] = {"rerunnable": rerunnable, "outside_transaction": outside}
    if name in _DATA_NODES:
        return Statement(text, DATA, table=_relation(node.relation), loses_data=name == "DeleteStmt", bulk=_bulk(node, name), **common)
    if name == "SelectStmt" or name == "ExplainStmt":
        return _select(node, text, common)
    if name == "LockStmt" and node.mode == _ACCESS_EXCLUSIVE:
        return Statement(text, OTHER, table=_relation((node.relations or (None,))[0]), exclusive=True, **common)
    if name in _SESSION_NODES:
        return Statement(text, OTHER, **common)
    return _schema(node, name, text, common)


def _select(node: Any, text: str, common: dict[str, Any]) -> Statement:
    """A SELECT only reads, unless it makes a table (INTO), runs DML in a WITH or calls a writing function."""
    into = getattr(node, "intoClause", None)
    if into is not None:
        table = _relation(into.rel)
        return Statement(text, DATA, table=table, creates=table, bulk=True, **common)
    for inner in _nodes(node):
        kind = type(inner).__name__
        if kind in _DATA_NODES:
            return Statement(text, DATA, table=_relation(inner.relation), loses_data=kind == "DeleteStmt", **common)
        if kind == "FuncCall" and _function_name(inner) in _WRITING_FUNCTIONS:
            return Statement(text, DATA, **common)
    return Statement(text, READ, **common)


def _schema(node: Any, name: str, text: str, common: dict[str, Any]) -> Statement:
    table: str | None = None
    fields: dict[str, Any] = {}
    if name == "CreateStmt":
        table = _relation(node.relation)
        fields.update(creates=table, creates_if_missing=bool(node.if_not_exists))
    elif name == "CreateTableAsStmt":
        table = _relation(node.into.rel)
        fields.update(creates=table, creates_if_missing=bool(node.if_not_exists), bulk=True)
    elif name == "DropStmt":
        names = tuple(_qualified(tuple(_string(part) for part in obj)) for obj in node.objects or () if isinstance(obj, tuple))
        if _object_type(node.removeType) == "OBJECT_TABLE":
            fields.update(drops=names, loses_data=True, exclusive=True)
            table = names[0] if names else None
    elif name == "RenameStmt":
        table = _relation(node.relation)
        fields["exclusive"] = table is not None and _object_type(node.renameType) in ("OBJECT_TABLE", "OBJECT_COLUMN")
        if _object_type(node.renameType) == "OBJECT_TABLE" and table is not None:
            schema = table.rpartition(".")[0]
            fields["renamed_to"] = "%s.%s" % (schema, node.newname) if schema else node.newname
    elif name == "TruncateStmt":
        table = _relation((node.relations or (None,))[0])
        fields.update(loses_data=True, exclusive=True)
    elif name == "AlterTableStmt":
        table = _relation(node.relation)
        subtypes = {_object_type(cmd.subtype) for cmd in node.cmds or () if hasattr(cmd, "subtype")}
        fields["loses_data"] = "AT_DropColumn" in subtypes
        weaker = (bool(subtypes) and subtypes <= _WEAKER_ALTERS) or _foreign_keys_only(node)
        fields["exclusive"] = _object_type(node.objtype) == "OBJECT_TABLE" and not weaker
        fields["bulk"] = "AT_AlterColumnType" in subtypes  # rewrites the table
    elif name == "IndexStmt":
        table = _relation(node.relation)
        fields["bulk"] = not node.concurrent  # builds over the whole table inside the transaction
    else:
        table = _relation(getattr(node, "relation", None))
    return Statement(text, SCHEMA, table=table, **{**common, **fields})


def _bulk(node: Any, name: str) -> bool:
    """UPDATE, DELETE, MERGE, COPY, and INSERT ... SELECT work through many rows; INSERT ... VALUES does not."""
    if name != "InsertStmt":
        return True
    select = node.selectStmt
    return select is not None and not getattr(select, "valuesLists", None)


def _foreign_keys_only(node: Any) -> bool:
    """ALTER TABLE ... ADD FOREIGN KEY alone takes SHARE ROW EXCLUSIVE: writes wait, reads go on."""
    commands = [cmd for cmd in node.cmds or () if hasattr(cmd, "subtype")]
    if not commands:
        return False
    for cmd in commands:
        constraint = getattr(cmd, "def_", None)
        if _object_type(cmd.subtype) != "AT_AddConstraint" or _object_type(getattr(constraint, "contype", "")) != "CONSTR_FOREIGN":
            return False
    return True


def _relation(node: Any) -> str | None:
    if node is None or not hasattr(node, "relname"):
        return None
    return _qualified((node.schemaname, node.relname))


def _qualified(parts: tuple[str | None, ...]) -> str | None:
    names = [part for part in parts if part]
    if len(names) > 1 and names[-2] == "public":
        names = names[-1:]
    return ".".join(names[-2:]) if names else None


def _string(node: Any) -> str | None:
    return getattr(node, "sval", None)


def _object_type(value: Any) -> str:
    return str(getattr(value, "name", value))


def _function_name(call: Any) -> str:
    parts = [_string(part) for part in call.funcname or ()]
    return (parts[-1] or "") if parts else ""


def _nodes(node: Any) -> Iterator[Any]:
    """Every pglast node under node (node included), depth first."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, tuple):
            stack.extend(current)
        elif isinstance(current, pg.Node):
            yield current
            stack.extend(getattr(current, attribute) for attribute in current)


def _flags(node: Any, attributes: tuple[str, ...]) -> set[str]:
    """Which of attributes are set (True) on some node under node, in one walk."""
    found: set[str] = set()
    for inner in _nodes(node):
        found.update(attribute for attribute in attributes if getattr(inner, attribute, False) is True)
    return found


# -- the fallback ----------------------------------------------------------------
def _fallback(text: str) -> Statement:
    table = None
    for pattern in _FALLBACK_TABLE:
        match = pattern.match(text)
        if match:
            table = match.group(1).replace('"', "")
            break
    outside = bool(_FALLBACK_OUTSIDE.search(text))
    common: dict[str, Any] = {
        "table": table,
        "outside_transaction": outside,
        "rerunnable": bool(_FALLBACK_RERUNNABLE.search(text)),
        "loses_data": bool(_FALLBACK_LOSSY.search(text)),
        "parsed": False,
    }
    if _FALLBACK_TRANSACTION.match(text):
        return Statement(text, TRANSACTION, begins=text.upper().startswith(("BEGIN", "START")), parsed=False)
    if _FALLBACK_DATA.match(text):
        return Statement(text, DATA, **common)
    if _FALLBACK_READ.match(text):
        return Statement(text, READ, **common)
    return Statement(text, SCHEMA, **common)

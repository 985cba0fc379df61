# -*- coding: utf-8 -*-
# Every schema object of a database, read from its catalog, and the comparison
# of two such inventories: the live database against the schema the migrations
# build in a scratch database. Alembic's compare_metadata sees only what
# SQLAlchemy reflects (tables, columns, indexes, unique and foreign keys); a
# leftover enum type, a hand-made CHECK, default, view, sequence, function or
# trigger passes it unseen, and the next upgrade fails on it. PostgreSQL is
# read through catalog queries over one connection (no pg_dump: a nightly
# status runs this per database); SQLite's views and triggers come from
# sqlite_master. Each difference is one line naming the kind, the object and
# what differs; the kinds compare_metadata reported keep its wording, since
# drift allowlists match these lines.
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

DEFAULT_SCHEMA = "public"  # names in it are shown bare; the catalog is read with only it on the search_path
NONE = "none"

# Kinds in the order their lines are listed.
KINDS = (
    "schema",
    "extension",
    "collation",
    "enum type",
    "domain",
    "composite type",
    "range type",
    "table",
    "column",
    "primary key",
    "constraint",
    "foreign key",
    "check constraint",
    "exclusion constraint",
    "index",
    "sequence",
    "view",
    "materialized view",
    "function",
    "procedure",
    "aggregate",
    "trigger",
    "rule",
    "policy",
    "statistics object",
    "event trigger",
)
# What is compared, read as a plural ("labels differ").
PLURAL = frozenset({"labels", "attributes", "parameters", "options", "constraints", "parents"})
EXCERPT = 60  # characters of a long value shown around the first difference


@dataclass(frozen=True)
class Item:
    """One schema object: how a line names it, the relation it belongs to and what is compared of it."""

    kind: str
    name: str  # identity within the kind: "companies.listed", "ix_x", "f(integer)"
    label: str = ""  # how a line names it, when it says more than the name: "ix_x on t(a, b)"
    table: str | None = None  # the relation it belongs to: ignored with it
    fields: tuple[tuple[str, str], ...] = ()  # (what, value), compared one by one
    # The object whose line says it all when that one is on one side only (kind, name): a column's or an index's
    # table, a serial's sequence's column; as compare_metadata reported a missing table once, not each column.
    part_of: tuple[str, str] | None = None
    ident: tuple[str, ...] = ()  # its identifiers as they are (schema, relation[, column]), to build SQL with

    @property
    def shown(self) -> str:
        return self.label or self.name


Inventory = dict[tuple[str, str], Item]


def inventory_of(items: Iterable[Item]) -> Inventory:
    return {(item.kind, item.name): item for item in items}


def qualified(schema: str, name: str) -> str:
    return name if schema == DEFAULT_SCHEMA else "%s.%s" % (schema, name)


def text(value: Any) -> str:
    """A catalog value as compared: as PostgreSQL prints it (a literal's spaces count), null as 'none'."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def one_line(value: str) -> str:
    return " ".join(value.split())


# The table a difference line is about (a drift allowlist entry may name it), for every kind that belongs to one:
# "table T ...", "column T.C ...", "index I on T(cols) ...", "<constraint kind> N on T ...", "trigger N on T ...".
# The same wording as describe_diff's (the models' comparison), so one reading serves both.
_OWNED_BY_TABLE = "constraint|foreign key|primary key|check constraint|exclusion constraint|trigger|rule|policy"
_WHAT = r"(?:is in the |[\w ]+ differs?: )"
_TABLE_OF_LINE = (
    re.compile(r"^table (?P<table>\S+) %s" % _WHAT),
    re.compile(r"^column (?P<table>\S+)\.[^\s.]+ %s" % _WHAT),
    re.compile(r"^index \S+ on (?P<table>[^\s(]+)\("),
    re.compile(r"^(?:%s) \S+ on (?P<table>\S+) %s" % (_OWNED_BY_TABLE, _WHAT)),
)


def table_of_difference(line: str) -> str | None:
    """The table a difference line names as its own, or None (a type, view, function, ... belongs to none)."""
    for pattern in _TABLE_OF_LINE:
        match = pattern.match(line)
        if match:
            return match.group("table")
    return None


# -- comparing two inventories -------------------------------------------------
def compare_inventories(live: Inventory, expected: Inventory, reference: str = "expected schema", ignore_tables: Sequence[str] = ()) -> list[str]:
    """One line per difference between the live database's objects and the expected ones, in KINDS order."""
    ignored = set(ignore_tables)
    live = _without_ignored(live, ignored)
    expected = _without_ignored(expected, ignored)
    lines: list[tuple[int, str, str]] = []
    for key in set(live) | set(expected):
        mine, theirs = live.get(key), expected.get(key)
        item = mine or theirs
        assert item is not None
        if mine is None or theirs is None:
            if item.part_of is not None and (item.part_of in live) != (item.part_of in expected):
                continue  # what it is part of is on one side only, and that line names it
            side, other = ("database", reference) if theirs is None else (reference, "database")
            found = ["%s %s is in the %s but not in the %s" % (item.kind, item.shown, side, other)]
        else:
            found = _field_differences(mine, theirs, reference)
        lines.extend((_rank(item.kind), item.name, line) for line in found)
    return [line for _, _, line in sorted(lines)]


def _rank(kind: str) -> int:
    return KINDS.index(kind) if kind in KINDS else len(KINDS)


def _bare(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _without_ignored(inventory: Inventory, ignored: set[str]) -> Inventory:
    """Without the ignored tables (by bare or qualified name) and everything that belongs to them."""
    if not ignored:
        return inventory

    def skip(item: Item) -> bool:
        own = item.name if item.kind == "table" else item.table
        return own is not None and (own in ignored or _bare(own) in ignored)

    return {key: item for key, item in inventory.items() if not skip(item)}


def _field_differences(live: Item, expected: Item, reference: str) -> list[str]:
    wanted = dict(expected.fields)
    lines = []
    for what, value in live.fields:
        other = wanted.get(what, NONE)
        if value != other:
            shown, other_shown = excerpts(one_line(value), one_line(other))
            lines.append(
                "%s %s %s %s: database has %s, %s has %s"
                % (live.kind, live.shown, what, "differ" if what in PLURAL else "differs", shown, reference, other_shown)
            )
    return lines


def excerpts(one: str, two: str) -> tuple[str, str]:
    """Two long values cut to where they first differ (a function's body is one line here, and may be long)."""
    if len(one) <= 2 * EXCERPT and len(two) <= 2 * EXCERPT:
        return one, two
    start = 0
    while start < min(len(one), len(two)) and one[start] == two[start]:
        start += 1
    begin = max(0, start - EXCERPT // 2)
    return _cut(one, begin), _cut(two, begin)


def _cut(value: str, begin: int) -> str:
    end = begin + 2 * EXCERPT
    return "%s%s%s" % ("..." if begin else "", value[begin:end], "..." if end < len(value) else "")


def rename_database(inventory: Inventory, old: str, new: str) -> Inventory:
    """The inventory with one database name replaced in every value (a scratch copy's own name, e.g. in a
    function body that names current_database()'s result, is not a difference)."""
    if not old or old == new:
        return inventory
    return {key: replace(item, fields=tuple((what, value.replace(old, new)) for what, value in item.fields)) for key, item in inventory.items()}


# -- PostgreSQL: reading the catalog ---------------------------------------------
# A schema of the database's own (not the system's, not another session's temporary one).
_USER_SCHEMA = "n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_(toast|temp_|toast_temp_)'"


def _own(catalog: str, oid: str) -> str:
    """SQL: the object is not a member of an extension (the extension's own line covers it)."""
    return "not exists (select from pg_depend e where e.classid = '%s'::regclass and e.objid = %s and e.deptype = 'e')" % (catalog, oid)


_RELATION = "join pg_namespace n on n.oid = c.relnamespace where %s and %s" % (_USER_SCHEMA, _own("pg_class", "c.oid"))


def _rows(conn: Any, sql: str) -> list[Any]:
    return list(conn.exec_driver_sql(sql).fetchall())


def _schemas(conn: Any) -> Iterator[Item]:
    sql = "select n.nspname, obj_description(n.oid, 'pg_namespace') from pg_namespace n where %s and %s" % (_USER_SCHEMA, _own("pg_namespace", "n.oid"))
    for name, comment in _rows(conn, sql):
        yield Item("schema", name, fields=(("comment", text(comment)),))


def _extensions(conn: Any) -> Iterator[Item]:
    sql = "select x.extname, x.extversion, n.nspname from pg_extension x join pg_namespace n on n.oid = x.extnamespace"
    for name, version, schema in _rows(conn, sql):
        yield Item("extension", name, fields=(("version", text(version)), ("schema", schema)))


def _collations(conn: Any) -> Iterator[Item]:
    sql = (
        "select n.nspname, c.collname, c.collprovider, c.collcollate, c.collctype, c.collisdeterministic "
        "from pg_collation c join pg_namespace n on n.oid = c.collnamespace where %s and %s" % (_USER_SCHEMA, _own("pg_collation", "c.oid"))
    )
    for schema, name, provider, collate, ctype, deterministic in _rows(conn, sql):
        what = "provider %s, collate %s, ctype %s, %sdeterministic" % (provider, text(collate), text(ctype), "" if deterministic else "non")
        yield Item("collation", qualified(schema, name), fields=(("definition", what),))


_TYPES = (
    "select n.nspname, t.typname, t.typtype, obj_description(t.oid, 'pg_type'), "
    "  case t.typtype"
    "    when 'e' then (select string_agg(quote_literal(e.enumlabel), ', ' order by e.enumsortorder) from pg_enum e where e.enumtypid = t.oid)"
    "    when 'd' then format_type(t.typbasetype, t.typtypmod)"
    "    when 'c' then (select string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), ', ' order by a.attnum)"
    "                   from pg_attribute a where a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped)"
    "    when 'r' then (select format_type(r.rngsubtype, null) from pg_range r where r.rngtypid = t.oid)"
    "  end, "
    "  t.typnotnull, t.typdefault, "
    "  (select string_agg(quote_ident(k.conname) || ' ' || pg_get_constraintdef(k.oid, true), '; ' order by k.conname)"
    "   from pg_constraint k where k.contypid = t.oid) "
    "from pg_type t join pg_namespace n on n.oid = t.typnamespace "
    "where t.typtype in ('e', 'd', 'c', 'r') and (t.typtype <> 'c' or (select c.relkind from pg_class c where c.oid = t.typrelid) = 'c') "
    "and %s and %s" % (_USER_SCHEMA, _own("pg_type", "t.oid"))
)
_TYPE_KINDS = {"e": "enum type", "d": "domain", "c": "composite type", "r": "range type"}


def _types(conn: Any) -> Iterator[Item]:
    for schema, name, typtype, comment, shape, notnull, default, constraints in _rows(conn, _TYPES):
        kind = _TYPE_KINDS[typtype]
        if typtype == "e":
            fields = [("labels", "(%s)" % (shape or ""))]
        elif typtype == "d":
            fields = [("type", text(shape)), ("not null", text(bool(notnull))), ("default", text(default)), ("constraints", text(constraints))]
        elif typtype == "c":
            fields = [("attributes", "(%s)" % (shape or ""))]
        else:
            fields = [("subtype", text(shape))]
        yield Item(kind, qualified(schema, name), fields=(*fields, ("comment", text(comment))))


_RELKINDS = {"r": "table", "p": "table", "f": "table", "v": "view", "m": "materialized view"}
_TABLES = (
    "select n.nspname, c.relname, c.relkind, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity, "
    "  case when c.relkind = 'p' then pg_get_partkeydef(c.oid) end, "
    "  case when c.relispartition then pg_get_expr(c.relpartbound, c.oid) end, "
    "  (select string_agg(i.inhparent::regclass::text, ', ' order by i.inhseqno) from pg_inherits i where i.inhrelid = c.oid), "
    "  array_to_string(c.reloptions, ', '), obj_description(c.oid, 'pg_class'), "
    "  case when c.relkind in ('v', 'm') then pg_get_viewdef(c.oid, true) end "
    "from pg_class c " + _RELATION + " and c.relkind in ('r', 'p', 'f', 'v', 'm')"
)
_PERSISTENCE = {"p": "logged", "u": "unlogged", "t": "temporary"}
_TABLE_SORTS = {"r": "ordinary", "p": "partitioned", "f": "foreign"}


def _tables(conn: Any) -> Iterator[Item]:
    for schema, name, relkind, persistence, rls, force_rls, partkey, bound, parents, options, comment, definition in _rows(conn, _TABLES):
        kind = _RELKINDS[relkind]
        fields: list[tuple[str, str]] = []
        if kind == "table":
            security = "forced" if force_rls else "enabled" if rls else "disabled"
            fields = [
                ("kind", _TABLE_SORTS[relkind]),
                ("persistence", _PERSISTENCE.get(persistence, persistence)),
                ("partition key", text(partkey)),
                ("partition bound", text(bound)),
                ("parents", text(parents)),
                ("row security", security),
            ]
        else:
            fields = [("definition", text(definition).rstrip().rstrip(";"))]
        fields += [("options", text(options or None)), ("comment", text(comment))]
        yield Item(kind, qualified(schema, name), fields=tuple(fields), ident=(schema, name))


_COLUMNS = (
    "select n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
    "  case when a.attgenerated = '' then pg_get_expr(d.adbin, d.adrelid) end, "
    "  case when a.attgenerated <> '' then pg_get_expr(d.adbin, d.adrelid) end, "
    "  a.attidentity, "
    "  case when a.attcollation <> t.typcollation then (select collname from pg_collation k where k.oid = a.attcollation) end, "
    "  col_description(c.oid, a.attnum) "
    "from pg_attribute a join pg_class c on c.oid = a.attrelid "
    "join pg_type t on t.oid = a.atttypid "
    "left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum "
    + _RELATION
    + " and c.relkind in ('r', 'p', 'f') and a.attnum > 0 and not a.attisdropped"
)
_IDENTITY = {"": NONE, "a": "always", "d": "by default"}


def _columns(conn: Any) -> Iterator[Item]:
    for schema, table, name, type_, notnull, default, generated, identity, collation, comment in _rows(conn, _COLUMNS):
        owner = qualified(schema, table)
        fields = (
            ("type", type_),
            ("nullable", str(not notnull)),  # compare_metadata's wording: "database has True, ... has False"
            ("default", text(default)),
            ("generated", text(generated)),
            ("identity", _IDENTITY.get(identity, identity)),
            ("collation", text(collation)),
            ("comment", text(comment)),
        )
        yield Item("column", "%s.%s" % (owner, name), table=owner, fields=fields, part_of=("table", owner), ident=(schema, table, name))


_CONSTRAINT_KINDS = {"p": "primary key", "u": "constraint", "f": "foreign key", "c": "check constraint", "x": "exclusion constraint"}
_CONSTRAINTS = (
    "select n.nspname, c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid, true), obj_description(k.oid, 'pg_constraint') "
    "from pg_constraint k join pg_class c on c.oid = k.conrelid " + _RELATION + " and k.contype in ('p', 'u', 'f', 'c', 'x')"
)


def _constraints(conn: Any) -> Iterator[Item]:
    for schema, table, name, contype, definition, comment in _rows(conn, _CONSTRAINTS):
        owner = qualified(schema, table)
        kind = _CONSTRAINT_KINDS[contype]
        yield Item(
            kind,
            "%s.%s" % (owner, name),
            label="%s on %s" % (name, owner),
            table=owner,
            fields=(("definition", text(definition)), ("comment", text(comment))),
            part_of=("table", owner),
            ident=(schema, table, name),
        )


# Indexes that carry a primary key, unique or exclusion constraint are the constraint's (compared there).
_INDEXES = (
    "select n.nspname, c.relname, c.relkind, i.relname, pg_get_indexdef(x.indexrelid, 0, true), x.indisvalid, "
    "  array(select pg_get_indexdef(x.indexrelid, k, true) from generate_series(1, x.indnkeyatts) k order by k), "
    "  obj_description(i.oid, 'pg_class') "
    "from pg_index x join pg_class i on i.oid = x.indexrelid join pg_class c on c.oid = x.indrelid " + _RELATION + " and not exists "
    "(select from pg_constraint k where k.conindid = x.indexrelid and k.conrelid = x.indrelid and k.contype in ('p', 'u', 'x'))"
)


def _indexes(conn: Any) -> Iterator[Item]:
    for schema, table, relkind, name, definition, valid, columns, comment in _rows(conn, _INDEXES):
        owner = qualified(schema, table)
        yield Item(
            "index",
            qualified(schema, name),
            label="%s on %s(%s)" % (qualified(schema, name), owner, ", ".join(columns)),  # compare_metadata's wording
            table=owner,
            fields=(("definition", text(definition)), ("validity", "valid" if valid else "invalid"), ("comment", text(comment))),
            part_of=(_RELKINDS.get(relkind, "table"), owner),
            ident=(schema, table, name),
        )


_SEQUENCES = (
    "select n.nspname, c.relname, format_type(s.seqtypid, null), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle, "
    "  o.nspname, o.relname, o.attname, obj_description(c.oid, 'pg_class') "
    "from pg_class c join pg_sequence s on s.seqrelid = c.oid "
    "left join lateral (select tn.nspname, t.relname, a.attname from pg_depend d join pg_class t on t.oid = d.refobjid "
    "  join pg_namespace tn on tn.oid = t.relnamespace join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid "
    "  where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i') limit 1) o on true "
    + _RELATION
    + " and c.relkind = 'S'"
)


def _sequences(conn: Any) -> Iterator[Item]:
    for schema, name, type_, start, increment, minimum, maximum, cache, cycle, owner_schema, owner, column, comment in _rows(conn, _SEQUENCES):
        parameters = "(as %s, start %s, increment %s, min %s, max %s, cache %s, %s)" % (
            type_,
            start,
            increment,
            minimum,
            maximum,
            cache,
            "cycle" if cycle else "no cycle",
        )
        table = qualified(owner_schema, owner) if owner else None  # a serial's or identity's sequence goes with its column
        yield Item(
            "sequence",
            qualified(schema, name),
            table=table,
            fields=(("parameters", parameters), ("owned by", "%s.%s" % (table, column) if table else NONE), ("comment", text(comment))),
            part_of=("column", "%s.%s" % (table, column)) if table else None,
        )


_FUNCTION_KINDS = {"f": "function", "p": "procedure", "a": "aggregate", "w": "function"}
_FUNCTIONS = (
    "select n.nspname, p.proname, oidvectortypes(p.proargtypes), p.prokind, "
    "  case when p.prokind = 'a' then 'returns ' || pg_get_function_result(p.oid) else pg_get_functiondef(p.oid) end, "
    "  obj_description(p.oid, 'pg_proc') "
    "from pg_proc p join pg_namespace n on n.oid = p.pronamespace where %s and %s" % (_USER_SCHEMA, _own("pg_proc", "p.oid"))
)


def _functions(conn: Any) -> Iterator[Item]:
    for schema, name, arguments, prokind, definition, comment in _rows(conn, _FUNCTIONS):
        yield Item(
            _FUNCTION_KINDS.get(prokind, "function"),
            "%s(%s)" % (qualified(schema, name), arguments),
            fields=(("definition", text(definition)), ("comment", text(comment))),
        )


# Internal triggers (foreign keys') are the constraint's; a partition's clone of its parent's trigger is the parent's.
_TRIGGERS = (
    "select n.nspname, c.relname, c.relkind, g.tgname, pg_get_triggerdef(g.oid, true), g.tgenabled, obj_description(g.oid, 'pg_trigger') "
    "from pg_trigger g join pg_class c on c.oid = g.tgrelid " + _RELATION + " and not g.tgisinternal and g.tgparentid = 0"
)
_ENABLED = {"O": "enabled", "D": "disabled", "R": "replica", "A": "always"}


def _triggers(conn: Any) -> Iterator[Item]:
    for schema, table, relkind, name, definition, enabled, comment in _rows(conn, _TRIGGERS):
        owner = qualified(schema, table)
        yield Item(
            "trigger",
            "%s.%s" % (owner, name),
            label="%s on %s" % (name, owner),
            table=owner,
            fields=(("definition", text(definition)), ("enabled", _ENABLED.get(enabled, enabled)), ("comment", text(comment))),
            part_of=(_RELKINDS.get(relkind, "table"), owner),
        )


_RULES = (
    "select n.nspname, c.relname, c.relkind, r.rulename, pg_get_ruledef(r.oid, true) "
    "from pg_rewrite r join pg_class c on c.oid = r.ev_class " + _RELATION + " and r.rulename <> '_RETURN'"
)


def _rules(conn: Any) -> Iterator[Item]:
    for schema, table, relkind, name, definition in _rows(conn, _RULES):
        owner = qualified(schema, table)
        yield Item(
            "rule",
            "%s.%s" % (owner, name),
            label="%s on %s" % (name, owner),
            table=owner,
            fields=(("definition", text(definition)),),
            part_of=(_RELKINDS.get(relkind, "table"), owner),
        )


_POLICIES = (
    "select n.nspname, c.relname, p.polname, p.polcmd, p.polpermissive, "
    "  array_to_string(array(select case when r = 0 then 'public' else r::regrole::text end from unnest(p.polroles) r order by 1), ', '), "
    "  pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid) "
    "from pg_policy p join pg_class c on c.oid = p.polrelid " + _RELATION
)
_COMMANDS = {"*": "all", "r": "select", "a": "insert", "w": "update", "d": "delete"}


def _policies(conn: Any) -> Iterator[Item]:
    for schema, table, name, command, permissive, roles, using, check in _rows(conn, _POLICIES):
        owner = qualified(schema, table)
        definition = "%s for %s to %s using (%s) with check (%s)" % (
            "permissive" if permissive else "restrictive",
            _COMMANDS.get(command, command),
            roles,
            text(using),
            text(check),
        )
        yield Item(
            "policy", "%s.%s" % (owner, name), label="%s on %s" % (name, owner), table=owner, fields=(("definition", definition),), part_of=("table", owner)
        )


_STATISTICS = (
    "select n.nspname, s.stxname, pg_get_statisticsobjdef(s.oid) "
    "from pg_statistic_ext s join pg_namespace n on n.oid = s.stxnamespace where %s and %s" % (_USER_SCHEMA, _own("pg_statistic_ext", "s.oid"))
)


def _statistics(conn: Any) -> Iterator[Item]:
    for schema, name, definition in _rows(conn, _STATISTICS):
        yield Item("statistics object", qualified(schema, name), fields=(("definition", text(definition)),))


_EVENT_TRIGGERS = (
    "select v.evtname, v.evtevent, v.evtfoid::regproc::text, v.evtenabled, array_to_string(v.evttags, ', ') "
    "from pg_event_trigger v where " + _own("pg_event_trigger", "v.oid")
)


def _event_triggers(conn: Any) -> Iterator[Item]:
    for name, event, function, enabled, tags in _rows(conn, _EVENT_TRIGGERS):
        definition = "on %s when tag in (%s) execute %s" % (event, tags or "any", function)
        yield Item("event trigger", name, fields=(("definition", definition), ("enabled", _ENABLED.get(enabled, enabled))))


READERS: tuple[Callable[[Any], Iterator[Item]], ...] = (
    _schemas,
    _extensions,
    _collations,
    _types,
    _tables,
    _columns,
    _constraints,
    _indexes,
    _sequences,
    _functions,
    _triggers,
    _rules,
    _policies,
    _statistics,
    _event_triggers,
)


def _literal(value: str) -> str:
    return "'%s'" % value.replace("'", "''")


def read_inventory(conn: Any) -> Inventory:
    """Every schema object of the PostgreSQL database `conn` is connected to (a SQLAlchemy Connection), in one
    pass over its catalog; nothing is written, and the session is left as it was."""
    started_here = not conn.in_transaction()
    try:
        before = conn.exec_driver_sql("select current_setting('search_path')").scalar()
        # Only the default schema on the search_path while reading, so that the catalog's functions qualify every
        # other name alike on both databases (a role's or a database's own search_path would not be alike).
        conn.exec_driver_sql("select set_config('search_path', %s, true)" % _literal(DEFAULT_SCHEMA))
        inventory = inventory_of(item for reader in READERS for item in reader(conn))
        conn.exec_driver_sql("select set_config('search_path', %s, true)" % _literal(str(before)))
        return inventory
    finally:
        if started_here and conn.in_transaction():
            conn.rollback()


# -- PostgreSQL: the same expression printed two ways ---------------------------------------
# PostgreSQL prints an expression from its parsed form, and parsing the printed text again can give another form:
# `x IN ('a', 'b')` on a varchar prints as `(ARRAY['a'::character varying, ...])::text[]`, which a dump restores as
# `ARRAY['a'::character varying::text, ...]`. A database that was dumped and restored (a restore, a drill's copy, a
# move to another server) would differ from the migrations' build in every such CHECK, default, index and view.
# Where two values differ, each is created once more in the scratch database (a savepoint, rolled back) and printed
# again: equal then, they are the same thing.
CANONICAL = "fleet_canonical"


def _quote(name: str) -> str:
    return '"%s"' % name.replace('"', '""')


def _regclass(schema: str, name: str) -> str:
    return "%s::regclass" % _literal("%s.%s" % (_quote(schema), _quote(name)))


def _canonical_check(conn: Any, item: Item, value: str) -> str | None:
    schema, table, _ = item.ident
    conn.exec_driver_sql("ALTER TABLE %s.%s ADD CONSTRAINT %s %s" % (_quote(schema), _quote(table), CANONICAL, value))
    sql = "select pg_get_constraintdef(oid, true) from pg_constraint where conrelid = %s and conname = '%s'" % (_regclass(schema, table), CANONICAL)
    return conn.exec_driver_sql(sql).scalar()  # type: ignore[no-any-return]


def _canonical_default(conn: Any, item: Item, value: str) -> str | None:
    schema, table, column = item.ident
    conn.exec_driver_sql("ALTER TABLE %s.%s ALTER COLUMN %s SET DEFAULT %s" % (_quote(schema), _quote(table), _quote(column), value))
    sql = (
        "select pg_get_expr(d.adbin, d.adrelid) from pg_attrdef d join pg_attribute a on a.attrelid = d.adrelid and a.attnum = d.adnum "
        "where d.adrelid = %s and a.attname = %s" % (_regclass(schema, table), _literal(column))
    )
    return conn.exec_driver_sql(sql).scalar()  # type: ignore[no-any-return]


def _canonical_view(conn: Any, item: Item, value: str) -> str | None:
    schema, _ = item.ident
    conn.exec_driver_sql("CREATE VIEW %s.%s AS %s" % (_quote(schema), CANONICAL, value))
    return conn.exec_driver_sql("select pg_get_viewdef(%s, true)" % _regclass(schema, CANONICAL)).scalar()  # type: ignore[no-any-return]


_INDEX_NAME = re.compile(r'^(CREATE (?:UNIQUE )?INDEX )(?:"(?:[^"]|"")+"|\S+)( ON )')


def _canonical_index(conn: Any, item: Item, value: str) -> str | None:
    schema, _, _ = item.ident
    statement, renamed = _INDEX_NAME.subn(r"\g<1>%s\g<2>" % CANONICAL, value, count=1)
    if not renamed:
        return None
    conn.exec_driver_sql(statement)
    return conn.exec_driver_sql("select pg_get_indexdef(%s, 0, true)" % _regclass(schema, CANONICAL)).scalar()  # type: ignore[no-any-return]


CANONICALS: dict[tuple[str, str], Callable[[Any, Item, str], str | None]] = {
    ("check constraint", "definition"): _canonical_check,
    ("column", "default"): _canonical_default,
    ("view", "definition"): _canonical_view,
    ("materialized view", "definition"): _canonical_view,
    ("index", "definition"): _canonical_index,
}


def reconcile_printing(scratch: Any, live: Inventory, expected: Inventory) -> Inventory:
    """`live` with each value that differs from the expected one only in how PostgreSQL prints it taken from
    `expected`, tried in the scratch database `scratch` is connected to (expected's own); nothing is kept there."""
    pending = [(key, what) for key in live.keys() & expected.keys() for what in _differing(live[key], expected[key]) if (key[0], what) in CANONICALS]
    if not pending:
        return live
    reconciled = dict(live)
    started_here = not scratch.in_transaction()
    try:
        scratch.exec_driver_sql("select set_config('search_path', %s, true)" % _literal(DEFAULT_SCHEMA))  # as read
        for key, what in pending:
            mine, theirs = live[key], expected[key]
            wanted = dict(theirs.fields)[what]
            printed = _printed_again(scratch, mine, what)
            if printed is not None and printed == _printed_again(scratch, theirs, what):
                reconciled[key] = replace(reconciled[key], fields=tuple((w, wanted if w == what else v) for w, v in reconciled[key].fields))
    finally:
        if started_here and scratch.in_transaction():
            scratch.rollback()
    return reconciled


def _differing(live: Item, expected: Item) -> list[str]:
    wanted = dict(expected.fields)
    return [what for what, value in live.fields if NONE not in (value, wanted.get(what, NONE)) and value != wanted.get(what)]


def _printed_again(conn: Any, item: Item, what: str) -> str | None:
    """The value created once more and printed by PostgreSQL; None when it cannot be (then the difference stands)."""
    savepoint = conn.begin_nested()
    try:
        return CANONICALS[(item.kind, what)](conn, item, dict(item.fields)[what])
    except Exception:  # noqa: BLE001 - any failure leaves the difference as it was read
        return None
    finally:
        savepoint.rollback()


# -- SQLite: views and triggers ------------------------------------------------------
def read_sqlite_objects(conn: Any) -> Inventory:
    """The views and triggers of a SQLite database (compare_metadata sees neither), by their normalised SQL."""
    rows = _rows(conn, "select type, name, tbl_name, sql from sqlite_master where type in ('view', 'trigger') and name not like 'sqlite!_%' escape '!'")
    items = []
    for type_, name, table, sql in rows:
        if type_ == "view":
            items.append(Item("view", name, fields=(("definition", one_line(text(sql))),)))
        else:
            label = "%s on %s" % (name, table)
            items.append(Item("trigger", "%s.%s" % (table, name), label=label, table=table, fields=(("definition", one_line(text(sql))),)))
    return inventory_of(items)

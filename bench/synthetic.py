"""The benchmark's synthetic Alembic project, generated at run time from one description.

Every revision is an operation on an in-memory schema; the same schema, after the last revision, is rendered as
models.py. So the revisions and the models cannot disagree: `alembic check` and alembic-fleet's verification
(compare_metadata) find no difference at head.

Revision 1 creates companies and daily_ohlcv (the table the benchmark fills); revisions 2-35 are the cheap DDL of
an ordinary project's life: nullable columns, small tables with foreign keys, indexes on those small tables,
comments. None of them rewrites or scans daily_ohlcv.
"""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class Col:
    name: str
    type: str  # a SQLAlchemy type expression, rendered verbatim in the revisions and in models.py
    nullable: bool = True
    primary_key: bool = False
    fk: str | None = None  # "table.column"
    comment: str | None = None

    def render(self, table: str) -> str:
        args = [repr(self.name), self.type]
        if self.fk:
            args.append("sa.ForeignKey(%r, name=%r)" % (self.fk, "fk_%s_%s" % (table, self.name)))
        if self.primary_key:
            args.append("primary_key=True")
        else:
            args.append("nullable=%s" % self.nullable)
        if self.comment:
            args.append("comment=%r" % self.comment)
        return "sa.Column(%s)" % ", ".join(args)


@dataclass
class Table:
    name: str
    columns: list[Col]
    primary_key: tuple[str, ...] = ()  # a composite key; single-column keys are on the column
    indexes: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    comment: str | None = None

    def column(self, name: str) -> Col:
        return next(col for col in self.columns if col.name == name)


Schema = dict[str, Table]


class Op:
    """One schema change: its upgrade and downgrade code, and what it does to the schema."""

    slug = "change"

    def upgrade(self, schema: Schema) -> list[str]:
        raise NotImplementedError

    def downgrade(self, schema: Schema) -> list[str]:
        raise NotImplementedError

    def apply(self, schema: Schema) -> None:
        raise NotImplementedError


@dataclass
class CreateTable(Op):
    table: Table

    @property
    def slug(self) -> str:  # type: ignore[override]
        return "create_%s" % self.table.name

    def upgrade(self, schema: Schema) -> list[str]:
        parts = [repr(self.table.name), *(col.render(self.table.name) for col in self.table.columns)]
        if self.table.primary_key:
            parts.append("sa.PrimaryKeyConstraint(%s, name=%r)" % (", ".join(map(repr, self.table.primary_key)), "pk_%s" % self.table.name))
        return ["op.create_table(", *("    %s," % part for part in parts), ")"]

    def downgrade(self, schema: Schema) -> list[str]:
        return ["op.drop_table(%r)" % self.table.name]

    def apply(self, schema: Schema) -> None:
        schema[self.table.name] = Table(self.table.name, list(self.table.columns), self.table.primary_key)


@dataclass
class AddColumn(Op):
    table: str
    col: Col

    @property
    def slug(self) -> str:  # type: ignore[override]
        return "add_%s_%s" % (self.table, self.col.name)

    def upgrade(self, schema: Schema) -> list[str]:
        return ["op.add_column(%r, %s)" % (self.table, self.col.render(self.table))]

    def downgrade(self, schema: Schema) -> list[str]:
        return ["op.drop_column(%r, %r)" % (self.table, self.col.name)]

    def apply(self, schema: Schema) -> None:
        schema[self.table].columns.append(self.col)


@dataclass
class CreateIndex(Op):
    name: str
    table: str
    columns: tuple[str, ...]

    @property
    def slug(self) -> str:  # type: ignore[override]
        return "index_%s" % self.name

    def upgrade(self, schema: Schema) -> list[str]:
        return ["op.create_index(%r, %r, %r)" % (self.name, self.table, list(self.columns))]

    def downgrade(self, schema: Schema) -> list[str]:
        return ["op.drop_index(%r, table_name=%r)" % (self.name, self.table)]

    def apply(self, schema: Schema) -> None:
        schema[self.table].indexes.append((self.name, self.columns))


@dataclass
class TableComment(Op):
    table: str
    text: str

    @property
    def slug(self) -> str:  # type: ignore[override]
        return "comment_%s" % self.table

    def upgrade(self, schema: Schema) -> list[str]:
        return ["op.create_table_comment(%r, %r)" % (self.table, self.text)]

    def downgrade(self, schema: Schema) -> list[str]:
        return ["op.drop_table_comment(%r, existing_comment=%r)" % (self.table, self.text)]

    def apply(self, schema: Schema) -> None:
        schema[self.table].comment = self.text


@dataclass
class ColumnComment(Op):
    table: str
    column: str
    text: str

    @property
    def slug(self) -> str:  # type: ignore[override]
        return "comment_%s_%s" % (self.table, self.column)

    def _alter(self, schema: Schema, comment: str | None, existing: str | None) -> list[str]:
        col = schema[self.table].column(self.column)
        return [
            "op.alter_column(%r, %r, existing_type=%s, existing_nullable=%s, comment=%r, existing_comment=%r)"
            % (self.table, self.column, col.type, col.nullable, comment, existing)
        ]

    def upgrade(self, schema: Schema) -> list[str]:
        return self._alter(schema, self.text, None)

    def downgrade(self, schema: Schema) -> list[str]:
        return self._alter(schema, None, self.text)

    def apply(self, schema: Schema) -> None:
        table = schema[self.table]
        table.columns = [replace(col, comment=self.text) if col.name == self.column else col for col in table.columns]


PRICE = "sa.Numeric(12, 4)"
ID = Col("id", "sa.Integer()", primary_key=True)


def _symbol_fk() -> Col:
    return Col("symbol", "sa.Text()", nullable=False, fk="companies.symbol")


# The whole history: revision n is HISTORY[n - 1].
HISTORY: list[Op] = [
    # 1: the two tables; daily_ohlcv is what the benchmark fills.
    CreateTable(Table("companies", [Col("symbol", "sa.Text()", primary_key=True), Col("name", "sa.Text()", nullable=False)])),
    AddColumn("companies", Col("sector", "sa.Text()")),
    AddColumn("companies", Col("industry", "sa.Text()")),
    CreateTable(Table("exchanges", [ID, Col("code", "sa.String(16)", nullable=False), Col("name", "sa.Text()", nullable=False)])),
    AddColumn("companies", Col("exchange_code", "sa.String(16)")),
    CreateTable(Table("dividends", [ID, _symbol_fk(), Col("ex_date", "sa.Date()", nullable=False), Col("amount", PRICE, nullable=False)])),
    CreateIndex("ix_dividends_symbol", "dividends", ("symbol",)),
    AddColumn("daily_ohlcv", Col("adj_close", PRICE)),
    CreateTable(Table("splits", [ID, _symbol_fk(), Col("split_date", "sa.Date()", nullable=False), Col("ratio", PRICE, nullable=False)])),
    CreateIndex("ix_splits_symbol", "splits", ("symbol",)),
    TableComment("companies", "Listed companies, one row per symbol"),
    AddColumn("companies", Col("country", "sa.String(2)")),
    AddColumn("companies", Col("currency", "sa.String(3)")),
    CreateTable(Table("analysts", [ID, Col("name", "sa.Text()", nullable=False), Col("firm", "sa.Text()")])),
    CreateTable(
        Table(
            "ratings",
            [
                ID,
                Col("analyst_id", "sa.Integer()", nullable=False, fk="analysts.id"),
                _symbol_fk(),
                Col("rating", "sa.String(16)", nullable=False),
                Col("rated_on", "sa.Date()", nullable=False),
            ],
        )
    ),
    CreateIndex("ix_ratings_symbol", "ratings", ("symbol",)),
    CreateIndex("ix_ratings_analyst_id", "ratings", ("analyst_id",)),
    AddColumn("daily_ohlcv", Col("vwap", PRICE)),
    TableComment("daily_ohlcv", "End-of-day prices and volume per symbol and trading day"),
    CreateTable(
        Table(
            "earnings",
            [ID, _symbol_fk(), Col("period_end", "sa.Date()", nullable=False), Col("eps", PRICE), Col("revenue", "sa.BigInteger()")],
        )
    ),
    CreateIndex("ix_earnings_symbol_period_end", "earnings", ("symbol", "period_end")),
    AddColumn("companies", Col("isin", "sa.String(12)")),
    AddColumn("companies", Col("listed_on", "sa.Date()")),
    CreateTable(Table("watchlists", [ID, Col("name", "sa.Text()", nullable=False), Col("created_at", "sa.DateTime(timezone=True)")])),
    CreateTable(
        Table(
            "watchlist_items",
            [ID, Col("watchlist_id", "sa.Integer()", nullable=False, fk="watchlists.id"), _symbol_fk(), Col("added_at", "sa.DateTime(timezone=True)")],
        )
    ),
    CreateIndex("ix_watchlist_items_watchlist_id", "watchlist_items", ("watchlist_id",)),
    ColumnComment("daily_ohlcv", "volume", "Shares traded that day"),
    AddColumn("daily_ohlcv", Col("trades", "sa.Integer()")),
    CreateTable(
        Table(
            "news",
            [
                ID,
                _symbol_fk(),
                Col("published_at", "sa.DateTime(timezone=True)", nullable=False),
                Col("headline", "sa.Text()", nullable=False),
                Col("url", "sa.Text()"),
            ],
        )
    ),
    CreateIndex("ix_news_symbol_published_at", "news", ("symbol", "published_at")),
    AddColumn("companies", Col("website", "sa.Text()")),
    AddColumn("companies", Col("employees", "sa.Integer()")),
    ColumnComment("companies", "sector", "GICS sector"),
    AddColumn("daily_ohlcv", Col("source", "sa.String(16)")),
    CreateIndex("ix_analysts_firm", "analysts", ("firm",)),
]
HISTORY.insert(
    1,
    CreateTable(
        Table(
            "daily_ohlcv",
            [
                Col("symbol", "sa.Text()", nullable=False),
                Col("trade_date", "sa.Date()", nullable=False),
                *(Col(name, PRICE, nullable=False) for name in ("open", "high", "low", "close")),
                Col("volume", "sa.BigInteger()", nullable=False),
            ],
            primary_key=("symbol", "trade_date"),
        )
    ),
)

# The lock section's extra revision: a nullable column on the big table, which needs ACCESS EXCLUSIVE.
LOCK_REVISION: Op = AddColumn("daily_ohlcv", Col("note", "sa.Text()"))


@dataclass(frozen=True)
class Project:
    ini: Path
    revisions: tuple[str, ...]  # oldest first

    @property
    def head(self) -> str:
        return self.revisions[-1]

    @property
    def first(self) -> str:
        return self.revisions[0]


def revision_id(n: int) -> str:
    """Stable 12-hex ids, so a kept cluster and a rerun agree on them."""
    return hashlib.sha1(b"alembic-fleet-bench-%d" % n).hexdigest()[:12]


def _group(ops: Sequence[Op]) -> list[list[Op]]:
    """Revision 1 holds both creates (the brief's first revision); every later op is a revision of its own."""
    return [list(ops[:2]), *([op] for op in ops[2:])]


def write_project(dest: Path, with_lock_revision: bool = False) -> Project:
    """Generate the project under dest (alembic.ini, env.py, script.py.mako, models.py, versions/)."""
    versions = dest / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    ops = [*HISTORY, LOCK_REVISION] if with_lock_revision else list(HISTORY)
    schema: Schema = {}
    ids: list[str] = []
    for n, group in enumerate(_group(ops), start=1):
        rev, down = revision_id(n), (ids[-1] if ids else None)
        up_lines: list[str] = []
        for op in group:
            up_lines += op.upgrade(schema)
            op.apply(schema)
        down_lines = [line for op in reversed(group) for line in op.downgrade(schema)]
        slug = group[0].slug if n > 1 else "create_companies_and_daily_ohlcv"
        (versions / ("%03d_%s_%s.py" % (n, rev, slug))).write_text(_revision_file(rev, down, slug.replace("_", " "), up_lines, down_lines))
        ids.append(rev)
    (dest / "models.py").write_text(_models_file(schema))
    (dest / "env.py").write_text(ENV_PY)
    (dest / "alembic.ini").write_text(ALEMBIC_INI)
    (dest / "script.py.mako").write_text(SCRIPT_MAKO)
    return Project(ini=dest / "alembic.ini", revisions=tuple(ids))


def _revision_file(rev: str, down: str | None, message: str, up: list[str], down_lines: list[str]) -> str:
    def body(lines: list[str]) -> str:
        return textwrap.indent("\n".join(lines), "    ")

    return REVISION_TEMPLATE.format(
        message=message.capitalize(), rev=rev, rev_repr=repr(rev), down=down, down_repr=repr(down), upgrade=body(up), downgrade=body(down_lines)
    )


def _models_file(schema: Schema) -> str:
    blocks = []
    for table in schema.values():
        parts = [repr(table.name), "metadata", *(col.render(table.name) for col in table.columns)]
        if table.primary_key:
            parts.append("sa.PrimaryKeyConstraint(%s, name=%r)" % (", ".join(map(repr, table.primary_key)), "pk_%s" % table.name))
        parts += ["sa.Index(%r, %s)" % (name, ", ".join(map(repr, cols))) for name, cols in table.indexes]
        if table.comment:
            parts.append("comment=%r" % table.comment)
        blocks.append("%s = sa.Table(\n%s\n)\n" % (table.name, "\n".join("    %s," % part for part in parts)))
    return MODELS_HEADER + "\n\n".join(blocks)


REVISION_TEMPLATE = '''"""{message}

Revision ID: {rev}
Revises: {down}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = {rev_repr}
down_revision = {down_repr}
branch_labels = None
depends_on = None


def upgrade() -> None:
{upgrade}


def downgrade() -> None:
{downgrade}
'''

MODELS_HEADER = '''"""The schema at head of the benchmark's synthetic project (generated with its revisions by bench/synthetic.py)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

'''

ENV_PY = '''"""Alembic environment of the benchmark's synthetic project (generated by bench/synthetic.py).

Where the migrations run, in order: config.attributes["connection"] when the caller shares one (Alembic's
"sharing a connection" recipe; alembic-fleet's modules do); else a NullPool engine on $BENCH_DATABASE_URL when it is
set (the raw `alembic` CLI runs of the benchmark); else sqlalchemy.url of alembic.ini. No URL carries a password:
libpq reads it from PGPASSFILE.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import NullPool

import models

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> URL:
    url = make_url(os.environ.get("BENCH_DATABASE_URL") or config.get_main_option("sqlalchemy.url") or "")
    # Written for psycopg2 (SQLAlchemy 2.1's default PostgreSQL driver is psycopg 3): a plain postgresql:// URL,
    # which libpq's tools accept too, is taken to mean it.
    return url.set(drivername="postgresql+psycopg2") if url.drivername == "postgresql" else url


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=models.metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=models.metadata, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    _run(config.attributes["connection"])
else:
    engine = create_engine(_url(), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()
'''

ALEMBIC_INI = """# The benchmark's synthetic project (generated by bench/synthetic.py). Paths are anchored on this file.
[alembic]
script_location = %(here)s
prepend_sys_path = %(here)s
path_separator = os
# Password-free placeholder: the benchmark sets $BENCH_DATABASE_URL, alembic-fleet's modules set their own target.
sqlalchemy.url = postgresql://migrator@127.0.0.1:5432/bench

[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console
qualname =

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
datefmt = %H:%M:%S
"""

SCRIPT_MAKO = '''"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
'''

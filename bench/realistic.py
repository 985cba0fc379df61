"""The benchmark's real-shaped Alembic project: what open-source histories do, generated from one description.

The synthetic project (synthetic.py) is one cheap DDL operation per revision on a straight line. Real histories
are not like that, and what they do is what costs the review and the upgrade time:

- revisions of several operations, with docstrings and helpers around them;
- indexes, unique and check constraints, foreign keys, server defaults;
- PostgreSQL enum types, created through ``op.get_bind()`` (offline mode cannot render those revisions);
- data migrations through ``op.get_bind()`` (a backfill, then the column made NOT NULL);
- conditional helpers that inspect the live schema before acting (unrenderable offline too);
- ``batch_alter_table`` blocks (written for SQLite, run as plain ALTERs on PostgreSQL);
- an ``autocommit_block()`` with ``CREATE INDEX CONCURRENTLY``;
- a branch point, two branches and a merge revision.

Every revision is a list of operations on an in-memory schema; the schema after the last one is rendered as
models.py, so ``alembic check`` and alembic-fleet's verification (compare_metadata, enums and server defaults
included) find nothing at head. Revision ids are stable (a kept cluster and a rerun agree).
"""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from synthetic import ALEMBIC_INI, ENV_PY, SCRIPT_MAKO, Project


@dataclass(frozen=True)
class Col:
    name: str
    type: str  # SQLAlchemy type expression as the models write it
    nullable: bool = True
    primary_key: bool = False
    fk: str | None = None
    default: str | None = None  # server_default, as SQL text
    revision_type: str | None = None  # the type as a revision writes it, when it differs (an enum created by hand)

    def render(self, table: str, in_revision: bool = False) -> str:
        args = [repr(self.name), (self.revision_type or self.type) if in_revision else self.type]
        if self.fk:
            args.append("sa.ForeignKey(%r, name=%r)" % (self.fk, "fk_%s_%s" % (table, self.name)))
        if self.primary_key:
            args.append("primary_key=True")
        else:
            args.append("nullable=%s" % self.nullable)
        if self.default is not None:
            args.append("server_default=sa.text(%r)" % self.default)
        return "sa.Column(%s)" % ", ".join(args)


@dataclass
class Table:
    name: str
    columns: list[Col]
    indexes: list[tuple[str, tuple[str, ...], bool]] = field(default_factory=list)  # (name, columns, unique)
    uniques: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    checks: list[tuple[str, str]] = field(default_factory=list)

    def column(self, name: str) -> Col:
        return next(col for col in self.columns if col.name == name)

    def set_column(self, col: Col) -> None:
        self.columns = [col if c.name == col.name else c for c in self.columns]


Schema = dict[str, Table]


class Op:
    """One change: its upgrade and downgrade lines, helpers it needs at module level, and what it does to the schema."""

    helpers: tuple[str, ...] = ()

    def upgrade(self, schema: Schema) -> list[str]:
        raise NotImplementedError

    def downgrade(self, schema: Schema) -> list[str]:
        raise NotImplementedError

    def apply(self, schema: Schema) -> None:
        raise NotImplementedError


def _id() -> Col:
    return Col("id", "sa.BigInteger()", primary_key=True)


def _created_at() -> Col:
    return Col("created_at", "sa.DateTime(timezone=True)", nullable=False, default="now()")


@dataclass
class CreateTable(Op):
    table: Table

    def upgrade(self, schema: Schema) -> list[str]:
        t = self.table
        parts = [repr(t.name), *(col.render(t.name, in_revision=True) for col in t.columns)]
        parts += ["sa.UniqueConstraint(%s, name=%r)" % (", ".join(map(repr, cols)), name) for name, cols in t.uniques]
        parts += ["sa.CheckConstraint(%r, name=%r)" % (sql, name) for name, sql in t.checks]
        lines = ["op.create_table(", *("    %s," % part for part in parts), ")"]
        for name, cols, unique in t.indexes:
            lines.append("op.create_index(%r, %r, %r, unique=%s)" % (name, t.name, list(cols), unique))
        return lines

    def downgrade(self, schema: Schema) -> list[str]:
        return ["op.drop_index(%r, table_name=%r)" % (name, self.table.name) for name, _, _ in reversed(self.table.indexes)] + [
            "op.drop_table(%r)" % self.table.name
        ]

    def apply(self, schema: Schema) -> None:
        t = self.table
        schema[t.name] = Table(t.name, list(t.columns), list(t.indexes), list(t.uniques), list(t.checks))


@dataclass
class AddColumns(Op):
    table: str
    cols: tuple[Col, ...]

    def upgrade(self, schema: Schema) -> list[str]:
        return ["op.add_column(%r, %s)" % (self.table, col.render(self.table, in_revision=True)) for col in self.cols]

    def downgrade(self, schema: Schema) -> list[str]:
        return ["op.drop_column(%r, %r)" % (self.table, col.name) for col in reversed(self.cols)]

    def apply(self, schema: Schema) -> None:
        schema[self.table].columns.extend(self.cols)


@dataclass
class CreateIndex(Op):
    name: str
    table: str
    columns: tuple[str, ...]
    unique: bool = False

    def upgrade(self, schema: Schema) -> list[str]:
        return ["op.create_index(%r, %r, %r, unique=%s)" % (self.name, self.table, list(self.columns), self.unique)]

    def downgrade(self, schema: Schema) -> list[str]:
        return ["op.drop_index(%r, table_name=%r)" % (self.name, self.table)]

    def apply(self, schema: Schema) -> None:
        schema[self.table].indexes.append((self.name, self.columns, self.unique))


@dataclass
class ConcurrentIndex(CreateIndex):
    """CREATE INDEX CONCURRENTLY outside the migration's transaction, as large projects do for busy tables."""

    def upgrade(self, schema: Schema) -> list[str]:
        return [
            "with op.get_context().autocommit_block():",
            "    op.create_index(%r, %r, %r, unique=%s, postgresql_concurrently=True)" % (self.name, self.table, list(self.columns), self.unique),
        ]

    def downgrade(self, schema: Schema) -> list[str]:
        return [
            "with op.get_context().autocommit_block():",
            "    op.drop_index(%r, table_name=%r, postgresql_concurrently=True)" % (self.name, self.table),
        ]


@dataclass
class AddUnique(Op):
    name: str
    table: str
    columns: tuple[str, ...]

    def upgrade(self, schema: Schema) -> list[str]:
        return ["op.create_unique_constraint(%r, %r, %r)" % (self.name, self.table, list(self.columns))]

    def downgrade(self, schema: Schema) -> list[str]:
        return ["op.drop_constraint(%r, %r, type_='unique')" % (self.name, self.table)]

    def apply(self, schema: Schema) -> None:
        schema[self.table].uniques.append((self.name, self.columns))


@dataclass
class AddCheck(Op):
    name: str
    table: str
    sql: str

    def upgrade(self, schema: Schema) -> list[str]:
        return ["op.create_check_constraint(%r, %r, %r)" % (self.name, self.table, self.sql)]

    def downgrade(self, schema: Schema) -> list[str]:
        return ["op.drop_constraint(%r, %r, type_='check')" % (self.name, self.table)]

    def apply(self, schema: Schema) -> None:
        schema[self.table].checks.append((self.name, self.sql))


@dataclass
class EnumColumn(Op):
    """A PostgreSQL enum type created through op.get_bind() (checkfirst), then a column of it: offline-unrenderable."""

    table: str
    column: str
    enum: str
    values: tuple[str, ...]
    default: str

    def _type(self) -> str:
        return "postgresql.ENUM(%s, name=%r, create_type=False)" % (", ".join(map(repr, self.values)), self.enum)

    def upgrade(self, schema: Schema) -> list[str]:
        return [
            "%s_type = %s" % (self.enum, self._type()),
            "%s_type.create(op.get_bind(), checkfirst=True)" % self.enum,
            "op.add_column(%r, sa.Column(%r, %s_type, nullable=False, server_default=%r))" % (self.table, self.column, self.enum, self.default),
        ]

    def downgrade(self, schema: Schema) -> list[str]:
        return [
            "op.drop_column(%r, %r)" % (self.table, self.column),
            "%s.drop(op.get_bind(), checkfirst=True)" % self._type(),
        ]

    def apply(self, schema: Schema) -> None:
        model = "sa.Enum(%s, name=%r)" % (", ".join(map(repr, self.values)), self.enum)
        schema[self.table].columns.append(Col(self.column, model, nullable=False, default="'%s'::%s" % (self.default, self.enum)))


@dataclass
class Backfill(Op):
    """A data migration: add a nullable column, fill it from other rows through op.get_bind(), then NOT NULL."""

    table: str
    col: Col
    fill_sql: str  # an UPDATE statement

    def upgrade(self, schema: Schema) -> list[str]:
        nullable = replace(self.col, nullable=True)
        return [
            "op.add_column(%r, %s)" % (self.table, nullable.render(self.table, in_revision=True)),
            "conn = op.get_bind()",
            "updated = conn.execute(sa.text(%r)).rowcount" % self.fill_sql,
            'log.info("backfilled %%s rows of %s.%s", updated)' % (self.table, self.col.name),
            "op.alter_column(%r, %r, existing_type=%s, nullable=False)" % (self.table, self.col.name, self.col.type),
        ]

    def downgrade(self, schema: Schema) -> list[str]:
        return ["op.drop_column(%r, %r)" % (self.table, self.col.name)]

    def apply(self, schema: Schema) -> None:
        schema[self.table].columns.append(replace(self.col, nullable=False))


@dataclass
class IfMissing(Op):
    """A conditional helper: add the column only when the live schema lacks it (inspects through op.get_bind())."""

    table: str
    col: Col
    helpers = (
        "def _has_column(table: str, column: str) -> bool:",
        '    return column in {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}',
    )

    def upgrade(self, schema: Schema) -> list[str]:
        return ["if not _has_column(%r, %r):" % (self.table, self.col.name), "    op.add_column(%r, %s)" % (self.table, self.col.render(self.table, True))]

    def downgrade(self, schema: Schema) -> list[str]:
        return ["if _has_column(%r, %r):" % (self.table, self.col.name), "    op.drop_column(%r, %r)" % (self.table, self.col.name)]

    def apply(self, schema: Schema) -> None:
        schema[self.table].columns.append(self.col)


@dataclass
class Batch(Op):
    """batch_alter_table: columns and an index in one block (recreates the table on SQLite, plain ALTERs here)."""

    table: str
    cols: tuple[Col, ...]
    index: tuple[str, tuple[str, ...]] | None = None

    def upgrade(self, schema: Schema) -> list[str]:
        lines = ["with op.batch_alter_table(%r, schema=None) as batch_op:" % self.table]
        lines += ["    batch_op.add_column(%s)" % col.render(self.table, True) for col in self.cols]
        if self.index:
            lines.append("    batch_op.create_index(batch_op.f(%r), %r, unique=False)" % (self.index[0], list(self.index[1])))
        return lines

    def downgrade(self, schema: Schema) -> list[str]:
        lines = ["with op.batch_alter_table(%r, schema=None) as batch_op:" % self.table]
        if self.index:
            lines.append("    batch_op.drop_index(batch_op.f(%r))" % self.index[0])
        lines += ["    batch_op.drop_column(%r)" % col.name for col in reversed(self.cols)]
        return lines

    def apply(self, schema: Schema) -> None:
        schema[self.table].columns.extend(self.cols)
        if self.index:
            schema[self.table].indexes.append((self.index[0], self.index[1], False))


@dataclass
class AlterDefault(Op):
    table: str
    column: str
    default: str

    def upgrade(self, schema: Schema) -> list[str]:
        col = schema[self.table].column(self.column)
        return ["op.alter_column(%r, %r, existing_type=%s, server_default=sa.text(%r))" % (self.table, self.column, col.type, self.default)]

    def downgrade(self, schema: Schema) -> list[str]:
        col = schema[self.table].column(self.column)
        old = "sa.text(%r)" % col.default if col.default is not None else "None"
        return ["op.alter_column(%r, %r, existing_type=%s, server_default=%s)" % (self.table, self.column, col.type, old)]

    def apply(self, schema: Schema) -> None:
        table = schema[self.table]
        table.set_column(replace(table.column(self.column), default=self.default))


@dataclass(frozen=True)
class Rev:
    message: str
    ops: tuple[Op, ...]
    parents: tuple[int, ...] | None = None  # indexes into the history; None = the previous revision


def _text(name: str, nullable: bool = True, length: int | None = None) -> Col:
    return Col(name, "sa.String(%d)" % length if length else "sa.Text()", nullable=nullable)


def _fk(name: str, target: str, nullable: bool = False) -> Col:
    return Col(name, "sa.BigInteger()", nullable=nullable, fk=target)


def history() -> list[Rev]:
    """The whole history, oldest first: an accounts / projects / events application over a few years."""
    revs: list[Rev] = [
        Rev(
            "initial schema",
            (
                CreateTable(
                    Table(
                        "users",
                        [_id(), _text("email", False, 320), _text("display_name"), _created_at()],
                        indexes=[("ix_users_email", ("email",), True)],
                    )
                ),
                CreateTable(
                    Table(
                        "organizations",
                        [_id(), _text("name", False, 200), _text("slug", False, 64), _created_at()],
                        uniques=[("uq_organizations_slug", ("slug",))],
                    )
                ),
                CreateTable(
                    Table(
                        "memberships",
                        [_id(), _fk("user_id", "users.id"), _fk("organization_id", "organizations.id"), _text("role", False, 32), _created_at()],
                        uniques=[("uq_memberships_user_org", ("user_id", "organization_id"))],
                    )
                ),
            ),
        ),
        Rev("user last login", (AddColumns("users", (Col("last_login_at", "sa.DateTime(timezone=True)"),)),)),
        Rev(
            "projects",
            (
                CreateTable(
                    Table(
                        "projects",
                        [
                            _id(),
                            _fk("organization_id", "organizations.id"),
                            _text("name", False, 200),
                            Col("archived", "sa.Boolean()", False, default="false"),
                            _created_at(),
                        ],
                        indexes=[("ix_projects_organization_id", ("organization_id",), False)],
                    )
                ),
            ),
        ),
        Rev("organization plan", (EnumColumn("organizations", "plan", "organization_plan", ("free", "team", "enterprise"), "free"),)),
        Rev("membership role check", (AddCheck("ck_memberships_role", "memberships", "role IN ('owner', 'admin', 'member')"),)),
        Rev(
            "events",
            (
                CreateTable(
                    Table(
                        "events",
                        [
                            _id(),
                            _fk("project_id", "projects.id"),
                            _fk("user_id", "users.id", True),
                            _text("kind", False, 64),
                            Col("payload", "sa.JSON()"),
                            _created_at(),
                        ],
                    )
                ),
                CreateIndex("ix_events_project_id_created_at", "events", ("project_id", "created_at")),
            ),
        ),
        Rev("user locale", (IfMissing("users", _text("locale", True, 16)),)),
        Rev(
            "project slug backfill",
            (
                Backfill(
                    "projects", _text("slug", False, 64), "UPDATE projects SET slug = lower(regexp_replace(name, '[^a-zA-Z0-9]+', '-', 'g')) WHERE slug IS NULL"
                ),
            ),
        ),
        Rev("unique project slug per organization", (AddUnique("uq_projects_org_slug", "projects", ("organization_id", "slug")),)),
        Rev("batch user profile", (Batch("users", (_text("avatar_url"), _text("timezone", True, 64)), ("ix_users_timezone", ("timezone",))),)),
        Rev("events by user", (ConcurrentIndex("ix_events_user_id", "events", ("user_id",)),)),
        Rev(
            "api tokens",
            (
                CreateTable(
                    Table(
                        "api_tokens",
                        [_id(), _fk("user_id", "users.id"), _text("token_hash", False, 128), Col("expires_at", "sa.DateTime(timezone=True)"), _created_at()],
                        indexes=[("ix_api_tokens_token_hash", ("token_hash",), True), ("ix_api_tokens_user_id", ("user_id",), False)],
                    )
                ),
            ),
        ),
        Rev("project visibility", (EnumColumn("projects", "visibility", "project_visibility", ("private", "internal", "public"), "private"),)),
    ]
    branch_point = len(revs) - 1
    # Two teams branch off: billing and audit, merged later.
    revs += [
        Rev(
            "billing accounts",
            (
                CreateTable(
                    Table(
                        "billing_accounts",
                        [
                            _id(),
                            _fk("organization_id", "organizations.id"),
                            _text("currency", False, 3),
                            Col("balance_cents", "sa.BigInteger()", False, default="0"),
                            _created_at(),
                        ],
                        uniques=[("uq_billing_accounts_organization_id", ("organization_id",))],
                        checks=[("ck_billing_accounts_currency", "length(currency) = 3")],
                    )
                ),
            ),
            parents=(branch_point,),
        ),
        Rev(
            "billing invoices",
            (
                CreateTable(
                    Table(
                        "invoices",
                        [
                            _id(),
                            _fk("billing_account_id", "billing_accounts.id"),
                            Col("amount_cents", "sa.BigInteger()", False),
                            Col("issued_on", "sa.Date()", False),
                            _created_at(),
                        ],
                        indexes=[("ix_invoices_billing_account_id", ("billing_account_id",), False)],
                    )
                ),
            ),
        ),
        Rev(
            "audit log",
            (
                CreateTable(
                    Table(
                        "audit_log",
                        [_id(), _fk("user_id", "users.id", True), _text("action", False, 64), _text("target"), _created_at()],
                        indexes=[("ix_audit_log_created_at", ("created_at",), False)],
                    )
                ),
            ),
            parents=(branch_point,),
        ),
        Rev("audit ip", (AddColumns("audit_log", (_text("ip_address", True, 45),)),)),
    ]
    revs.append(Rev("merge billing and audit", (), parents=(len(revs) - 3, len(revs) - 1)))
    revs += [
        Rev("organization billing email", (AddColumns("organizations", (_text("billing_email", True, 320),)),)),
        Rev(
            "user deactivated",
            (
                Backfill(
                    "users",
                    Col("is_active", "sa.Boolean()", False, default="true"),
                    "UPDATE users SET is_active = last_login_at IS NOT NULL OR created_at > now() - interval '1 year'",
                ),
            ),
        ),
        Rev("events retention index", (CreateIndex("ix_events_created_at", "events", ("created_at",)),)),
        Rev(
            "comments",
            (
                CreateTable(
                    Table(
                        "comments",
                        [
                            _id(),
                            _fk("project_id", "projects.id"),
                            _fk("author_id", "users.id"),
                            _text("body", False),
                            Col("edited_at", "sa.DateTime(timezone=True)"),
                            _created_at(),
                        ],
                        indexes=[("ix_comments_project_id", ("project_id",), False)],
                    )
                ),
            ),
        ),
        Rev("batch comments", (Batch("comments", (Col("pinned", "sa.Boolean()", False, default="false"),)),)),
        Rev(
            "webhooks",
            (
                CreateTable(
                    Table(
                        "webhooks",
                        [
                            _id(),
                            _fk("project_id", "projects.id"),
                            _text("url", False),
                            _text("secret_hash", False, 128),
                            Col("active", "sa.Boolean()", False, default="true"),
                            _created_at(),
                        ],
                    )
                ),
            ),
        ),
        Rev(
            "webhook deliveries",
            (
                CreateTable(
                    Table(
                        "webhook_deliveries",
                        [_id(), _fk("webhook_id", "webhooks.id"), Col("status_code", "sa.Integer()"), Col("duration_ms", "sa.Integer()"), _created_at()],
                        indexes=[("ix_webhook_deliveries_webhook_id", ("webhook_id",), False)],
                    )
                ),
            ),
        ),
        Rev("webhooks start inactive", (AlterDefault("webhooks", "active", "false"),)),
        Rev("delivery status check", (AddCheck("ck_webhook_deliveries_status", "webhook_deliveries", "status_code BETWEEN 100 AND 599"),)),
        Rev("user mfa", (IfMissing("users", Col("mfa_enabled", "sa.Boolean()", False, default="false")),)),
        Rev("project description", (AddColumns("projects", (_text("description"), Col("updated_at", "sa.DateTime(timezone=True)"))),)),
        Rev("event kind enum", (EnumColumn("events", "source", "event_source", ("web", "api", "worker"), "web"),)),
        Rev(
            "organization domain",
            (AddColumns("organizations", (_text("domain", True, 253),)), CreateIndex("ix_organizations_domain", "organizations", ("domain",))),
        ),
        Rev(
            "invoices paid",
            (AddColumns("invoices", (Col("paid_at", "sa.DateTime(timezone=True)"),)), ConcurrentIndex("ix_invoices_paid_at", "invoices", ("paid_at",))),
        ),
        Rev(
            "tags",
            (
                CreateTable(
                    Table(
                        "tags",
                        [_id(), _fk("organization_id", "organizations.id"), _text("name", False, 64)],
                        uniques=[("uq_tags_org_name", ("organization_id", "name"))],
                    )
                ),
            ),
        ),
        Rev(
            "project tags",
            (
                CreateTable(
                    Table(
                        "project_tags",
                        [_id(), _fk("project_id", "projects.id"), _fk("tag_id", "tags.id")],
                        uniques=[("uq_project_tags", ("project_id", "tag_id"))],
                    )
                ),
            ),
        ),
        Rev("membership invited by", (Batch("memberships", (_fk("invited_by_id", "users.id", True),), ("ix_memberships_invited_by_id", ("invited_by_id",))),)),
        Rev(
            "comment count backfill",
            (
                Backfill(
                    "projects",
                    Col("comment_count", "sa.Integer()", False, default="0"),
                    "UPDATE projects SET comment_count = (SELECT count(*) FROM comments WHERE comments.project_id = projects.id)",
                ),
            ),
        ),
    ]
    return revs


def revision_id(n: int) -> str:
    return hashlib.sha1(b"alembic-fleet-bench-real-%d" % n).hexdigest()[:12]


def write_project(dest: Path) -> Project:
    """Generate the project under dest (alembic.ini, env.py, script.py.mako, models.py, versions/); revisions
    oldest first in Project.revisions (the merge's two parents come before it)."""
    versions = dest / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    schema: Schema = {}
    ids: list[str] = []
    for n, rev in enumerate(history(), start=1):
        parents = tuple(ids[i] for i in rev.parents) if rev.parents is not None else ((ids[-1],) if ids else ())
        up: list[str] = []
        downs: list[list[str]] = []
        for op in rev.ops:  # each op's downgrade is written against the schema before it runs
            up += op.upgrade(schema)
            downs.append(op.downgrade(schema))
            op.apply(schema)
        down = [line for lines in reversed(downs) for line in lines]
        rid = revision_id(n)
        slug = rev.message.replace(" ", "_")
        (versions / ("%s_%s.py" % (rid, slug))).write_text(_revision_file(rid, parents, rev.message, up, down, _helpers(rev.ops)))
        ids.append(rid)
    (dest / "models.py").write_text(_models_file(schema))
    (dest / "env.py").write_text(ENV_PY)
    (dest / "alembic.ini").write_text(
        ALEMBIC_INI.replace("synthetic project (generated by bench/synthetic.py)", "real-shaped project (generated by bench/realistic.py)")
    )
    (dest / "script.py.mako").write_text(SCRIPT_MAKO)
    return Project(ini=dest / "alembic.ini", revisions=tuple(ids))


def _helpers(ops: Sequence[Op]) -> list[str]:
    seen: list[tuple[str, ...]] = []
    for op in ops:
        if op.helpers and op.helpers not in seen:
            seen.append(op.helpers)
    return [line for block in seen for line in (*block, "", "")]


def _revision_file(rev: str, parents: tuple[str, ...], message: str, up: list[str], down: list[str], helpers: list[str]) -> str:
    def body(lines: list[str]) -> str:
        return textwrap.indent("\n".join(lines or ["pass"]), "    ")

    down_repr = repr(parents[0]) if len(parents) == 1 else (repr(parents) if parents else "None")
    return REVISION_TEMPLATE.format(
        message=message.capitalize(),
        rev=rev,
        rev_repr=repr(rev),
        down=", ".join(parents) or "None",
        down_repr=down_repr,
        helpers="\n".join(helpers),
        upgrade=body(up),
        downgrade=body(down),
    )


def _models_file(schema: Schema) -> str:
    blocks = []
    for table in schema.values():
        parts = [repr(table.name), "metadata", *(col.render(table.name) for col in table.columns)]
        parts += ["sa.UniqueConstraint(%s, name=%r)" % (", ".join(map(repr, cols)), name) for name, cols in table.uniques]
        parts += ["sa.CheckConstraint(%r, name=%r)" % (sql, name) for name, sql in table.checks]
        parts += ["sa.Index(%r, %s, unique=%s)" % (name, ", ".join(map(repr, cols)), unique) for name, cols, unique in table.indexes]
        blocks.append("%s = sa.Table(\n%s\n)\n" % (table.name, "\n".join("    %s," % part for part in parts)))
    return MODELS_HEADER + "\n\n".join(blocks)


REVISION_TEMPLATE = '''"""{message}

Revision ID: {rev}
Revises: {down}
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = {rev_repr}
down_revision = {down_repr}
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


{helpers}
def upgrade() -> None:
{upgrade}


def downgrade() -> None:
{downgrade}
'''

MODELS_HEADER = '''"""The schema at head of the benchmark's real-shaped project (generated with its revisions by bench/realistic.py)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

'''

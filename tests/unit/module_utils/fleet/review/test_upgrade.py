"""Unit tests of the source-level review of upgrade() (module_utils/fleet/review/upgrade.py).

The linter's fallback when a revision cannot be rendered to SQL offline. Each
hazard gets a small revision file written into tmp_path, and each has a safe
twin that must give no finding. fleet_acknowledge is read here too.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from ansible.module_utils.fleet.alembic.run import Step
from ansible.module_utils.fleet.core.common import FleetError
from ansible.module_utils.fleet.review.lint import _render_note
from ansible.module_utils.fleet.review.rules import RULES
from ansible.module_utils.fleet.review.upgrade import (
    OperationFinding,
    UpgradeReview,
    read_acknowledgements,
    review_upgrade,
)

HEADER = '''\
"""A revision."""
import sqlalchemy as sa
from alembic import op

revision = "abc123"
down_revision = None

'''
# The line of the first statement of upgrade() when the revision is HEADER + upgrade().
FIRST = HEADER.count("\n") + 2


def write(tmp_path: Path, source: str) -> str:
    path = tmp_path / "abc123_a_revision.py"
    path.write_text(source)
    return str(path)


def review(tmp_path: Path, *lines: str, before: str = "", after: str = "") -> UpgradeReview:
    """Review a revision whose upgrade() is the given lines (module code before and after it)."""
    body = "def upgrade() -> None:\n" + "".join("    %s\n" % line for line in lines)
    source = HEADER + textwrap.dedent(before) + body + textwrap.dedent(after) + "\n\ndef downgrade() -> None:\n    pass\n"
    result = review_upgrade(write(tmp_path, source))
    assert all(finding.rule in RULES for finding in result.findings)
    return result


def rules(tmp_path: Path, *lines: str, before: str = "", after: str = "") -> list[str]:
    return [finding.rule for finding in review(tmp_path, *lines, before=before, after=after).findings]


# -- one hazard per operation ------------------------------------------------
@pytest.mark.parametrize(
    "lines, expected",
    [
        (("op.add_column('accounts', sa.Column('region', sa.Text, nullable=False))",), ["adding-required-field"]),
        (("op.add_column('accounts', sa.Column('id', sa.Integer, primary_key=True))",), ["adding-required-field"]),
        (("op.drop_table('legacy_events')",), ["ban-drop-table"]),
        (("op.drop_column('accounts', 'region')",), ["ban-drop-column"]),
        (("op.alter_column('accounts', 'tier', type_=sa.String(16), existing_type=sa.Text)",), ["changing-column-type"]),
        (("op.alter_column('accounts', 'email', new_column_name='email_address')",), ["renaming-column"]),
        (("op.alter_column('accounts', 'email', existing_type=sa.Text, nullable=False)",), ["adding-not-nullable-field"]),
        (("op.rename_table('owners', 'account_owners')",), ["renaming-table"]),
        (("op.create_index('ix_accounts_email', 'accounts', ['email'])",), ["require-concurrent-index-creation"]),
        (
            ("op.create_index('ix_accounts_email', 'accounts', ['email'], postgresql_concurrently=True)",),
            ["ban-concurrent-index-creation-in-transaction"],
        ),
        (("op.drop_index('ix_accounts_email', table_name='accounts')",), ["require-concurrent-index-deletion"]),
        (
            ("op.create_foreign_key('fk_accounts_owner', 'accounts', 'owners', ['owner_id'], ['id'])",),
            ["adding-foreign-key-constraint"],
        ),
        (("op.create_check_constraint('ck_tier', 'accounts', \"tier <> ''\")",), ["constraint-missing-not-valid"]),
        (("op.create_unique_constraint('uq_accounts_email', 'accounts', ['email'])",), ["disallowed-unique-constraint"]),
    ],
)
def test_hazardous_operation(tmp_path: Path, lines: tuple[str, ...], expected: list[str]) -> None:
    assert rules(tmp_path, *lines) == expected


def test_one_alter_column_can_give_several_findings(tmp_path: Path) -> None:
    line = "op.alter_column('accounts', 'tier', new_column_name='level', type_=sa.String(16), nullable=False)"
    assert sorted(rules(tmp_path, line)) == ["adding-not-nullable-field", "changing-column-type", "renaming-column"]


def test_finding_fields(tmp_path: Path) -> None:
    result = review(
        tmp_path,
        "op.add_column('accounts', sa.Column('id_type', sa.Text, nullable=True))",
        "op.drop_column(  'accounts',\n        'region')",
    )
    assert result == UpgradeReview(
        (OperationFinding("ban-drop-column", "accounts", "op.drop_column('accounts', 'region')", FIRST + 1),),
        {},
        None,
    )
    (finding,) = result.findings
    assert (finding.why, finding.fix) == (RULES["ban-drop-column"].why, RULES["ban-drop-column"].fix)


def test_statement_is_whitespace_collapsed_and_cut_to_120_characters(tmp_path: Path) -> None:
    columns = ", ".join("'column_%d'" % number for number in range(20))
    (finding,) = review(tmp_path, "op.create_index('ix_wide', 'accounts', [%s])" % columns).findings
    assert finding.statement == ("op.create_index('ix_wide', 'accounts', [%s])" % columns)[:120] + "..."


# -- safe twins: no finding --------------------------------------------------
@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(
            (
                "op.create_table('owners', sa.Column('id', sa.BigInteger, primary_key=True), sa.Column('name', sa.Text))",
                "op.create_index('ix_owners_name', 'owners', ['name'])",
                "op.create_unique_constraint('uq_owners_name', 'owners', ['name'])",
                "op.create_check_constraint('ck_owners_name', 'owners', \"name <> ''\")",
                "op.add_column('owners', sa.Column('region', sa.Text, nullable=False))",
            ),
            id="new table with its index and constraints",
        ),
        pytest.param(
            (
                "op.create_table('owners', sa.Column('id', sa.BigInteger, primary_key=True))",
                "op.create_foreign_key('fk_owners_account', 'owners', 'accounts', ['account_id'], ['id'])",
            ),
            id="foreign key on a new table",
        ),
        pytest.param(("op.add_column('accounts', sa.Column('region', sa.Text, nullable=True))",), id="nullable column"),
        pytest.param(("op.add_column('accounts', sa.Column('region', sa.Text))",), id="nullable by default"),
        pytest.param(
            ("op.add_column('accounts', sa.Column('tier', sa.Text, nullable=False, server_default='basic'))",),
            id="NOT NULL with a server default",
        ),
        pytest.param(
            ("op.add_column('accounts', sa.Column('n', sa.BigInteger, sa.Identity(), nullable=False))",),
            id="identity column",
        ),
        pytest.param(
            (
                "with op.get_context().autocommit_block():",
                "    op.create_index('ix_a', 'accounts', ['id', 'email'], postgresql_concurrently=True, if_not_exists=True)",
            ),
            id="concurrent index in an autocommit block",
        ),
        pytest.param(
            (
                "with op.get_context().autocommit_block():",
                "    op.drop_index('ix_a', table_name='accounts', postgresql_concurrently=True, if_exists=True)",
            ),
            id="concurrent drop_index in an autocommit block",
        ),
        pytest.param(
            (
                "with op.get_context().autocommit_block():",
                "    op.execute('CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_a ON accounts (email)')",
            ),
            id="concurrent index SQL in an autocommit block",
        ),
        pytest.param(
            ("op.create_check_constraint('ck_tier', 'accounts', \"tier <> ''\", postgresql_not_valid=True)",),
            id="check constraint NOT VALID",
        ),
        pytest.param(
            ("op.execute(\"ALTER TABLE accounts ADD CONSTRAINT ck_email CHECK (email <> '') NOT VALID\")",),
            id="DDL through op.execute",
        ),
        pytest.param(("op.execute(\"UPDATE accounts SET status = 'active' WHERE status IS NULL\")",), id="data only"),
        pytest.param(
            (
                "conn = op.get_bind()",
                "conn.execute(sa.text(\"UPDATE accounts SET status = 'active'\"))",
                "op.bulk_insert(sa.table('tiers', sa.column('name')), [{'name': 'basic'}])",
            ),
            id="data only through the connection",
        ),
        pytest.param(
            (
                "if op.get_bind().dialect.name == 'postgresql':",
                "    op.add_column('accounts', sa.Column('region', sa.Text, nullable=True))",
            ),
            id="dialect check is no data",
        ),
        pytest.param(("pass",), id="pass"),
    ],
)
def test_safe_twin(tmp_path: Path, lines: tuple[str, ...]) -> None:
    result = review(tmp_path, *lines)
    assert (result.findings, result.acknowledgements, result.acknowledgement_error) == ((), {}, None)


def test_no_upgrade_function(tmp_path: Path) -> None:
    assert review_upgrade(write(tmp_path, HEADER)) == UpgradeReview((), {}, None)


# -- what the source cannot tell, and what only reads (issue 14, point 9) -----
@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(
            (
                "bind = op.get_bind()",
                "valid = bind.execute(sa.text(\"SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_a'::regclass\")).scalar()",
                "op.add_column('accounts', sa.Column('score', sa.Integer, nullable=True))",
            ),
            id="a read-only SELECT of the catalog",
        ),
        pytest.param(
            (
                "count = op.get_bind().execute(sa.text('SELECT count(*) FROM accounts')).scalar()",
                "op.add_column('accounts', sa.Column('score', sa.Integer, nullable=True))",
            ),
            id="a read-only SELECT through op.get_bind()",
        ),
        pytest.param(
            (
                "rows = op.get_bind().execute(sa.select(sa.table('accounts', sa.column('id')))).all()",
                "op.add_column('accounts', sa.Column('score', sa.Integer, nullable=True))",
            ),
            id="a Core select",
        ),
    ],
)
def test_a_read_only_select_is_no_data_migration(tmp_path: Path, lines: tuple[str, ...]) -> None:
    assert review(tmp_path, *lines).findings == ()


def test_sql_through_the_connection_that_changes_data_still_counts(tmp_path: Path) -> None:
    result = review(
        tmp_path,
        "op.get_bind().execute(sa.text('WITH gone AS (DELETE FROM accounts RETURNING id) SELECT count(*) FROM gone'))",
        "op.add_column('accounts', sa.Column('score', sa.Integer, nullable=True))",
    )
    assert [(f.rule, f.table) for f in result.findings] == [("mixed-data-and-schema", "accounts")]


@pytest.mark.parametrize(
    "line, rule, keyword",
    [
        (
            "op.create_index('ix_a', 'accounts', ['email'], postgresql_concurrently=CONCURRENTLY)",
            "require-concurrent-index-creation",
            "postgresql_concurrently",
        ),
        (
            "op.create_index('ix_a', 'accounts', ['email'], postgresql_concurrently=not is_sqlite())",
            "require-concurrent-index-creation",
            "postgresql_concurrently",
        ),
        ("op.drop_index('ix_a', table_name='accounts', postgresql_concurrently=CONCURRENTLY)", "require-concurrent-index-deletion", "postgresql_concurrently"),
        ("op.create_check_constraint('ck', 'accounts', 'x > 0', postgresql_not_valid=LATER)", "constraint-missing-not-valid", "postgresql_not_valid"),
    ],
)
def test_a_value_decided_at_run_time_is_uncertain(tmp_path: Path, line: str, rule: str, keyword: str) -> None:
    (finding,) = review(tmp_path, line).findings
    assert finding.rule == rule and finding.uncertain.startswith(keyword + "=") and finding.uncertain.endswith("is decided at run time")


def test_known_values_are_certain(tmp_path: Path) -> None:
    (finding,) = review(tmp_path, "op.create_index('ix_a', 'accounts', ['email'], postgresql_concurrently=False)").findings
    assert finding.rule == "require-concurrent-index-creation" and finding.uncertain == ""


# -- tables created earlier in the plan (issue 14, point 8) -------------------
def test_tables_created_earlier_in_the_plan_are_new(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "def upgrade() -> None:\n"
        + "    op.create_index('ix_owners_name', 'owners', ['name'])\n"
        + "    op.add_column('owners', sa.Column('rank', sa.Integer, nullable=False))\n"
        + "    op.create_index('ix_accounts_email', 'accounts', ['email'])\n"
        + "    op.create_table('tiers', sa.Column('id', sa.Integer))\n"
        + "    op.execute('CREATE TABLE audit (id int)')\n"
        + "    op.create_table('kept', sa.Column('id', sa.Integer), if_not_exists=True)\n",
    )
    assert [f.rule for f in review_upgrade(path).findings] == [
        "require-concurrent-index-creation",
        "adding-required-field",
        "require-concurrent-index-creation",
    ]
    result = review_upgrade(path, {"owners"})
    assert [(f.rule, f.table) for f in result.findings] == [("require-concurrent-index-creation", "accounts")]
    assert result.new_tables == {"owners", "tiers", "audit"}, "created here (not IF NOT EXISTS) and given"


# -- data and schema together ------------------------------------------------
@pytest.mark.parametrize(
    "lines, data_line, table",
    [
        (
            (
                "op.add_column('accounts', sa.Column('status', sa.Text, nullable=True))",
                "op.execute(\"UPDATE accounts SET status = 'active'\")",
            ),
            1,
            "accounts",
        ),
        (
            (
                "op.execute(sa.text('/* fill */ -- the rest\\n  insert into \"tiers\" (name) values (:n)').bindparams(n='x'))",
                "op.execute('ALTER TABLE tiers ADD COLUMN rank int')",
            ),
            0,
            "tiers",
        ),
        (
            (
                "tiers = op.create_table('tiers', sa.Column('name', sa.Text))",
                "op.bulk_insert(tiers, [{'name': 'basic'}])",
            ),
            1,
            None,
        ),
        (
            (
                "bind = op.get_bind()",
                "bind.execute(sa.text('UPDATE accounts SET score = 0'))",
                "op.add_column('accounts', sa.Column('score', sa.Integer, nullable=True))",
            ),
            1,
            "accounts",
        ),
        (
            (
                "op.drop_constraint('uq_accounts_email', 'accounts')",
                "op.execute(sa.table('accounts', sa.column('email')).update().values(email=sa.func.lower(sa.column('email'))))",
            ),
            1,
            None,
        ),
        (
            (
                "op.create_table('tiers', sa.Column('name', sa.Text))",
                "with op.get_bind().connect() as connection:",
                "    connection.execute(sa.text('DELETE FROM accounts'))",
            ),
            1,
            None,
        ),
    ],
)
def test_mixed_data_and_schema(tmp_path: Path, lines: tuple[str, ...], data_line: int, table: str | None) -> None:
    (finding,) = review(tmp_path, *lines).findings
    assert (finding.rule, finding.line, finding.table) == ("mixed-data-and-schema", FIRST + data_line, table)


def test_mixed_finding_comes_with_the_schema_operations_own(tmp_path: Path) -> None:
    result = review(
        tmp_path,
        "bind = op.get_bind()",
        "count = bind.execute(sa.text('SELECT count(*) FROM accounts')).scalar()",
        "op.add_column('accounts', sa.Column('score', sa.Integer, nullable=False))",
        "if count:",
        "    op.execute('UPDATE accounts SET score = 0')",
    )
    assert [(f.rule, f.line) for f in result.findings] == [
        ("adding-required-field", FIRST + 2),
        ("mixed-data-and-schema", FIRST + 4),
    ]
    assert result.findings[1].statement == "op.execute('UPDATE accounts SET score = 0')", "the SELECT only reads"


# -- outside the transaction ---------------------------------------------------
AUTOCOMMIT = "with op.get_context().autocommit_block():"


@pytest.mark.parametrize(
    "lines, expected",
    [
        (
            (
                "op.add_column('accounts', sa.Column('region', sa.Text, nullable=True))",
                AUTOCOMMIT,
                "    op.create_index('ix_r', 'accounts', ['region'], postgresql_concurrently=True, if_not_exists=True)",
            ),
            [("non-transactional", 2)],
        ),
        (
            (AUTOCOMMIT, "    op.create_index('ix_r', 'accounts', ['region'], postgresql_concurrently=True)"),
            [("non-transactional", 1)],
        ),
        (
            (AUTOCOMMIT, "    op.drop_index('ix_r', table_name='accounts', postgresql_concurrently=True)"),
            [("non-transactional", 1)],
        ),
        (
            (
                "from alembic import context",
                "with context.autocommit_block():",
                "    op.execute('CREATE INDEX CONCURRENTLY ix_r ON accounts (region)')",
            ),
            [("non-transactional", 2)],
        ),
        (
            (AUTOCOMMIT, "    op.create_index('ix_r', 'accounts', ['region'], if_not_exists=True)"),
            [("require-concurrent-index-creation", 1)],
        ),
        (
            (
                AUTOCOMMIT,
                "    pass",
                "op.drop_index('ix_r', table_name='accounts', postgresql_concurrently=True)",
            ),
            [("non-transactional", 0)],
        ),
    ],
)
def test_non_transactional(tmp_path: Path, lines: tuple[str, ...], expected: list[tuple[str, int]]) -> None:
    result = review(tmp_path, *lines)
    assert [(f.rule, f.line - FIRST) for f in result.findings] == expected


def test_the_blocks_finding_merges_with_its_first_fragile_operations(tmp_path: Path) -> None:
    result = review(
        tmp_path,
        "op.add_column('accounts', sa.Column('region', sa.Text, nullable=True))",
        AUTOCOMMIT,
        "    op.create_index('ix_r', 'accounts', ['region'], postgresql_concurrently=True)",
        "    op.create_index('ix_s', 'accounts', ['score'], postgresql_concurrently=True)",
    )
    assert [(f.rule, f.line - FIRST) for f in result.findings] == [("non-transactional", 2), ("non-transactional", 3)]


# -- batch_alter_table, schema=, constants, helpers ----------------------------
def test_batch_alter_table_gives_the_table(tmp_path: Path) -> None:
    result = review(
        tmp_path,
        "with op.batch_alter_table('companies', schema='market') as batch_op:",
        "    batch_op.add_column(sa.Column('ticker', sa.Text, nullable=False))",
        "    batch_op.alter_column('name', new_column_name='legal_name')",
        "    batch_op.create_unique_constraint('uq_ticker', ['ticker'])",
        "    batch_op.create_foreign_key('fk_sector', 'sectors', ['sector_id'], ['id'])",
        "with op.batch_alter_table(table_name='daily_ohlcv') as other:",
        "    other.drop_column(column_name='adjusted_close')",
        "    other.create_index(op.f('ix_daily_ohlcv_day'), ['day'])",
    )
    assert [(f.rule, f.table, f.line - FIRST) for f in result.findings] == [
        ("adding-required-field", "market.companies", 1),
        ("renaming-column", "market.companies", 2),
        ("disallowed-unique-constraint", "market.companies", 3),
        ("adding-foreign-key-constraint", "market.companies", 4),
        ("ban-drop-column", "daily_ohlcv", 6),
        ("require-concurrent-index-creation", "daily_ohlcv", 7),
    ]


def test_batch_on_a_new_table_is_safe(tmp_path: Path) -> None:
    result = review(
        tmp_path,
        "op.create_table('owners', sa.Column('id', sa.BigInteger, primary_key=True))",
        "with op.batch_alter_table('owners') as batch_op:",
        "    batch_op.add_column(sa.Column('name', sa.Text, nullable=False))",
        "    batch_op.create_index('ix_owners_name', ['name'])",
    )
    assert result.findings == ()


def test_schema_qualifies_the_table(tmp_path: Path) -> None:
    result = review(
        tmp_path,
        "op.create_table('prices', sa.Column('id', sa.Integer), schema='market')",
        "op.create_index('ix_prices_id', 'prices', ['id'], schema='market')",
        "op.create_index('ix_prices_id', 'prices', ['id'], schema=SCHEMA)",
        "op.drop_table(table_name=TABLE, schema=SCHEMA)",
        "op.create_foreign_key('fk_p', 'prices', 'days', ['day_id'], ['id'], source_schema='archive')",
        before='SCHEMA = "archive"\nTABLE = "prices"\n\n',
    )
    assert [(f.rule, f.table, f.line - FIRST - 3) for f in result.findings] == [
        ("require-concurrent-index-creation", "archive.prices", 2),
        ("ban-drop-table", "archive.prices", 3),
        ("adding-foreign-key-constraint", "archive.prices", 4),
    ]


def test_unknown_table_is_an_existing_table(tmp_path: Path) -> None:
    result = review(tmp_path, "for name in ('a', 'b'):", "    op.drop_table(name)")
    assert [(f.rule, f.table) for f in result.findings] == [("ban-drop-table", None)]


def test_helper_functions_are_followed_one_level_deep(tmp_path: Path) -> None:
    helpers = """
        def _backfill(connection):
            connection.execute(sa.text("UPDATE accounts SET tier = 'basic'"))


        def _columns() -> None:
            op.add_column("accounts", sa.Column("tier", sa.Text, nullable=True))
            op.create_index("ix_accounts_tier", "accounts", ["tier"])
            _deeper()


        def _deeper() -> None:
            op.drop_table("legacy")


        """
    result = review(tmp_path, "_columns()", "_backfill(op.get_bind())", "_columns()", before=helpers)
    assert [(f.rule, f.statement) for f in result.findings] == [
        ("require-concurrent-index-creation", "op.create_index('ix_accounts_tier', 'accounts', ['tier'])"),
        ("mixed-data-and-schema", "_backfill(op.get_bind())"),
    ]


def test_helper_inside_an_autocommit_block(tmp_path: Path) -> None:
    helper = """
        def _index() -> None:
            op.create_index("ix_r", "accounts", ["region"], postgresql_concurrently=True, if_not_exists=True)


        """
    assert rules(tmp_path, AUTOCOMMIT, "    _index()", before=helper) == []


def test_findings_are_ordered_by_line(tmp_path: Path) -> None:
    after = """

        def _later() -> None:
            op.drop_column("accounts", "region")
        """
    before = """
        def _earlier() -> None:
            op.rename_table("owners", "account_owners")


        """
    result = review(tmp_path, "_later()", "op.drop_table('legacy')", "_earlier()", before=before, after=after)
    lines = [finding.line for finding in result.findings]
    assert [f.rule for f in result.findings] == ["renaming-table", "ban-drop-table", "ban-drop-column"]
    assert lines == sorted(lines)


# -- fleet_acknowledge -------------------------------------------------------
def acknowledgements(tmp_path: Path, text: str) -> tuple[dict[str, str], str | None]:
    path = write(tmp_path, HEADER + textwrap.dedent(text) + "\n\ndef upgrade() -> None:\n    op.drop_column('a', 'b')\n")
    review_result = review_upgrade(path)
    assert [f.rule for f in review_result.findings] == ["ban-drop-column"]
    read = read_acknowledgements(path)
    assert read == (review_result.acknowledgements, review_result.acknowledgement_error)
    return read


def test_acknowledgements_are_read(tmp_path: Path) -> None:
    text = 'fleet_acknowledge = {"ban-drop-column": "  column unused since 4.2 ", "ban-drop-table": "archived"}'
    assert acknowledgements(tmp_path, text) == (
        {"ban-drop-column": "column unused since 4.2", "ban-drop-table": "archived"},
        None,
    )


def test_annotated_acknowledgements(tmp_path: Path) -> None:
    text = 'fleet_acknowledge: dict[str, str] = {\n    "ban-drop-column": "unused",  # a comment\n}'
    assert acknowledgements(tmp_path, text) == ({"ban-drop-column": "unused"}, None)


ASSIGNMENT = 'fleet_acknowledge = {"rule-name": "why this is safe here"}'


def test_no_acknowledgements(tmp_path: Path) -> None:
    assert acknowledgements(tmp_path, "") == ({}, None)
    assert acknowledgements(tmp_path, "fleet_acknowledge = {}") == ({}, None)


@pytest.mark.parametrize(
    "text, error",
    [
        (
            'fleet_acknowledge = {"ban-drop-column": "  "}',
            "fleet_acknowledge (line 8) gives 'ban-drop-column' an empty reason: say why the finding is safe here",
        ),
        (
            'fleet_acknowledge = {"ban-drop-column": None}',
            "fleet_acknowledge (line 8) gives 'ban-drop-column' a reason that is not a string (NoneType)",
        ),
        (
            'fleet_acknowledge = {"": "why"}',
            "fleet_acknowledge (line 8) has a key that is not a rule name (a non-empty string): ''",
        ),
        (
            'fleet_acknowledge = {1: "why"}',
            "fleet_acknowledge (line 8) has a key that is not a rule name (a non-empty string): 1",
        ),
        (
            'REASON = "unused"\nfleet_acknowledge = {"ban-drop-column": REASON}',
            'fleet_acknowledge (line 9) is not a literal: write it as {"rule-name": "why this is safe here"}',
        ),
        (
            'fleet_acknowledge = dict(rule="why")',
            'fleet_acknowledge (line 8) is not a literal: write it as {"rule-name": "why this is safe here"}',
        ),
        (
            'fleet_acknowledge = ["ban-drop-column"]',
            "fleet_acknowledge (line 8) is a list, not a dict of rule names to reasons",
        ),
        (
            'fleet_acknowledge = {}\nfleet_acknowledge |= {"ban-drop-column": "why"}',
            "fleet_acknowledge (line 9) is not assigned a literal dict: write it as " + ASSIGNMENT,
        ),
        (
            "fleet_acknowledge: dict[str, str]",
            "fleet_acknowledge (line 8) is not assigned a literal dict: write it as " + ASSIGNMENT,
        ),
    ],
)
def test_invalid_acknowledgements(tmp_path: Path, text: str, error: str) -> None:
    assert acknowledgements(tmp_path, text) == ({}, error)


# -- files that do not parse or cannot be read -----------------------------------
def test_unparsable_file(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "def upgrade() -> None\n    op.drop_table('things')\n")
    result = review_upgrade(path)
    assert result.findings == () and result.acknowledgements == {}
    error = result.acknowledgement_error or ""
    assert error.startswith("the revision file does not parse (SyntaxError: ")  # the wording varies by Python
    assert error.endswith(" at line 8): its upgrade() and fleet_acknowledge cannot be reviewed")
    assert "\n" not in error
    assert read_acknowledgements(path) == ({}, error)


@pytest.mark.parametrize("function", [review_upgrade, read_acknowledgements])
def test_missing_file_is_a_fleet_error(tmp_path: Path, function: Callable[[str], object]) -> None:
    with pytest.raises(FleetError, match=r"cannot be read .*: check"):
        function(str(tmp_path / "nowhere.py"))


# -- the note of a revision that could not render (issue 14, point 12) ----------
def test_a_merge_that_cannot_render_is_explained_without_a_database() -> None:
    merge = Step("6f708192a3b4", ("4d5e6f708192", "5e6f708192a3"), "merge", "/x/6f708192a3b4_merge.py", "upgrade")
    note = _render_note(merge, "SQL not rendered: the database is at several heads (4d5e6f708192, 5e6f708192a3), which offline mode cannot start from.")
    assert note == "merge revision of 4d5e6f708192, 5e6f708192a3: offline mode cannot render a revision with several parents."
    single = Step("4d5e6f708192", ("3c4d5e6f7081",), "one", "/x/4d5e6f708192_one.py", "upgrade")
    assert _render_note(single, "SQL not rendered: it queries.") == "SQL not rendered: it queries."

"""Unit tests of the static review of downgrade() (module_utils/fleet/review/downgrade.py).

Each rule gets a small revision file; each lossy or irreversible shape has a
safe twin that must stay reversible. The bundled revisions are classified too.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ansible.module_utils.fleet.core.common import FleetError
from ansible.module_utils.fleet.review.downgrade import (
    IRREVERSIBLE,
    LOSSY,
    REVERSIBLE,
    UNKNOWN,
    Reversibility,
    classify_downgrade,
)

REPO = Path(__file__).resolve().parents[5]

HEADER = '''\
"""A revision."""
import sqlalchemy as sa
from alembic import op

revision = "abc123"
down_revision = None


def upgrade() -> None:
    op.create_table("things", sa.Column("id", sa.Integer(), primary_key=True))

'''


def revision(tmp_path: Path, body: str, header: str = HEADER) -> Reversibility:
    """Classify a revision file made of header and body (dedented)."""
    path = tmp_path / "abc123_a_revision.py"
    path.write_text(header + textwrap.dedent(body))
    return classify_downgrade(str(path))


def downgrade(tmp_path: Path, *lines: str) -> Reversibility:
    """Classify a revision whose downgrade() is the given lines."""
    body = "def downgrade() -> None:\n" + "".join("    %s\n" % line for line in lines)
    return revision(tmp_path, body)


# -- irreversible ----------------------------------------------------------
def test_no_downgrade_function(tmp_path: Path) -> None:
    result = revision(tmp_path, "")
    assert result == Reversibility(IRREVERSIBLE, ("the revision has no downgrade() function",))


@pytest.mark.parametrize(
    "lines, shown",
    [
        (("pass",), "pass"),
        (('"""Downgrade schema."""', "pass"), "pass"),
        (("...",), "..."),
        (('"""Nothing to undo."""',), "only a docstring"),
    ],
)
def test_empty_downgrade(tmp_path: Path, lines: tuple[str, ...], shown: str) -> None:
    result = downgrade(tmp_path, *lines)
    assert result.kind == IRREVERSIBLE
    assert result.reasons == ("downgrade() is empty (%s) while upgrade() is not: the schema would stay while the version goes back" % shown,)


MERGE = '''\
"""Merge the two heads."""
revision = "abc123"
down_revision = ("1111aaaa", "2222bbbb")
branch_labels = None


def upgrade() -> None:
    pass

'''


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(MERGE, id="a merge revision"),
        pytest.param(
            HEADER.replace('op.create_table("things", sa.Column("id", sa.Integer(), primary_key=True))', '"""Nothing to do."""'), id="an empty upgrade"
        ),
        pytest.param(HEADER.split("def upgrade")[0], id="no upgrade at all"),
    ],
)
def test_nothing_to_undo_is_reversible(tmp_path: Path, header: str) -> None:
    assert revision(tmp_path, "def downgrade() -> None:\n    pass\n", header) == Reversibility(REVERSIBLE, ())


def test_raise_not_implemented(tmp_path: Path) -> None:
    result = downgrade(tmp_path, "raise NotImplementedError")
    assert result == Reversibility(IRREVERSIBLE, ("downgrade() raises NotImplementedError",))


CONDITIONAL = ", only under a condition: whether it refuses cannot be told before it runs"


def test_raise_with_message_inside_a_branch_is_unknown(tmp_path: Path) -> None:
    result = downgrade(
        tmp_path,
        "if op.get_context().dialect.name == 'sqlite':",
        "    raise RuntimeError('cannot go back on SQLite')",
        "op.drop_index('ix_things_id', table_name='things')",
    )
    assert result == Reversibility(UNKNOWN, ("downgrade() raises RuntimeError (cannot go back on SQLite)" + CONDITIONAL,))


@pytest.mark.parametrize(
    "lines",
    [
        ("if True:", "    raise RuntimeError('no')"),
        ("if dialect() == 'sqlite':", "    raise RuntimeError('no')", "else:", "    raise ValueError('no')"),
        ("with op.batch_alter_table('things') as batch_op:", "    raise RuntimeError('no')"),
        ("try:", "    op.drop_index('ix')", "finally:", "    raise RuntimeError('no')"),
        ("op.drop_index('ix')", "assert False, 'no way back'"),
    ],
)
def test_a_raise_on_every_path_is_irreversible(tmp_path: Path, lines: tuple[str, ...]) -> None:
    assert downgrade(tmp_path, *lines).kind == IRREVERSIBLE


@pytest.mark.parametrize(
    "lines",
    [
        ("if dialect() == 'sqlite':", "    return", "raise RuntimeError('no')"),
        ("try:", "    raise RuntimeError('no')", "except RuntimeError:", "    pass"),
        ("for name in names():", "    raise RuntimeError(name)"),
    ],
)
def test_a_raise_some_path_avoids_is_unknown(tmp_path: Path, lines: tuple[str, ...]) -> None:
    assert downgrade(tmp_path, *lines).kind == UNKNOWN


def test_a_helper_that_raises_only_when_a_condition_holds_is_not_irreversible(tmp_path: Path) -> None:
    body = """\
    def _check_index_valid(name: str) -> None:
        valid = op.get_bind().execute(sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = :n::regclass"), {"n": name}).scalar()
        if not valid:
            raise RuntimeError("index %s is invalid: rebuild it first" % name)


    def downgrade() -> None:
        _check_index_valid("ix_things_id")
        op.drop_index("ix_things_id", table_name="things")
    """
    result = revision(tmp_path, body)
    assert result.kind == UNKNOWN
    assert result.reasons == ("_check_index_valid(), called by downgrade(), raises RuntimeError" + CONDITIONAL,)


def test_a_helper_that_always_raises_is_irreversible_at_any_depth(tmp_path: Path) -> None:
    body = """\
    def _refuse() -> None:
        _really_refuse()


    def _really_refuse() -> None:
        raise NotImplementedError("no way back")


    def downgrade() -> None:
        op.drop_index("ix_things_id", table_name="things")
        _refuse()
    """
    assert revision(tmp_path, body) == Reversibility(IRREVERSIBLE, ("downgrade() raises on every path (in a function it calls)",))


def test_a_call_that_may_refuse_and_cannot_be_read_is_unknown(tmp_path: Path) -> None:
    header = HEADER.replace("from alembic import op\n", "from alembic import op\nfrom app.migrations import fail_if_rows\n")
    result = revision(tmp_path, 'def downgrade() -> None:\n    fail_if_rows("things")\n    op.drop_index("ix_things_id", table_name="things")\n', header)
    assert result == Reversibility(UNKNOWN, ("downgrade() calls fail_if_rows(), which cannot be read here and may refuse",))


def test_a_certain_loss_outranks_an_unknown(tmp_path: Path) -> None:
    result = downgrade(tmp_path, "if dialect() == 'sqlite':", "    raise RuntimeError('no')", "op.drop_table('things')")
    assert result.kind == LOSSY and result.reasons[0] == "drops table things (its rows are lost)"


def test_unparsable_file(tmp_path: Path) -> None:
    result = revision(tmp_path, "def downgrade() -> None\n    op.drop_table('things')\n")
    assert result.kind == IRREVERSIBLE
    (reason,) = result.reasons
    assert reason.startswith("the revision file does not parse (SyntaxError: ")  # the wording varies by Python
    assert reason.endswith(" at line 12): its downgrade() cannot be reviewed or run")


def test_missing_file_is_a_fleet_error(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match=r"cannot be read .*: check"):
        classify_downgrade(str(tmp_path / "nowhere.py"))


def test_irreversible_wins_and_keeps_lossy_reasons(tmp_path: Path) -> None:
    result = downgrade(tmp_path, "op.drop_table('things')", "raise NotImplementedError('no way back')")
    assert result.kind == IRREVERSIBLE
    assert result.reasons == (
        "downgrade() raises NotImplementedError (no way back)",
        "drops table things (its rows are lost)",
    )


# -- lossy: operations -----------------------------------------------------
def test_drop_table(tmp_path: Path) -> None:
    result = downgrade(tmp_path, "op.drop_table('daily_ohlcv')")
    assert result == Reversibility(LOSSY, ("drops table daily_ohlcv (its rows are lost)",))


def test_drop_table_keyword_schema_and_module_constant(tmp_path: Path) -> None:
    header = HEADER + 'TABLE = "prices"\n\n'
    result = revision(tmp_path, "def downgrade() -> None:\n    op.drop_table(table_name=TABLE, schema='market')\n", header)
    assert result.reasons == ("drops table market.prices (its rows are lost)",)


def test_drop_table_of_unknown_name(tmp_path: Path) -> None:
    result = downgrade(tmp_path, "for name in ('a', 'b'):", "    op.drop_table(name)")
    assert result == Reversibility(LOSSY, ("drops a table (its rows are lost)",))


def test_op_drop_column(tmp_path: Path) -> None:
    result = downgrade(tmp_path, "op.drop_column('companies', 'sentiment_score')")
    assert result == Reversibility(LOSSY, ("drops column companies.sentiment_score",))


def test_batch_drop_column_takes_the_table_from_batch_alter_table(tmp_path: Path) -> None:
    result = downgrade(
        tmp_path,
        "with op.batch_alter_table('companies', schema=None) as batch_op:",
        "    batch_op.drop_column('stock_symbol_type')",
        "with op.batch_alter_table(table_name='daily_ohlcv') as other:",
        "    other.drop_column(column_name='adjusted_close')",
    )
    assert result == Reversibility(
        LOSSY,
        ("drops column companies.stock_symbol_type", "drops column daily_ohlcv.adjusted_close"),
    )


def test_drop_column_with_unknown_names(tmp_path: Path) -> None:
    result = downgrade(
        tmp_path,
        "columns = ['a']",
        "op.drop_column('companies', columns[0])",
        "op.drop_column(columns[0], 'ticker')",
        "op.drop_column(*columns)",
    )
    assert result.reasons == (
        "drops a column of companies",
        "drops column ticker of a table",
        "drops a column",
    )


@pytest.mark.parametrize(
    "lines, label",
    [
        (("op.alter_column('companies', 'ticker', type_=sa.String(length=10))",), "companies.ticker"),
        (
            (
                "with op.batch_alter_table('daily_ohlcv') as batch_op:",
                "    batch_op.alter_column('volume', existing_type=sa.BigInteger(), type_=sa.Integer())",
            ),
            "daily_ohlcv.volume",
        ),
    ],
)
def test_alter_column_type(tmp_path: Path, lines: tuple[str, ...], label: str) -> None:
    result = downgrade(tmp_path, *lines)
    assert result == Reversibility(LOSSY, ("changes the type of %s: values may be truncated or fail to convert" % label,))


# -- lossy: SQL --------------------------------------------------------------
@pytest.mark.parametrize(
    "line, shown",
    [
        ('op.execute("DROP TABLE legacy_prices")', "DROP TABLE legacy_prices"),
        ('op.execute("ALTER TABLE companies DROP COLUMN sector")', "ALTER TABLE companies DROP COLUMN sector"),
        ("op.execute('truncate signals')", "truncate signals"),
        ('op.get_bind().execute(sa.text("DELETE FROM signals WHERE strength < 0.1"))', "DELETE FROM signals WHERE strength < 0.1"),
        ('op.execute(sa.text("""\n        delete   from\n        signals\n    """))', "delete from signals"),
        ("conn = op.get_bind(); conn.execute(text('DROP TABLE IF EXISTS tmp'))", "DROP TABLE IF EXISTS tmp"),
    ],
)
def test_lossy_sql(tmp_path: Path, line: str, shown: str) -> None:
    result = downgrade(tmp_path, line)
    assert result == Reversibility(LOSSY, ('runs SQL that deletes data: "%s"' % shown,))


def test_lossy_sql_is_cut_to_80_characters_per_statement(tmp_path: Path) -> None:
    long_delete = "DELETE FROM daily_ohlcv WHERE symbol IN (%s)" % ", ".join("'T%03d'" % n for n in range(40))
    result = downgrade(tmp_path, 'op.execute("UPDATE companies SET sector = NULL; %s")' % long_delete)
    assert result == Reversibility(LOSSY, ('runs SQL that deletes data: "%s..."' % long_delete[:80],))


# -- reversible: the safe twins ----------------------------------------------
@pytest.mark.parametrize(
    "lines",
    [
        ("op.create_table('old_things', sa.Column('id', sa.Integer(), primary_key=True))",),
        ("op.add_column('companies', sa.Column('sector', sa.String(100)))",),
        (
            "with op.batch_alter_table('companies') as batch_op:",
            "    batch_op.add_column(sa.Column('sector', sa.String(100)))",
        ),
        ("op.drop_index('ix_companies_ticker', table_name='companies')",),
        ("op.drop_index(op.f('ix_companies_ticker'), table_name='companies')",),
        ("op.drop_constraint('uq_strategies_name', 'strategies', type_='unique')",),
        (
            "with op.batch_alter_table('companies') as batch_op:",
            "    batch_op.drop_constraint('ck_companies_sector', type_='check')",
        ),
        ("op.alter_column('companies', 'sector', nullable=True)",),
        ('op.execute("UPDATE companies SET sector = NULL")',),
        ('op.execute(sa.text("CREATE INDEX ix_x ON companies (sector)"))',),
        ('"""Downgrade schema."""', "op.drop_index('ix_companies_ticker', table_name='companies')"),
    ],
)
def test_safe_twins_are_reversible(tmp_path: Path, lines: tuple[str, ...]) -> None:
    assert downgrade(tmp_path, *lines) == Reversibility(REVERSIBLE, ())


# -- helpers called from downgrade() -----------------------------------------
def test_helpers_are_followed_one_level(tmp_path: Path) -> None:
    body = """\
    def _drop_everything() -> None:
        op.drop_table("signals")
        _deeper()


    def _deeper() -> None:
        op.drop_table("never_seen")


    def downgrade() -> None:
        op.drop_index("ix_signals_time", table_name="signals")
        _drop_everything()
    """
    result = revision(tmp_path, body)
    assert result == Reversibility(LOSSY, ("drops table signals (its rows are lost) (in _drop_everything(), called by downgrade())",))


def test_an_unconditional_raise_in_a_helper(tmp_path: Path) -> None:
    body = """\
    def _refuse() -> None:
        raise NotImplementedError


    def downgrade() -> None:
        _refuse()
    """
    result = revision(tmp_path, body)
    assert result == Reversibility(IRREVERSIBLE, ("_refuse(), called by downgrade(), raises NotImplementedError",))


def test_upgrade_is_not_reviewed(tmp_path: Path) -> None:
    header = HEADER.replace("op.create_table(", "op.drop_table('x')\n    op.create_table(")
    result = revision(tmp_path, "def downgrade() -> None:\n    op.drop_index('ix_things_id', table_name='things')\n", header)
    assert result.kind == REVERSIBLE


def test_as_dict() -> None:
    value = Reversibility(LOSSY, ("drops table x (its rows are lost)",))
    assert value.as_dict() == {"kind": "lossy", "reasons": ["drops table x (its rows are lost)"]}


# -- the bundled revisions ---------------------------------------------------
BUNDLED = [
    ("equities", "a1c3e5f70b21", ("drops table companies (its rows are lost)",)),
    ("equities", "b2d4f6081c32", ("drops table daily_ohlcv (its rows are lost)",)),
    ("equities", "c3e5071a2d43", ("drops column daily_ohlcv.adjusted_close",)),
    ("equities", "d4f6182b3e54", ("drops column companies.stock_symbol_type",)),
    ("equities", "e5f7293c4a65", ("drops column companies.sentiment_score",)),
    ("algorithms", "3f9a0c2b7d14", ("drops table strategies (its rows are lost)",)),
    ("algorithms", "4a0b1d3c8e25", ("drops table strategy_parameters (its rows are lost)",)),
    ("algorithms", "5b1c2e4d9f36", ("drops table signals (its rows are lost)",)),
    ("algorithms", "6c2d3f5e0a47", ("drops table backtest_runs (its rows are lost)",)),
]


@pytest.mark.parametrize("project, rev, reasons", BUNDLED, ids=[rev for _, rev, _ in BUNDLED])
def test_bundled_revisions(project: str, rev: str, reasons: tuple[str, ...]) -> None:
    (path,) = (REPO / "migrations" / project / "versions").glob("*_%s_*.py" % rev)
    assert classify_downgrade(str(path)) == Reversibility(LOSSY, reasons)


def test_every_bundled_revision_is_covered() -> None:
    found = {path.name.split("_")[2] for path in (REPO / "migrations").glob("*/versions/*.py")}
    assert found == {rev for _, rev, _ in BUNDLED}

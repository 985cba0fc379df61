"""Unit tests of module_utils/fleet/review/sql.py: SQL read with PostgreSQL's own parser (pglast), with the first-words
fallback for what it cannot parse, and of the rules' fixes (review.rules.rule_fix)."""

from __future__ import annotations

import pytest

from ansible.module_utils.fleet.review.rules import RULES, new_table_exempt, rule_applies, rule_fix
from ansible.module_utils.fleet.review.sql import DATA, OTHER, READ, SCHEMA, TRANSACTION, batch_copy_parts, read_sql, read_statement, table_of


@pytest.mark.parametrize(
    "sql, kind",
    [
        ("SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_a'::regclass", READ),
        ("SELECT count(*) FROM accounts", READ),
        ("with x as (select 1) select * from x", READ),
        ("WITH gone AS (DELETE FROM accounts RETURNING id) SELECT count(*) FROM gone", DATA),
        ("SELECT * INTO archive FROM accounts", DATA),
        ("SELECT setval('accounts_id_seq', 10)", DATA),
        ("UPDATE ONLY accounts SET tier = 'x'", DATA),
        ("insert into \"Tiers\" (name) values ('a')", DATA),
        ("ALTER TABLE accounts ADD COLUMN x int", SCHEMA),
        ("DO $$ BEGIN PERFORM 1; END $$", SCHEMA),
        ("SET lock_timeout = '2s'", OTHER),
        ("BEGIN", TRANSACTION),
    ],
)
def test_kinds(sql: str, kind: str) -> None:
    assert read_statement(sql).kind == kind


@pytest.mark.parametrize(
    "sql, table",
    [
        ("ALTER TABLE ONLY public.accounts ADD COLUMN x int", "accounts"),
        ('ALTER TABLE "Market"."Prices" DROP COLUMN x', "Market.Prices"),
        ("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ix ON market.prices (day)", "market.prices"),
        ("DELETE FROM signals WHERE strength < 0.1", "signals"),
        ("TRUNCATE TABLE a, b", "a"),
        ("COMMENT ON COLUMN accounts.email IS 'x'", None),
        ("SELECT 1", None),
        ("", None),
    ],
)
def test_tables(sql: str, table: str | None) -> None:
    assert table_of(sql) == table


def test_what_a_plan_creates_drops_and_renames() -> None:
    created, if_missing, dropped, renamed = read_sql(
        "CREATE TABLE owners (id int); CREATE TABLE IF NOT EXISTS kept (id int); DROP TABLE old, s.older; ALTER TABLE owners RENAME TO account_owners"
    )
    assert (created.creates, created.creates_if_missing) == ("owners", False)
    assert (if_missing.creates, if_missing.creates_if_missing, if_missing.rerunnable) == ("kept", True, True)
    assert (dropped.drops, dropped.loses_data) == (("old", "s.older"), True)
    assert (renamed.table, renamed.renamed_to) == ("owners", "account_owners")


def test_outside_the_transaction_and_rerunnable() -> None:
    concurrent, plain, vacuum = read_sql("CREATE INDEX CONCURRENTLY ix ON a (b); CREATE INDEX ix2 ON a (b); VACUUM a")
    assert (concurrent.outside_transaction, concurrent.rerunnable) == (True, False)
    assert (plain.outside_transaction, vacuum.outside_transaction) == (False, True)
    assert read_statement("DROP INDEX CONCURRENTLY IF EXISTS ix").rerunnable is True


def test_a_semicolon_inside_a_function_body_does_not_split_it() -> None:
    statements = read_sql("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql; UPDATE a SET b = 1;")
    assert [s.kind for s in statements] == [SCHEMA, DATA]


def test_what_pglast_cannot_parse_falls_back_to_the_first_words() -> None:
    statement = read_statement("UPDATE accounts SET x = 1 WHERE !!")
    assert (statement.parsed, statement.kind, statement.table) == (False, DATA, "accounts")
    assert [s.parsed for s in read_sql("PRAGMA foreign_keys=ON; UPDATE a SET b = 1")] == [False, True], "one bad statement: the others are still parsed"


def test_every_rule_has_a_fix_and_an_unknown_squawk_rule_gets_a_pointer() -> None:
    assert all(rule.fix.strip() and rule.why.strip() for rule in RULES.values())
    assert rule_fix("ban-drop-column") == RULES["ban-drop-column"].fix
    assert rule_fix("a-newer-squawk-rule", "Do it the other way.") == "Do it the other way."
    assert rule_fix("a-newer-squawk-rule", "  ") == "see squawk's rule a-newer-squawk-rule: https://squawkhq.com/docs/a-newer-squawk-rule"


def test_only_lock_and_loss_rules_spare_new_tables() -> None:
    assert new_table_exempt("require-concurrent-index-creation") and new_table_exempt("renaming-table")
    for rule in ("irreversible-downgrade", "uncertain-downgrade", "mixed-data-and-schema", "non-transactional", "a-newer-squawk-rule"):
        assert not new_table_exempt(rule), rule


def test_postgresql_lock_rules_concern_postgresql_only_and_data_loss_every_dialect() -> None:
    for rule in ("require-concurrent-index-creation", "constraint-missing-not-valid", "lock-held-through-long-work", "require-lock-timeout"):
        assert rule_applies(rule, "postgresql") and not rule_applies(rule, "sqlite"), rule
    for rule in ("ban-drop-table", "ban-drop-column", "adding-required-field", "renaming-column", "irreversible-downgrade", "mixed-data-and-schema"):
        assert rule_applies(rule, "postgresql") and rule_applies(rule, "sqlite"), rule
    assert rule_applies("a-newer-squawk-rule", "sqlite"), "a rule the table does not know is not silenced"
    # Every rule whose fix names a PostgreSQL feature is one the table keeps for PostgreSQL.
    for name, rule in RULES.items():
        if any(word in rule.fix for word in ("postgresql_", "CONCURRENTLY", "NOT VALID", "ACCESS EXCLUSIVE")):
            assert rule.dialects == ("postgresql",), name


# Alembic's batch mode on SQLite, offline, for batch_op.drop_column("name") on t.
BATCH_COPY = """CREATE TABLE _alembic_tmp_t (id INTEGER NOT NULL, PRIMARY KEY (id));
INSERT INTO _alembic_tmp_t (id) SELECT t.id FROM t;
DROP TABLE t;
ALTER TABLE _alembic_tmp_t RENAME TO t;
CREATE INDEX ix_t_id ON t (id);
DROP TABLE other;
"""


def test_a_batch_copy_is_recognised_whole_and_nothing_else_is() -> None:
    assert batch_copy_parts(read_sql(BATCH_COPY)) == {0: "t", 1: "t", 2: "t", 3: "t"}
    # Without the rename onto t, the same DROP TABLE is a real one.
    assert batch_copy_parts(read_sql(BATCH_COPY.replace("ALTER TABLE _alembic_tmp_t RENAME TO t;", ""))) == {}
    assert batch_copy_parts(read_sql("ALTER TABLE _alembic_tmp_t RENAME TO u; DROP TABLE u;")) == {}

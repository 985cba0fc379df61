"""Each Alembic module on its own, ad hoc, against a real PostgreSQL 15 database.

Every assertion about an effect is checked on the database itself; every
check-mode run is followed by a query proving nothing was written; and no
output of any call may contain a password.
"""

from __future__ import annotations

from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from support.ansible_run import Run, module
from support.pgcluster import PgCluster

from .conftest import PROJECTS
from .test_bad_input import EQUITIES_INI, conn_args, fails_with
from .test_migrate_postgres import assert_no_secret, head_of, tables_of, version_of

pytestmark = pytest.mark.slow

EQUITIES_TABLES = {"alembic_version", "companies", "daily_ohlcv", "alembic_fleet_ledger"}


def history() -> list[tuple[str, str]]:
    """(revision id, first docstring line) of the equities project, base first."""
    script = ScriptDirectory.from_config(Config(str(PROJECTS["equities"])))
    revisions = list(reversed(list(script.walk_revisions())))
    return [(rev.revision, (rev.doc or "").strip().splitlines()[0].strip()) for rev in revisions]


REVS = [rev for rev, _ in history()]


def ids(steps: list[dict[str, Any]]) -> list[str]:
    return [step["revision"] for step in steps]


def call(clusters: list[PgCluster], name: str, args: dict[str, Any], *flags: str) -> tuple[Run, dict[str, Any]]:
    """Run one module ad hoc; no password may appear anywhere in its output."""
    run, result = module(name, args, *flags)
    assert result, run.output[-3000:]
    assert_no_secret(run.output, clusters)
    return run, result


def columns_of(cluster: PgCluster, table: str, dbname: str = "equities") -> set[str]:
    rows = cluster.execute(
        "select column_name from information_schema.columns where table_schema = 'public' and table_name = %s",
        (table,),
        dbname=dbname,
    )
    return {row[0] for row in rows}


def indexes_of(cluster: PgCluster, dbname: str = "equities") -> set[str]:
    rows = cluster.execute("select indexname from pg_indexes where schemaname = 'public'", dbname=dbname)
    return {row[0] for row in rows}


def version_table_exists(cluster: PgCluster, dbname: str = "equities") -> bool:
    return bool(cluster.execute("select to_regclass('public.alembic_version') is not null", dbname=dbname)[0][0])


def test_history_is_the_expected_linear_chain() -> None:
    assert len(REVS) == 5 and REVS[-1] == head_of("equities")
    assert REVS[2] == "c3e5071a2d43"  # the revision that adds daily_ohlcv.adjusted_close


def test_upgrade_step_by_step_status_and_check_diff(fresh_pg: list[PgCluster]) -> None:
    db1, db2 = fresh_pg
    base_args = {"config": str(EQUITIES_INI), **conn_args(db1)}

    # +1 from an empty database
    run, result = call(fresh_pg, "alembic_upgrade", {**base_args, "target": "+1"})
    assert run.rc == 0, result
    assert result["changed"] is True
    assert (result["before"], result["after"], ids(result["applied"])) == ([], REVS[:1], REVS[:1])
    assert all(step["direction"] == "upgrade" for step in result["applied"])
    assert version_of(db1, "equities") == REVS[:1]
    assert tables_of(db1, "equities") == {"alembic_version", "companies", "alembic_fleet_ledger"}

    # status on the partially migrated database: read-only, pending in order
    run, result = call(fresh_pg, "alembic_status", base_args)
    assert run.rc == 0, result
    assert result["changed"] is False
    assert result["current"] == REVS[:1]
    assert [(s["revision"], s["message"]) for s in result["pending"]] == history()[1:]
    assert result["pending"][0]["down_revision"] == REVS[:1]
    assert result["pending_count"] == len(REVS) - 1
    assert result["at_target"] is False
    assert result["versioned"] is True and result["exists"] is True
    assert result["heads"] == [REVS[-1]] and result["multiple_heads"] is False
    assert str(result["server_version"]).startswith("15"), result["server_version"]
    assert version_of(db1, "equities") == REVS[:1]

    # --check --diff (and -vvv, so the diff stays in the printed result): SQL, nothing written
    run, result = call(fresh_pg, "alembic_upgrade", base_args, "--check", "--diff", "-vvv")
    assert run.rc == 0, result
    assert result["changed"] is True
    assert ids(result["pending"]) == REVS[1:]
    assert result["applied"] == []
    assert result["before"] == REVS[:1] and result["after"] == REVS[-1:]
    for sql in (result["sql"], result["diff"]["prepared"]):
        assert "CREATE TABLE daily_ohlcv" in sql
        assert "ALTER TABLE daily_ohlcv ADD COLUMN adjusted_close NUMERIC(15, 4)" in sql
        assert "ALTER TABLE companies ADD COLUMN sentiment_score NUMERIC(3, 2)" in sql
        assert "CREATE TABLE companies" not in sql  # rendered from the current revision, not from base
    assert "ALTER TABLE daily_ohlcv ADD COLUMN adjusted_close NUMERIC(15, 4)" in run.output
    assert version_of(db1, "equities") == REVS[:1]
    assert tables_of(db1, "equities") == {"alembic_version", "companies", "alembic_fleet_ledger"}
    assert "stock_symbol_type" not in columns_of(db1, "companies")

    # head-1 (run at -vvv): the next three revisions
    run, result = call(fresh_pg, "alembic_upgrade", {**base_args, "target": "head-1"}, "-vvv")
    assert run.rc == 0, result
    assert result["changed"] is True
    assert (result["before"], result["after"], ids(result["applied"])) == (REVS[:1], [REVS[3]], REVS[1:4])
    assert version_of(db1, "equities") == [REVS[3]]
    assert tables_of(db1, "equities") == EQUITIES_TABLES
    assert "adjusted_close" in columns_of(db1, "daily_ohlcv")
    assert "sentiment_score" not in columns_of(db1, "companies")

    # head~1 names the same revision: nothing left to do here ...
    run, result = call(fresh_pg, "alembic_upgrade", {**base_args, "target": "head~1"})
    assert run.rc == 0, result
    assert result["changed"] is False
    assert (result["before"], result["after"], result["applied"]) == ([REVS[3]], [REVS[3]], [])
    assert version_of(db1, "equities") == [REVS[3]]

    # ... and from an empty database (db2) it stops exactly where head-1 does
    run, result = call(fresh_pg, "alembic_upgrade", {"config": str(EQUITIES_INI), **conn_args(db2), "target": "head~1"})
    assert run.rc == 0, result
    assert result["changed"] is True
    assert (result["before"], result["after"], ids(result["applied"])) == ([], [REVS[3]], REVS[:4])
    assert version_of(db2, "equities") == [REVS[3]]
    assert "sentiment_score" not in columns_of(db2, "companies")

    # head, then head again
    run, result = call(fresh_pg, "alembic_upgrade", {**base_args, "target": "head"})
    assert run.rc == 0, result
    assert result["changed"] is True
    assert (result["before"], result["after"], ids(result["applied"])) == ([REVS[3]], [REVS[4]], [REVS[4]])
    assert version_of(db1, "equities") == [REVS[4]]
    assert "sentiment_score" in columns_of(db1, "companies")

    run, result = call(fresh_pg, "alembic_upgrade", base_args)
    assert run.rc == 0, result
    assert result["changed"] is False
    assert result["applied"] == [] and result["before"] == result["after"] == [REVS[4]]
    assert version_of(db1, "equities") == [REVS[4]]


def test_downgrade_one_then_base(fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    base_args = {"config": str(EQUITIES_INI), **conn_args(db1)}
    run, result = call(fresh_pg, "alembic_upgrade", base_args)
    assert run.rc == 0, result
    assert "sentiment_score" in columns_of(db1, "companies")

    # -1 from head: the last revision's column is really gone
    run, result = call(fresh_pg, "alembic_downgrade", {**base_args, "target": "-1"})
    assert run.rc == 0, result
    assert result["changed"] is True
    assert (result["before"], result["after"], ids(result["applied"])) == ([REVS[4]], [REVS[3]], [REVS[4]])
    assert result["applied"][0]["direction"] == "downgrade"
    assert version_of(db1, "equities") == [REVS[3]]
    assert "sentiment_score" not in columns_of(db1, "companies")
    assert "stock_symbol_type" in columns_of(db1, "companies")

    # base in check mode with the SQL: nothing dropped
    tables_before = tables_of(db1, "equities")
    run, result = call(fresh_pg, "alembic_downgrade", {**base_args, "target": "base"}, "--check", "--diff")
    assert run.rc == 0, result
    assert result["changed"] is True
    assert ids(result["pending"]) == list(reversed(REVS[:4]))  # newest first
    assert result["applied"] == [] and result["after"] == []
    sql = result["sql"]
    assert "DROP TABLE daily_ohlcv" in sql and "DROP TABLE companies" in sql
    assert "ALTER TABLE daily_ohlcv DROP COLUMN adjusted_close" in sql
    assert "DROP TABLE companies" in run.output  # the diff the operator sees
    assert version_of(db1, "equities") == [REVS[3]]
    assert tables_of(db1, "equities") == tables_before == EQUITIES_TABLES

    # base for real: the project's tables are gone
    run, result = call(fresh_pg, "alembic_downgrade", {**base_args, "target": "base"})
    assert run.rc == 0, result
    assert result["changed"] is True
    assert (result["before"], result["after"]) == ([REVS[3]], [])
    assert ids(result["applied"]) == list(reversed(REVS[:4]))
    assert tables_of(db1, "equities") <= {"alembic_version", "alembic_fleet_ledger"}
    assert version_of(db1, "equities") == []

    # base again: nothing to do
    run, result = call(fresh_pg, "alembic_downgrade", {**base_args, "target": "base"})
    assert run.rc == 0, result
    assert result["changed"] is False
    assert result["applied"] == [] and result["before"] == result["after"] == []

    # +1 is not a downgrade: refused in one line, nothing touched
    run, result = call(fresh_pg, "alembic_downgrade", {**base_args, "target": "+1"})
    fails_with(result, run.rc, "goes up", "upgrade module")
    assert tables_of(db1, "equities") <= {"alembic_version", "alembic_fleet_ledger"}
    assert version_of(db1, "equities") == []


def test_stamp_baselines_a_database_created_outside_alembic(fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    base_args = {"config": str(EQUITIES_INI), **conn_args(db1)}
    run, result = call(fresh_pg, "alembic_upgrade", base_args)
    assert run.rc == 0, result
    db1.execute("DROP TABLE alembic_version", dbname="equities")
    db1.execute("INSERT INTO companies (ticker, company_name) VALUES ('ACME', 'Acme Corp')", dbname="equities")
    assert not version_table_exists(db1)

    # -vvv keeps the diff in the printed result
    run, result = call(fresh_pg, "alembic_stamp", {**base_args, "target": "head"}, "--check", "--diff", "-vvv")
    assert run.rc == 0, result
    assert result["changed"] is True
    assert (result["before"], result["after"]) == ([], [REVS[-1]])
    prepared = result["diff"]["prepared"]
    assert "CREATE TABLE alembic_version" in prepared, prepared
    assert "INSERT INTO alembic_version (version_num) VALUES ('%s')" % REVS[-1] in prepared, prepared
    assert not version_table_exists(db1), "check mode created the version table"

    run, result = call(fresh_pg, "alembic_stamp", {**base_args, "target": "head"})
    assert run.rc == 0, result
    assert result["changed"] is True
    assert (result["before"], result["after"]) == ([], [REVS[-1]])
    assert version_of(db1, "equities") == [REVS[-1]]
    assert db1.execute("select ticker from companies", dbname="equities") == [("ACME",)], "stamp ran a migration"

    run, result = call(fresh_pg, "alembic_stamp", {**base_args, "target": "head"})
    assert run.rc == 0, result
    assert result["changed"] is False
    assert result["before"] == result["after"] == [REVS[-1]]
    assert version_of(db1, "equities") == [REVS[-1]]

    run, result = call(fresh_pg, "alembic_stamp", {**base_args, "target": "base"})
    assert run.rc == 0, result
    assert result["changed"] is True
    assert (result["before"], result["after"]) == ([REVS[-1]], [])
    assert db1.execute("select count(*) from alembic_version", dbname="equities") == [(0,)]
    assert tables_of(db1, "equities") == EQUITIES_TABLES  # the schema itself is untouched


def test_verify_clean_drifted_behind_and_at_an_older_revision(fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    base_args = {"config": str(EQUITIES_INI), **conn_args(db1)}
    run, result = call(fresh_pg, "alembic_upgrade", base_args)
    assert run.rc == 0, result

    run, result = call(fresh_pg, "alembic_verify", base_args)
    assert run.rc == 0, result
    assert result["changed"] is False
    assert result["schema_compared"] is True
    assert result["schema_differences"] == []
    assert result["problems"] == []
    assert result["current"] == result["expected"] == [REVS[-1]]

    # drift made by hand
    db1.execute("ALTER TABLE companies ADD COLUMN rogue integer", dbname="equities")
    db1.execute("DROP INDEX idx_daily_ohlcv_date", dbname="equities")
    run, result = call(fresh_pg, "alembic_verify", base_args)
    message = fails_with(result, run.rc, "companies.rogue", "idx_daily_ohlcv_date")
    assert result["changed"] is False
    assert result["schema_compared"] is True
    differences = result["schema_differences"]
    assert len(differences) == 2, differences
    assert any("companies.rogue" in d and "not in the models" in d for d in differences), differences
    assert any("idx_daily_ohlcv_date" in d and "not in the database" in d for d in differences), differences
    problems = " ".join(result["problems"])
    assert "companies.rogue" in problems and "idx_daily_ohlcv_date" in problems, result["problems"]
    assert "verification" in message
    # verify never repairs anything
    assert "rogue" in columns_of(db1, "companies")
    assert "idx_daily_ohlcv_date" not in indexes_of(db1)

    # a database behind head
    run, result = call(fresh_pg, "alembic_downgrade", {**base_args, "target": "-1"})
    assert run.rc == 0, result
    run, result = call(fresh_pg, "alembic_verify", base_args)
    fails_with(result, run.rc, "expected", REVS[3], REVS[4])
    assert result["current"] == [REVS[3]] and result["expected"] == [REVS[4]]
    assert version_of(db1, "equities") == [REVS[3]]

    # ... which is where it should be when asked for that revision, but below head the schema is
    # compared with what the migrations build at that revision: the hand-made drift still shows
    run, result = call(fresh_pg, "alembic_verify", {**base_args, "revision": REVS[3]})
    fails_with(result, run.rc, "what the migrations build at %s" % REVS[3], "companies.rogue", "idx_daily_ohlcv_date")
    assert result["current"] == result["expected"] == [REVS[3]]
    assert result["schema_compared"] is True
    assert len(result["schema_differences"]) == 2, result["schema_differences"]

    # repaired by hand, the database matches the schema built at that revision
    db1.execute("ALTER TABLE companies DROP COLUMN rogue", dbname="equities")
    db1.execute("CREATE INDEX idx_daily_ohlcv_date ON daily_ohlcv (date)", dbname="equities")
    run, result = call(fresh_pg, "alembic_verify", {**base_args, "revision": REVS[3]})
    assert run.rc == 0, result
    assert result["changed"] is False and result["problems"] == []
    assert result["schema_compared"] is True and result["schema_differences"] == []
    assert result["schema_compared_with"] == "what the migrations build at %s" % REVS[3]
    leftovers = db1.execute("select datname from pg_database where datname like '%scratch%'")
    assert leftovers == [], "the scratch database is dropped"

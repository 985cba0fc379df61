"""The schema comparison sees every object: PostgreSQL's whole catalog against the scratch build (issue 14, point 7).

A project of our own (tmp) has an object of each kind (enum and composite types, a domain, CHECK, unique and
primary keys, defaults, an index, a sequence, views, a function, a trigger) and two labelled branches, one of whose
downgrades leaves its enum type behind, as real histories do. On a real PostgreSQL cluster: no difference on a clean
database at any revision or at both heads; each hand-made object, and each hand-made change to one, named in one
line; the leftover enum type after a downgrade named; the same through alembic_status's drift. The comparison of
two inventories, and which table a line belongs to, also without a database.
"""

from __future__ import annotations

import shutil
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ansible.module_utils.fleet.alembic.run import AlembicRun, load_project
from ansible.module_utils.fleet.core.common import parse_target
from ansible.module_utils.fleet.schema.scratch import expected_schema_differences
from ansible.module_utils.fleet.schema.snapshot import Item, compare_inventories, excerpts, inventory_of, read_inventory, table_of_difference
from support.ansible_run import REPO, module
from support.pgcluster import PgCluster

from .test_migrate_postgres import assert_no_secret

pytestmark = pytest.mark.slow

DB = "catalog_db"
LEDGER = "alembic_fleet_ledger"
BASE, CORE, EXTRA, ORDERS = "c0a1b2c3d4e5", "c1b2c3d4e5f6", "e1c2d3e4f5a6", "c2d3e4f5a6b7"
WHERE = "is in the database but not in the expected schema"
MISSING = "is in the expected schema but not in the database"

ENV_PY = """
from alembic import context
from sqlalchemy import create_engine, pool

config = context.config


def run_online(connection):
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    run_online(config.attributes["connection"])
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        run_online(connection)
"""

INI = """[alembic]
script_location = %(here)s
sqlalchemy.url = postgresql://nobody@127.0.0.1:1/not_this_one
"""

HEADER = """
import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = {down}
branch_labels = {labels}
depends_on = None
"""

# Every kind of object, made by the migrations: what a clean database must show no difference for.
BASE_BODY = """
def upgrade():
    op.execute("CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0)")
    op.execute("CREATE TYPE money_pair AS (amount numeric, currency text)")
    op.create_table(
        "prices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ticker", sa.String(20), nullable=False),
        sa.Column("price", sa.Numeric(12, 4), nullable=False),
        sa.Column("listed", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("mood", sa.Enum("happy", "sad", name="mood"), nullable=True),
        sa.Column("lots", sa.Integer, sa.Identity(always=True)),
        sa.Column("note", sa.Text, comment="free text"),
        sa.CheckConstraint("price > 0", name="ck_price_positive"),
        sa.UniqueConstraint("ticker", name="uq_prices_ticker"),
    )
    op.create_index("ix_prices_listed", "prices", ["listed"])
    op.execute("CREATE SEQUENCE ticket_seq START 100 INCREMENT 5")
    op.execute("CREATE VIEW v_latest AS SELECT ticker, max(listed) AS listed FROM prices GROUP BY ticker")
    op.execute("CREATE MATERIALIZED VIEW mv_count AS SELECT count(*) AS n FROM prices")
    op.execute("CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.listed := now(); RETURN NEW; END $$")
    op.execute("CREATE TRIGGER t_touch BEFORE UPDATE ON prices FOR EACH ROW EXECUTE FUNCTION touch()")
    # IN lists on a varchar, which PostgreSQL prints one way when made and another once a dump restores them.
    op.create_table(
        "trades",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("side", sa.String(4), nullable=False),
        sa.CheckConstraint("side IN ('BUY', 'SELL')", name="ck_trades_side"),
    )
    op.create_index("ix_trades_sells", "trades", ["id"], postgresql_where=sa.text("side IN ('SELL', 'SHORT')"))
    op.execute("CREATE VIEW v_sides AS SELECT id FROM trades WHERE side IN ('BUY', 'SELL')")


def downgrade():
    op.execute("DROP VIEW v_sides")
    op.drop_table("trades")
    op.execute("DROP TRIGGER t_touch ON prices")
    op.execute("DROP FUNCTION touch()")
    op.execute("DROP MATERIALIZED VIEW mv_count")
    op.execute("DROP VIEW v_latest")
    op.execute("DROP SEQUENCE ticket_seq")
    op.drop_table("prices")
    op.execute("DROP TYPE mood")
    op.execute("DROP TYPE money_pair")
    op.execute("DROP DOMAIN positive_int")
"""

CORE_BODY = """
def upgrade():
    op.add_column("prices", sa.Column("currency", sa.String(3), server_default="USD", nullable=False))


def downgrade():
    op.drop_column("prices", "currency")
"""

# The other branch: a table with a serial key (its sequence goes with it).
EXTRA_BODY = """
def upgrade():
    op.create_table("extras", sa.Column("id", sa.Integer, primary_key=True), sa.Column("label", sa.Text))


def downgrade():
    op.drop_table("extras")
"""

# As real histories do: drop_table does not drop the enum type create_table made.
ORDERS_BODY = """
def upgrade():
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("status", sa.Enum("new", "paid", name="order_status"), nullable=False),
    )


def downgrade():
    op.drop_table("orders")
"""


def write_project(root: Path) -> Path:
    versions = root / "versions"
    versions.mkdir(parents=True)
    (root / "env.py").write_text(ENV_PY)
    shutil.copy(REPO / "migrations" / "equities" / "script.py.mako", root / "script.py.mako")
    revisions = (
        (BASE, None, None, BASE_BODY),
        (CORE, BASE, "core", CORE_BODY),
        (EXTRA, BASE, "extra", EXTRA_BODY),
        (ORDERS, CORE, None, ORDERS_BODY),
    )
    for revision, down, label, body in revisions:
        header = HEADER.format(revision=revision, down=repr(down), labels=repr((label,) if label else None))
        (versions / ("%s.py" % revision)).write_text(header + textwrap.dedent(body))
    ini = root / "alembic.ini"
    ini.write_text(INI)
    return ini


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("catalog") / "proj")


@pytest.fixture()
def cluster(pg_clusters: list[PgCluster]) -> Iterator[PgCluster]:
    cluster = pg_clusters[0]
    cluster.reset_database(DB)
    yield cluster
    cluster.drop_database(DB)


def url(cluster: PgCluster) -> str:
    return "postgresql://%s@127.0.0.1:%d/%s" % (cluster.app_user, cluster.port, DB)


def alembic_run(cluster: PgCluster, ini: Path) -> AlembicRun:
    return AlembicRun(load_project(str(ini)), parse_target(url(cluster), cluster.app_password))


def migrate(cluster: PgCluster, ini: Path, direction: str, *targets: str) -> list[str]:
    """Move the live database as an operator's run would (in process); its revisions after."""
    run = alembic_run(cluster, ini)
    with run.session():
        for target in targets:
            run.migrate(direction, run.parse(target, direction))
        return sorted(run.probe().current)


def differences(cluster: PgCluster, ini: Path, revisions: str | list[str]) -> list[str]:
    run = alembic_run(cluster, ini)
    with run.session():
        return expected_schema_differences(run, revisions, [LEDGER])


def scratch_left(cluster: PgCluster) -> list[Any]:
    return cluster.execute("select datname from pg_database where datname ~ '_scratch_'")


# -- a clean database -------------------------------------------------------------------------------------
def test_no_difference_on_a_clean_database_at_each_revision_and_at_both_heads(cluster: PgCluster, project: Path) -> None:
    assert migrate(cluster, project, "upgrade", BASE) == [BASE]
    assert differences(cluster, project, BASE) == []
    assert migrate(cluster, project, "upgrade", ORDERS) == [ORDERS]
    assert differences(cluster, project, ORDERS) == []
    assert differences(cluster, project, [ORDERS]) == []
    # Built at the wrong revision, the difference is seen: the comparison is not blind.
    assert differences(cluster, project, BASE) == [
        "enum type order_status %s" % WHERE,
        "table orders %s" % WHERE,
        "column prices.currency %s" % WHERE,
    ]

    # Both heads (one per labelled branch): the scratch database is built at each in turn.
    assert migrate(cluster, project, "upgrade", "extra@head") == sorted([ORDERS, EXTRA])
    assert differences(cluster, project, [ORDERS, EXTRA]) == []
    assert differences(cluster, project, [EXTRA, ORDERS]) == []
    # ... and at one of them only, the other branch's table is what differs (its serial's sequence goes with it).
    assert differences(cluster, project, ORDERS) == ["table extras %s" % WHERE]
    cluster.execute("ALTER TABLE extras ADD CONSTRAINT ck_label CHECK (label <> '')", dbname=DB)
    assert differences(cluster, project, [ORDERS, EXTRA]) == ["check constraint ck_label on extras %s" % WHERE]
    assert scratch_left(cluster) == []


def test_an_env_py_that_connects_to_database_url_builds_the_scratch_database_not_the_live_one(cluster: PgCluster, tmp_path: Path, project: Path) -> None:
    # Such an env.py ignores the shared connection: $DATABASE_URL must name the scratch database while it is built.
    own = tmp_path / "proj"
    shutil.copytree(project.parent, own)
    (own / "env.py").write_text(
        ENV_PY.replace('config.attributes.get("connection") is not None', "False").replace(
            'config.get_main_option("sqlalchemy.url"), poolclass', '__import__("os").environ["DATABASE_URL"], poolclass'
        )
    )
    ini = own / "alembic.ini"
    assert migrate(cluster, ini, "upgrade", BASE) == [BASE]
    assert differences(cluster, ini, CORE) == ["column prices.currency %s" % MISSING]
    assert [row[0] for row in cluster.execute("select version_num from alembic_version", dbname=DB)] == [BASE]


def test_a_database_restored_from_a_dump_is_no_different(cluster: PgCluster, project: Path) -> None:
    migrate(cluster, project, "upgrade", CORE)
    printed = {
        "check": "select pg_get_constraintdef(oid, true) from pg_constraint where conname = 'ck_trades_side'",
        "index": "select pg_get_indexdef('ix_trades_sells'::regclass, 0, true)",
        "view": "select pg_get_viewdef('v_sides'::regclass, true)",
    }
    made = {what: cluster.execute(sql, dbname=DB)[0][0] for what, sql in printed.items()}
    # What pg_dump writes and pg_restore runs: each object again from its printed text.
    cluster.execute("ALTER TABLE trades DROP CONSTRAINT ck_trades_side", dbname=DB)
    cluster.execute("ALTER TABLE trades ADD CONSTRAINT ck_trades_side %s" % made["check"], dbname=DB)
    cluster.execute("DROP INDEX ix_trades_sells", dbname=DB)
    cluster.execute(made["index"], dbname=DB)
    cluster.execute("CREATE OR REPLACE VIEW v_sides AS %s" % made["view"], dbname=DB)
    restored = {what: cluster.execute(sql, dbname=DB)[0][0] for what, sql in printed.items()}
    assert all(made[what] != restored[what] for what in printed), (made, restored)  # printed otherwise now

    assert differences(cluster, project, CORE) == []
    # A real change to the same objects still shows.
    cluster.execute("ALTER TABLE trades DROP CONSTRAINT ck_trades_side", dbname=DB)
    cluster.execute("ALTER TABLE trades ADD CONSTRAINT ck_trades_side CHECK (side IN ('BUY', 'SELL', 'HOLD'))", dbname=DB)
    found = differences(cluster, project, CORE)
    assert len(found) == 1 and found[0].startswith("check constraint ck_trades_side on trades definition differs: database has "), found
    assert "'HOLD'" in found[0], found


# -- hand-made objects and changes ------------------------------------------------------------------------
HAND_MADE = (
    # (statement, the line it must cause, the table the line belongs to)
    ("CREATE TYPE rogue_mood AS ENUM ('x', 'y')", "enum type rogue_mood %s" % WHERE, None),
    ("ALTER TYPE mood ADD VALUE 'angry'", "enum type mood labels differ: database has ('happy', 'sad', 'angry'), expected schema has ('happy', 'sad')", None),
    ("ALTER TABLE prices ADD CONSTRAINT ck_price_cap CHECK (price < 1000000)", "check constraint ck_price_cap on prices %s" % WHERE, "prices"),
    ("ALTER TABLE prices DROP CONSTRAINT ck_price_positive", "check constraint ck_price_positive on prices %s" % MISSING, "prices"),
    (
        "ALTER TABLE prices ALTER COLUMN ticker SET DEFAULT 'X'",
        "column prices.ticker default differs: database has 'X'::character varying, expected schema has none",
        "prices",
    ),
    ("ALTER TABLE prices ALTER COLUMN listed DROP DEFAULT", "column prices.listed default differs: database has none, expected schema has now()", "prices"),
    ("ALTER TABLE prices ALTER COLUMN mood SET NOT NULL", "column prices.mood nullable differs: database has False, expected schema has True", "prices"),
    (
        "ALTER TABLE prices ALTER COLUMN price TYPE numeric(14,4)",
        "column prices.price type differs: database has numeric(14,4), expected schema has numeric(12,4)",
        "prices",
    ),
    ("COMMENT ON COLUMN prices.note IS 'edited'", "column prices.note comment differs: database has edited, expected schema has free text", "prices"),
    ("CREATE VIEW v_rogue AS SELECT 1 AS one", "view v_rogue %s" % WHERE, None),
    (
        "CREATE OR REPLACE VIEW v_latest AS SELECT ticker, min(listed) AS listed FROM prices GROUP BY ticker",
        (
            "view v_latest definition differs: database has SELECT prices.ticker, min(prices.listed) AS listed FROM prices GROUP BY prices.ticker, "
            "expected schema has SELECT prices.ticker, max(prices.listed) AS listed FROM prices GROUP BY prices.ticker"
        ),
        None,
    ),
    ("CREATE SEQUENCE rogue_seq", "sequence rogue_seq %s" % WHERE, None),
    (
        "ALTER SEQUENCE ticket_seq INCREMENT 10",
        (
            "sequence ticket_seq parameters differ: database has (as bigint, start 100, increment 10, min 1, max 9223372036854775807, cache 1, no cycle), "
            "expected schema has (as bigint, start 100, increment 5, min 1, max 9223372036854775807, cache 1, no cycle)"
        ),
        None,
    ),
    ("CREATE FUNCTION rogue_fn(integer) RETURNS integer LANGUAGE sql AS 'select $1 + 1'", "function rogue_fn(integer) %s" % WHERE, None),
    ("CREATE TRIGGER t_rogue BEFORE INSERT ON prices FOR EACH ROW EXECUTE FUNCTION touch()", "trigger t_rogue on prices %s" % WHERE, "prices"),
    ("ALTER TABLE prices DISABLE TRIGGER t_touch", "trigger t_touch on prices enabled differs: database has disabled, expected schema has enabled", "prices"),
    ("CREATE DOMAIN rogue_domain AS text", "domain rogue_domain %s" % WHERE, None),
    (
        "ALTER DOMAIN positive_int ADD CONSTRAINT positive_int_small CHECK (VALUE < 100)",
        (
            "domain positive_int constraints differ: database has positive_int_check CHECK (VALUE > 0); positive_int_small CHECK (VALUE < 100), "
            "expected schema has positive_int_check CHECK (VALUE > 0)"
        ),
        None,
    ),
    (
        "ALTER TYPE money_pair ADD ATTRIBUTE note text",
        (
            "composite type money_pair attributes differ: database has (amount numeric, currency text, note text), "
            "expected schema has (amount numeric, currency text)"
        ),
        None,
    ),
    ("DROP INDEX ix_prices_listed", "index ix_prices_listed on prices(listed) %s" % MISSING, "prices"),
    ("ALTER TABLE prices DROP CONSTRAINT uq_prices_ticker", "constraint uq_prices_ticker on prices %s" % MISSING, "prices"),
    ("CREATE EXTENSION pg_trgm", "extension pg_trgm %s" % WHERE, None),
    # A whole table is one line: its columns, key, serial's sequence are not listed again.
    ("CREATE TABLE rogue_table (id serial PRIMARY KEY, v text CHECK (v <> ''))", "table rogue_table %s" % WHERE, "rogue_table"),
    ("ALTER TABLE prices ADD COLUMN serial_no serial", "column prices.serial_no %s" % WHERE, "prices"),
    ("CREATE INDEX ix_rogue ON prices (ticker, price)", "index ix_rogue on prices(ticker, price) %s" % WHERE, "prices"),
    (
        "CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.listed := clock_timestamp(); RETURN NEW; END $$",
        (
            "function touch() definition differs: database has ...function$ BEGIN NEW.listed := clock_timestamp(); RETURN NEW; END $function$, "
            "expected schema has ...function$ BEGIN NEW.listed := now(); RETURN NEW; END $function$"
        ),
        None,
    ),
    ("ALTER TABLE prices ENABLE ROW LEVEL SECURITY", "table prices row security differs: database has enabled, expected schema has disabled", "prices"),
    ("ALTER TABLE prices SET (fillfactor = 70)", "table prices options differ: database has fillfactor=70, expected schema has none", "prices"),
    (
        "ALTER TABLE prices ALTER COLUMN lots SET GENERATED BY DEFAULT",
        "column prices.lots identity differs: database has by default, expected schema has always",
        "prices",
    ),
    ("CREATE POLICY p_all ON prices USING (true)", "policy p_all on prices %s" % WHERE, "prices"),
    ("CREATE RULE r_keep AS ON DELETE TO prices DO INSTEAD NOTHING", "rule r_keep on prices %s" % WHERE, "prices"),
    ("CREATE STATISTICS st_prices ON ticker, price FROM prices", "statistics object st_prices %s" % WHERE, None),
    ("CREATE MATERIALIZED VIEW mv_rogue AS SELECT 1 AS one", "materialized view mv_rogue %s" % WHERE, None),
    ("CREATE INDEX ix_mv_count ON mv_count (n)", "index ix_mv_count on mv_count(n) %s" % WHERE, "mv_count"),
    ("CREATE SCHEMA side", "schema side %s" % WHERE, None),
    ("CREATE TABLE side.t (id int)", "table side.t %s" % WHERE, "side.t"),
)


def test_each_hand_made_object_and_change_is_named_once(cluster: PgCluster, project: Path) -> None:
    migrate(cluster, project, "upgrade", CORE)
    for statement, _, _ in HAND_MADE:
        cluster.execute(statement, dbname=DB)
    found = differences(cluster, project, CORE)
    expected = [line for _, line, _ in HAND_MADE]
    assert sorted(found) == sorted(expected), "\n".join(sorted(set(found) ^ set(expected)))
    assert len(found) == len(set(found)) == len(HAND_MADE)
    for _, line, table in HAND_MADE:
        assert table_of_difference(line) == table, line
    assert scratch_left(cluster) == []


def test_a_downgrade_that_leaves_an_enum_type_behind_is_caught(cluster: PgCluster, project: Path) -> None:
    assert migrate(cluster, project, "upgrade", ORDERS) == [ORDERS]
    assert migrate(cluster, project, "downgrade", CORE) == [CORE]
    assert differences(cluster, project, CORE) == ["enum type order_status %s" % WHERE]
    # Repaired by hand, nothing is left to say; the next upgrade then works (it failed with DuplicateObject).
    cluster.execute("DROP TYPE order_status", dbname=DB)
    assert differences(cluster, project, CORE) == []
    assert migrate(cluster, project, "upgrade", ORDERS) == [ORDERS]


def test_the_catalog_is_read_fast_and_the_session_is_left_as_it_was(cluster: PgCluster, project: Path) -> None:
    migrate(cluster, project, "upgrade", ORDERS)
    engine = sa.create_engine(cluster.url(DB), connect_args={"password": cluster.app_password}, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            read_inventory(conn)  # the first read warms the server's catalog caches
            started = time.monotonic()
            inventory = read_inventory(conn)
            seconds = time.monotonic() - started
            assert not conn.in_transaction()
            assert conn.exec_driver_sql("show search_path").scalar() == '"$user", public'
            # Inside a caller's transaction, the transaction goes on with the search_path it had.
            conn.exec_driver_sql("set local search_path = pg_catalog")
            read_inventory(conn)
            assert conn.in_transaction() and conn.exec_driver_sql("show search_path").scalar() == "pg_catalog"
    finally:
        engine.dispose()
    print("catalog read: %.1f ms for %d objects" % (seconds * 1000, len(inventory)))
    assert seconds < 0.5, seconds  # about 20 ms here; a nightly status reads two per database
    kinds = {kind for kind, _ in inventory}
    assert {"enum type", "domain", "composite type", "table", "column", "check constraint", "index", "sequence", "view"} <= kinds, kinds
    assert {"materialized view", "function", "trigger", "primary key", "constraint", "schema", "extension"} <= kinds, kinds


# -- through alembic_status --------------------------------------------------------------------------------
def status(clusters: list[PgCluster], args: dict[str, Any]) -> dict[str, Any]:
    run, result = module("alembic_status", {**args, "drift": True})
    assert run.rc == 0, run.output[-3000:]
    assert_no_secret(run.output, clusters)
    return result


def test_status_drift_names_a_hand_made_enum_type_check_default_and_view(pg_clusters: list[PgCluster], cluster: PgCluster) -> None:
    args = {"config": str(REPO / "migrations" / "equities" / "alembic.ini"), "url": url(cluster), "password": cluster.app_password}
    run, _result = module("alembic_upgrade", args)
    assert run.rc == 0, run.output[-3000:]
    assert status(pg_clusters, args)["drift"]["differences"] == []

    for statement in (
        "CREATE TYPE mood AS ENUM ('a', 'b')",
        "ALTER TABLE daily_ohlcv ADD CONSTRAINT ck_price CHECK (close > 0)",
        "ALTER TABLE companies ADD COLUMN listed timestamptz DEFAULT now()",
        "ALTER TABLE companies ALTER COLUMN sector SET DEFAULT 'n/a'",
        "CREATE VIEW v_latest AS SELECT symbol, max(date) AS date FROM daily_ohlcv GROUP BY symbol",
    ):
        cluster.execute(statement, dbname=DB)
    drift = status(pg_clusters, args)["drift"]
    assert drift["checked"] is True
    assert sorted(drift["differences"]) == sorted(
        [
            "enum type mood %s" % WHERE,
            "check constraint ck_price on daily_ohlcv %s" % WHERE,
            "column companies.listed %s" % WHERE,
            "column companies.sector default differs: database has 'n/a'::character varying, expected schema has none",
            "view v_latest %s" % WHERE,
        ]
    ), drift
    assert scratch_left(cluster) == []


def test_status_drift_at_two_heads_is_built_at_both(pg_clusters: list[PgCluster], cluster: PgCluster, project: Path) -> None:
    args = {"config": str(project), "url": url(cluster), "password": cluster.app_password}
    run, _result = module("alembic_upgrade", {**args, "target": "heads"})
    assert run.rc == 0, run.output[-3000:]
    drift = status(pg_clusters, args)["drift"]
    assert (drift["checked"], drift["differences"], drift["note"]) == (True, [], None), drift
    assert sorted(drift["revision"].split(", ")) == sorted([ORDERS, EXTRA])

    cluster.execute("ALTER TABLE extras ALTER COLUMN label SET DEFAULT 'x'", dbname=DB)
    drift = status(pg_clusters, {**args, "drift_allow": ["prices"]})["drift"]
    assert drift["differences"] == ["column extras.label default differs: database has 'x'::text, expected schema has none"]
    drift = status(pg_clusters, {**args, "drift_allow": ["column extras.label default *"]})["drift"]
    assert (drift["differences"], drift["allowed"]) == ([], ["column extras.label default differs: database has 'x'::text, expected schema has none"])


# -- SQLite: views and triggers too ----------------------------------------------------------------------
def test_sqlite_views_and_triggers_are_compared(tmp_path: Path) -> None:
    path = tmp_path / "equities.db"
    run = AlembicRun(load_project(str(REPO / "migrations" / "equities" / "alembic.ini")), parse_target("sqlite:///%s" % path, None))
    with run.session():
        run.ensure_database(True, "postgres")
        run.migrate("upgrade", run.parse("head", "upgrade"))
        assert expected_schema_differences(run, "head", [LEDGER]) == []
        with run.transaction() as conn:
            conn.exec_driver_sql("CREATE VIEW v_symbols AS SELECT DISTINCT symbol FROM daily_ohlcv")
            conn.exec_driver_sql("CREATE TRIGGER t_rogue AFTER INSERT ON companies BEGIN SELECT 1; END")
        assert expected_schema_differences(run, "head", [LEDGER]) == ["view v_symbols %s" % WHERE, "trigger t_rogue on companies %s" % WHERE]


# -- comparing inventories, without a database -----------------------------------------------------------------
def column(table: str, name: str, default: str = "none") -> Item:
    return Item("column", "%s.%s" % (table, name), table=table, fields=(("type", "integer"), ("default", default)), part_of=("table", table))


def test_a_relation_on_one_side_is_one_line_and_ignored_tables_are_left_out() -> None:
    live = inventory_of(
        [
            Item("table", "t"),
            column("t", "a"),
            Item("trigger", "t.tr", label="tr on t", table="t", part_of=("table", "t")),
            Item("sequence", "t_id_seq", table="t", part_of=("column", "t.id")),
            column("t", "id"),
            Item("sequence", "kept_id_seq", table="kept", part_of=("column", "kept.id")),
            column("kept", "id"),
            Item("table", "alembic_fleet_ledger"),
            column("alembic_fleet_ledger", "id"),
            Item("table", "kept"),
            column("kept", "x", default="now()"),
        ]
    )
    expected = inventory_of([Item("table", "kept"), column("kept", "x"), Item("enum type", "mood", fields=(("labels", "('a')"),))])
    # A serial column by hand is one line: its sequence goes with it.
    assert compare_inventories(live, expected, ignore_tables=[LEDGER]) == [
        "enum type mood %s" % MISSING,
        "table t %s" % WHERE,
        "column kept.id %s" % WHERE,
        "column kept.x default differs: database has now(), expected schema has none",
    ]
    assert compare_inventories(expected, expected) == []
    assert compare_inventories(live, live, "models") == []


def test_long_values_are_shown_where_they_first_differ() -> None:
    one, two = "x" * 200 + " max(a) " + "y" * 200, "x" * 200 + " min(a) " + "y" * 200
    shown, other = excerpts(one, two)
    assert "max(a)" in shown and "min(a)" in other
    assert shown.startswith("...") and shown.endswith("...") and len(shown) < 130
    assert excerpts("short", "other") == ("short", "other")

"""Issue 14's acceptance: Alembic histories shaped like real open-source ones, through the real playbooks.

The fixture histories under tests/fixtures/histories (see its README for what each one exercises and which real
projects showed that shape) are first checked with raw Alembic (upgrade, downgrade to base, upgrade again), so
that every failure below is ours, not the fixture's. Then each one runs through migrate.yml, rollback.yml,
status.yml and stamp.yml on a real PostgreSQL cluster (batchy also on SQLite):

* one dev inventory holds one host per fixture with one database each, so a single playbook run covers every
  fixture and a failing fixture does not stop the others (dev policy: all hosts, no review block);
* each step runs once per module (module-scoped fixtures, chained in the order an operator would run them) and
  records what the databases looked like right after it, so each test judges one fixture at one step;
* separate databases hold the scenarios that need a state of their own: branch targets, a failure inside
  batch_alter_table, stamping a database built outside Alembic, and a fresh install under prod policy.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import sqlalchemy as sa
import yaml
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from support.ansible_run import REPO, Run, playbook, write_yaml
from support.pgcluster import PgCluster

from .test_migrate_postgres import assert_no_secret

pytestmark = pytest.mark.slow

HISTORIES = REPO / "tests" / "fixtures" / "histories"
LEDGER = "alembic_fleet_ledger"
PASSWORD_VARIABLE = "FLEET_TEST_RH_PASSWORD"
PG_FIXTURES = ("forked", "planes", "batchy", "bare_metadata")
LITE = "batchy_lite"  # batchy again, on SQLite
HOSTS = (*PG_FIXTURES, LITE)


@dataclass(frozen=True)
class History:
    """What the tests know about one fixture history."""

    folder: str
    target: str = "head"
    # SQL that --check --diff must show (from revisions that render offline) ...
    rendered_sql: tuple[str, ...] = ()
    # ... and the revisions it must name as impossible to render offline.
    unrenderable: tuple[str, ...] = ()
    # Where the hand-made objects go (PostgreSQL) and the hand-written rows are counted: a table and a text column.
    table: str = ""
    column: str = ""
    # A row written by hand (proves what a restore loses and what a failed rollback keeps).
    insert_row: str = ""

    @property
    def ini(self) -> Path:
        return HISTORIES / self.folder / "alembic.ini"


FIXTURES: dict[str, History] = {
    "forked": History(
        folder="forked",
        rendered_sql=(
            "CREATE TYPE account_status",
            "CREATE TABLE accounts",
            "CREATE TABLE invoices",
            "CREATE INDEX CONCURRENTLY ix_orders_note",
            "ALTER TYPE account_status ADD VALUE",
            "ck_orders_amount_positive",
        ),
        unrenderable=("9d4e3f0a5c43",),
        table="accounts",
        column="name",
        insert_row="INSERT INTO accounts (name, status) VALUES ('written_by_hand', 'active')",
    ),
    "planes": History(
        folder="planes",
        target="heads",
        rendered_sql=("CREATE TABLE widgets", "CREATE TABLE gadgets", "UPDATE widgets SET title = label", "DROP COLUMN label", "CREATE INDEX ix_gadgets_name"),
        table="widgets",
        column="title",
        insert_row="INSERT INTO widgets (title) VALUES ('written_by_hand')",
    ),
    "batchy": History(
        folder="batchy",
        rendered_sql=("CREATE TABLE users", "ADD COLUMN nickname", "CREATE TABLE tags", "RENAME body TO content"),
        table="users",
        column="email",
        insert_row="INSERT INTO users (email) VALUES ('written_by_hand@example.com')",
    ),
    "bare_metadata": History(
        folder="bare_metadata",
        rendered_sql=("CREATE SEQUENCE invoice_number_seq", "CREATE VIEW customer_totals", "ck_customers_email_has_at", "CREATE TABLE tmp_import_rows"),
        table="customers",
        column="email",
        insert_row="INSERT INTO customers (email) VALUES ('written_by_hand@example.com')",
    ),
    LITE: History(
        folder="batchy",
        rendered_sql=("CREATE TABLE users", "CREATE TABLE tags"),
        # SQLite rebuilds the table for a unique constraint, which needs the live table: not offline.
        unrenderable=("b1c2d3e4f5a6",),
        table="users",
        column="email",
        insert_row="INSERT INTO users (email, created_at) VALUES ('written_by_hand@example.com', '2024-01-01')",
    ),
}

# The conditional helper of forked's d26a5b1c7e65 refuses the downgrade while an account is 'suspended'.
FORKED_BLOCKING_FILE = "d26a5b1c7e65_account_status_suspended.py"
FORKED_BLOCKING_ROW = "INSERT INTO accounts (name, status) VALUES ('held', 'suspended')"
FAILING_BATCH_FILE = "20240301_c0ffee000bad_fail_inside_batch.py"


# -- reading the databases ------------------------------------------------------------------------------------------
def script_of(ini: Path) -> ScriptDirectory:
    return ScriptDirectory.from_config(Config(str(ini)))


def heads_of(name: str) -> list[str]:
    return sorted(script_of(FIXTURES[name].ini).get_heads())


def pg_versions(cluster: PgCluster, dbname: str) -> list[str]:
    if not cluster.execute("select to_regclass('public.alembic_version') is not null", dbname=dbname)[0][0]:
        return []
    return sorted(row[0] for row in cluster.execute("select version_num from alembic_version", dbname=dbname))


def pg_catalog(cluster: PgCluster, dbname: str) -> dict[str, list[str]]:
    """Every schema object of `public` that a migration can make, as comparable text (the ledger left out)."""
    queries = {
        "relations": "select c.relkind::text || ' ' || c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and c.relname not like 'alembic_fleet_ledger%'",
        "columns": "select table_name || '.' || column_name || ' ' || data_type || ' ' || coalesce(character_maximum_length::text, '')"
        " || ' null=' || is_nullable || ' default=' || coalesce(column_default, '') from information_schema.columns"
        " where table_schema = 'public' and table_name <> 'alembic_fleet_ledger'",
        "constraints": "select conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) from pg_constraint"
        " where connamespace = 'public'::regnamespace and conrelid::regclass::text <> 'alembic_fleet_ledger'",
        "enums": "select t.typname || ' ' || string_agg(e.enumlabel, ',' order by e.enumsortorder) from pg_type t"
        " join pg_enum e on e.enumtypid = t.oid where t.typnamespace = 'public'::regnamespace group by t.typname",
        "views": "select viewname || ' ' || definition from pg_views where schemaname = 'public'",
        "indexes": "select indexdef from pg_indexes where schemaname = 'public' and tablename <> 'alembic_fleet_ledger'",
    }
    return {kind: sorted(row[0] for row in cluster.execute(query, dbname=dbname)) for kind, query in queries.items()}


def leftovers(catalog: dict[str, list[str]]) -> list[str]:
    """What a catalog holds besides the version table (nothing, after a downgrade to base)."""
    return [item for kind, items in catalog.items() if kind != "columns" for item in items if "alembic_version" not in item]


def pg_ledger(cluster: PgCluster, dbname: str) -> list[dict[str, Any]]:
    if not cluster.execute("select to_regclass('public.%s') is not null" % LEDGER, dbname=dbname)[0][0]:
        return []
    columns = ("action", "outcome", "from_revision", "to_revision", "entry_id", "undone_by", "message")
    rows = cluster.execute("select %s from %s order by id" % (", ".join(columns), LEDGER), dbname=dbname)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def lite_versions(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        if not conn.execute("select 1 from sqlite_master where name = 'alembic_version'").fetchall():
            return []
        return sorted(row[0] for row in conn.execute("select version_num from alembic_version"))


def lite_catalog(path: Path) -> dict[str, list[str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "select type || ' ' || name from sqlite_master"
            " where name not like 'sqlite_%' and name not like 'alembic_fleet_ledger%' and tbl_name <> 'alembic_version'"
        ).fetchall()
    return {"objects": sorted(row[0] for row in rows)}


def lite_ledger(path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as conn:
        if not conn.execute("select 1 from sqlite_master where name = ?", (LEDGER,)).fetchall():
            return []
        columns = ("action", "outcome", "from_revision", "to_revision", "entry_id", "undone_by", "message")
        rows = conn.execute("select %s from %s order by id" % (", ".join(columns), LEDGER)).fetchall()
    return [dict(zip(columns, row, strict=True)) for row in rows]


@dataclass
class DbState:
    versions: list[str]
    catalog: dict[str, list[str]]
    ledger: list[dict[str, Any]]
    hand_rows: int = 0


@dataclass
class Step:
    """One playbook run and the databases right after it."""

    run: Run
    states: dict[str, DbState] = field(default_factory=dict)

    def host_failed(self, host: str) -> bool:
        counters = self.run.recap().get(host)
        if counters is None:  # the play stopped before this host
            return True
        return counters.get("failed", 0) > 0 or counters.get("unreachable", 0) > 0

    def tail(self) -> str:
        return self.run.output[-4000:]

    def said_about(self, host: str) -> str:
        """The failure messages the run printed for one host (what the test reports when it fails)."""
        kept: list[str] = []
        keep = False
        for line in self.run.output.splitlines():
            if re.match(r"^(fatal|failed): \[%s\]" % re.escape(host), line):
                keep = True
            elif keep and line and not line.startswith(" "):
                keep = False
            if keep:
                kept.append(line)
        return "\n".join(kept)[-6000:] or self.tail()


# -- the fleet: one host per fixture --------------------------------------------------------------------------------
@dataclass
class Fleet:
    root: Path
    cluster: PgCluster
    prefix: str  # database names are <prefix>_<host>[_<suffix>]

    def dbname(self, host: str, suffix: str = "") -> str:
        return "%s_%s%s" % (self.prefix, host, "_" + suffix if suffix else "")

    def lite_path(self, suffix: str = "") -> Path:
        return self.root / "sqlite" / ("batchy%s.db" % ("_" + suffix if suffix else ""))

    @property
    def env(self) -> dict[str, str]:
        return {PASSWORD_VARIABLE: self.cluster.app_password}

    def url(self, host: str, suffix: str = "") -> str:
        if host == LITE:
            return "sqlite:///%s" % self.lite_path(suffix)
        return "postgresql://%s@127.0.0.1:%d/%s" % (self.cluster.app_user, self.cluster.port, self.dbname(host, suffix))

    def reset(self, hosts: tuple[str, ...], suffix: str = "") -> None:
        for host in hosts:
            if host == LITE:
                path = self.lite_path(suffix)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.unlink(missing_ok=True)
                sqlite3.connect(path).close()  # an empty database file: dev does not create databases
            else:
                self.cluster.reset_database(self.dbname(host, suffix))

    def inventory(
        self,
        label: str,
        hosts: tuple[str, ...],
        environment: str = "dev",
        suffix: str = "",
        inis: dict[str, Path] | None = None,
        **policy: Any,
    ) -> Path:
        """An inventory of one environment: each host holds its fixture's database (<prefix>_<host>[_suffix])."""
        inventory = self.root / label / "inventory"
        write_yaml(inventory / "hosts.yml", {"all": {"children": {environment: {"hosts": dict.fromkeys(hosts)}}}})
        write_yaml(
            inventory / "group_vars" / "all.yml",
            {
                "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                "fleet_project_root": str(REPO),
                "fleet_backup_root": str(self.root / label / "backups"),
                "fleet_report_dir": str(self.root / label / "reports"),
            },
        )
        group = yaml.safe_load((REPO / "inventory" / "group_vars" / ("%s.yml" % environment)).read_text())
        group.update(policy)
        write_yaml(inventory / "group_vars" / ("%s.yml" % environment), group)
        for host in hosts:
            entry: dict[str, Any] = {
                "name": FIXTURES[host].folder,
                "alembic_ini": str((inis or {}).get(host, FIXTURES[host].ini)),
                "url": self.url(host, suffix),
            }
            if FIXTURES[host].target != "head":  # an entry's target wins over -e fleet_target
                entry["target"] = FIXTURES[host].target
            if host != LITE:
                entry["password"] = "{{ lookup('ansible.builtin.env', '%s') }}" % PASSWORD_VARIABLE
            write_yaml(inventory / "host_vars" / ("%s.yml" % host), {"fleet_databases": [entry]})
        return inventory

    def play(self, book: str, inventory: Path, *args: str) -> Run:
        run = playbook(REPO / book, inventory, *args, env=self.env)
        assert_no_secret(run.output, [self.cluster])
        # Every run's output is kept beside the inventories, for whoever reads a failure.
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        (logs / ("%02d_%s_%s.log" % (len(list(logs.iterdir())), inventory.parent.name, Path(book).stem))).write_text(" ".join(run.argv) + "\n" + run.output)
        return run

    def execute(self, host: str, statement: str, suffix: str = "") -> None:
        """A statement on a fixture's database as the application user (a change made by hand)."""
        if host == LITE:
            with sqlite3.connect(self.lite_path(suffix)) as lite:
                lite.execute(statement)
            return
        pg = self.cluster.connect(self.dbname(host, suffix), superuser=False)
        try:
            with pg.cursor() as cur:
                cur.execute(statement)
        finally:
            pg.close()

    def try_execute(self, host: str, statement: str, suffix: str = "") -> bool:
        """execute(), or False when the database is not in the state the statement needs (an earlier step failed)."""
        try:
            self.execute(host, statement, suffix)
        except (sqlite3.Error, psycopg2.Error):
            return False
        return True

    def count_hand_rows(self, host: str, suffix: str = "") -> int:
        history = FIXTURES[host]
        statement = "select count(*) from %s where %s like 'written_by_hand%%'" % (history.table, history.column)
        try:
            if host == LITE:
                with sqlite3.connect(self.lite_path(suffix)) as conn:
                    return int(conn.execute(statement).fetchone()[0])
            return int(self.cluster.execute(statement, dbname=self.dbname(host, suffix))[0][0])
        except (sqlite3.OperationalError, psycopg2.errors.UndefinedTable):
            return 0

    def state(self, host: str, suffix: str = "") -> DbState:
        if host == LITE:
            path = self.lite_path(suffix)
            return DbState(lite_versions(path), lite_catalog(path), lite_ledger(path), self.count_hand_rows(host, suffix))
        name = self.dbname(host, suffix)
        return DbState(pg_versions(self.cluster, name), pg_catalog(self.cluster, name), pg_ledger(self.cluster, name), self.count_hand_rows(host, suffix))

    def step(self, book: str, inventory: Path, *args: str, hosts: tuple[str, ...] = HOSTS, suffix: str = "") -> Step:
        run = self.play(book, inventory, *args)
        return Step(run, {host: self.state(host, suffix) for host in hosts})

    def status_report(self, label: str) -> dict[str, dict[str, Any]]:
        """status.yml's JSON report: each host's database entry (its reasons, notes, cells)."""
        path = self.root / label / "reports" / "status.json"
        if not path.exists():
            return {}
        return {entry["host"]: entry for entry in json.loads(path.read_text())["databases"]}


@pytest.fixture(scope="module")
def fleet(pg_clusters: list[PgCluster], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    cluster = pg_clusters[0]
    made = Fleet(tmp_path_factory.mktemp("real_histories"), cluster, "rh")
    yield made
    for row in cluster.execute("select datname from pg_database where datname like 'rh\\_%'"):
        cluster.drop_database(row[0])


def raw_config(ini: Path, url: str) -> Config:
    """The project's own alembic.ini, pointed at a scratch database, its output kept out of the test's."""
    cfg = Config(str(ini), stdout=io.StringIO())
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


@dataclass
class RawAlembic:
    """Raw Alembic on scratch databases; libpq finds the password in a private PGPASSFILE, set only while Alembic
    runs (the playbooks must get theirs from the inventory, never from this)."""

    fleet: Fleet
    passfile: Path

    def config(self, host: str, suffix: str) -> Config:
        self.fleet.reset((host,), suffix)
        return raw_config(FIXTURES[host].ini, self.fleet.url(host, suffix).replace("postgresql://", "postgresql+psycopg2://"))

    @contextlib.contextmanager
    def password(self) -> Iterator[None]:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PGPASSFILE", str(self.passfile))
            yield

    def upgrade(self, cfg: Config, target: str = "heads") -> None:
        with self.password():
            command.upgrade(cfg, target)

    def downgrade(self, cfg: Config, target: str = "base") -> None:
        with self.password():
            command.downgrade(cfg, target)


@pytest.fixture(scope="module")
def raw(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> RawAlembic:
    passfile = tmp_path_factory.mktemp("pgpass") / "pgpass"
    passfile.write_text("127.0.0.1:%d:*:%s:%s\n" % (fleet.cluster.port, fleet.cluster.app_user, fleet.cluster.app_password))
    passfile.chmod(0o600)
    return RawAlembic(fleet, passfile)


@pytest.fixture(scope="module")
def raw_head_catalogs(fleet: Fleet, raw: RawAlembic) -> dict[str, dict[str, list[str]]]:
    """Each fixture built to its heads by raw Alembic: the schema the playbooks must build too."""
    catalogs: dict[str, dict[str, list[str]]] = {}
    for host in HOSTS:
        raw.upgrade(raw.config(host, "raw"))
        catalogs[host] = fleet.state(host, "raw").catalog
    return catalogs


def load_models(host: str) -> sa.MetaData:
    folder = FIXTURES[host].folder
    path = HISTORIES / folder / ("%s_models.py" % folder)
    spec = importlib.util.spec_from_file_location("rh_%s_models" % folder, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    metadata: sa.MetaData = module.metadata
    return metadata


# -- 1. the fixtures themselves, with raw Alembic -------------------------------------------------------------------
@pytest.mark.parametrize("host", HOSTS)
def test_raw_alembic_upgrades_downgrades_and_upgrades_again(host: str, fleet: Fleet, raw: RawAlembic) -> None:
    cfg = raw.config(host, "roundtrip")
    raw.upgrade(cfg)
    assert fleet.state(host, "roundtrip").versions == heads_of(host)
    built = fleet.state(host, "roundtrip").catalog
    raw.downgrade(cfg)
    assert fleet.state(host, "roundtrip").versions == []
    assert leftovers(fleet.state(host, "roundtrip").catalog) == []
    raw.upgrade(cfg)
    assert fleet.state(host, "roundtrip").catalog == built, "a second upgrade builds the same schema"


@pytest.mark.parametrize("host", [h for h in HOSTS if h != "bare_metadata"])
def test_raw_models_match_the_head_schema(host: str, fleet: Fleet, raw: RawAlembic) -> None:
    cfg = raw.config(host, "models")
    raw.upgrade(cfg)
    metadata = load_models(host)
    with raw.password():
        engine = sa.create_engine(cfg.get_main_option("sqlalchemy.url") or "", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                differences = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        finally:
            engine.dispose()
    assert differences == []


def test_raw_shapes_are_the_ones_the_fixtures_claim() -> None:
    forked = script_of(FIXTURES["forked"].ini)
    assert forked.get_revision("e37b6c2d8f76").is_merge_point and forked.get_revision("5b2e1d8c3a21").is_branch_point
    assert {label for rev in forked.walk_revisions() for label in rev.branch_labels} == {"billing", "search"}
    planes = script_of(FIXTURES["planes"].ini)
    assert sorted(planes.get_heads()) == ["con04_gadget_name_required", "exp04_gadget_name_index"]
    assert planes.get_revision("con02_copy_titles").dependencies == "exp02_widget_title"
    assert {Path(location).name for location in planes.version_locations} == {"start", "expand", "contract"}
    bare = script_of(FIXTURES["bare_metadata"].ini)
    assert [Path(location).name for location in bare.version_locations] == ["revisions"]


# -- 2. the main fleet, step by step --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def main_inventory(fleet: Fleet) -> Path:
    fleet.reset(HOSTS)
    return fleet.inventory("main", HOSTS)


@pytest.fixture(scope="module")
def checked(fleet: Fleet, main_inventory: Path) -> Step:
    return fleet.step("migrate.yml", main_inventory, "--check", "--diff")


@pytest.fixture(scope="module")
def migrated(fleet: Fleet, main_inventory: Path, checked: Step) -> Step:
    return fleet.step("migrate.yml", main_inventory)


@pytest.fixture(scope="module")
def rerun(fleet: Fleet, main_inventory: Path, migrated: Step) -> Step:
    return fleet.step("migrate.yml", main_inventory)


@pytest.fixture(scope="module")
def status_clean(fleet: Fleet, main_inventory: Path, rerun: Step) -> tuple[Step, dict[str, dict[str, Any]]]:
    step = fleet.step("status.yml", main_inventory)
    return step, fleet.status_report("main")


def hand_made_objects(history: History) -> list[str]:
    return [
        "CREATE TYPE rh_hand_mood AS ENUM ('calm', 'busy')",
        "ALTER TABLE %s ADD CONSTRAINT rh_hand_check CHECK (id > 0)" % history.table,
        "ALTER TABLE %s ALTER COLUMN %s SET DEFAULT 'by hand'" % (history.table, history.column),
        "CREATE VIEW rh_hand_view AS SELECT 1 AS one",
    ]


def remove_hand_made_objects(history: History) -> list[str]:
    return [
        "DROP VIEW IF EXISTS rh_hand_view",
        "ALTER TABLE %s ALTER COLUMN %s DROP DEFAULT" % (history.table, history.column),
        "ALTER TABLE %s DROP CONSTRAINT IF EXISTS rh_hand_check" % history.table,
        "DROP TYPE IF EXISTS rh_hand_mood",
    ]


@pytest.fixture(scope="module")
def status_hand_made(fleet: Fleet, main_inventory: Path, status_clean: tuple[Step, dict[str, dict[str, Any]]]) -> tuple[Step, dict[str, dict[str, Any]]]:
    """A hand-made enum type, CHECK constraint, column default and view on every PostgreSQL database."""
    made: list[str] = []
    try:
        for host in PG_FIXTURES:
            made.append(host)
            for statement in hand_made_objects(FIXTURES[host]):
                fleet.try_execute(host, statement)
        step = fleet.step("status.yml", main_inventory)
        return step, fleet.status_report("main")
    finally:
        for host in made:
            for statement in remove_hand_made_objects(FIXTURES[host]):
                fleet.try_execute(host, statement)


@pytest.fixture(scope="module")
def rolled_back(fleet: Fleet, main_inventory: Path, status_hand_made: tuple[Step, dict[str, dict[str, Any]]]) -> Step:
    """rollback.yml by downgrade; forked holds a row its conditional downgrade helper refuses to lose."""
    fleet.try_execute("forked", FORKED_BLOCKING_ROW)
    return fleet.step("rollback.yml", main_inventory)


@pytest.fixture(scope="module")
def forked_rolled_back(fleet: Fleet, main_inventory: Path, rolled_back: Step) -> Step:
    """The row changed so that the helper's condition no longer holds: the same rollback goes through."""
    fleet.try_execute("forked", "UPDATE accounts SET status = 'closed' WHERE status = 'suspended'")
    return fleet.step("rollback.yml", main_inventory, "-l", "forked", hosts=("forked",))


@pytest.fixture(scope="module")
def remigrated(fleet: Fleet, main_inventory: Path, rolled_back: Step, forked_rolled_back: Step) -> Step:
    step = fleet.step("migrate.yml", main_inventory)
    for host in HOSTS:
        if not step.host_failed(host):
            fleet.try_execute(host, FIXTURES[host].insert_row)  # written after the run's backup: a restore loses it
    return step


@pytest.fixture(scope="module")
def restored(fleet: Fleet, main_inventory: Path, remigrated: Step) -> Step:
    return fleet.step("rollback.yml", main_inventory, "-e", "fleet_rollback_strategy=restore")


def diff_of(output: str, database: str) -> str:
    """The --diff a run printed for one database: from its `--- before: ...<database> (before)` line to the next
    diff or task."""
    found: list[str] = []
    inside = False
    for line in output.splitlines():
        if line.startswith("--- before: "):
            inside = line.endswith("/%s (before)" % database)
        elif line.startswith(("TASK [", "changed: [", "ok: [", "fatal: [")):
            inside = False
        if inside:
            found.append(line)
    return "\n".join(found)


@pytest.mark.parametrize("host", HOSTS)
def test_check_diff_from_empty_shows_the_sql_and_names_what_cannot_render(host: str, fleet: Fleet, checked: Step) -> None:
    history = FIXTURES[host]
    assert not checked.host_failed(host), checked.said_about(host)
    diff = diff_of(checked.run.output, fleet.lite_path().name if host == LITE else fleet.dbname(host))
    assert diff, "%s: no diff in the --check --diff output:\n%s" % (host, checked.tail())
    missing = [sql for sql in history.rendered_sql if sql not in diff]
    assert missing == [], "%s: the diff lacks the SQL of the revisions that render offline: %s\n%s" % (host, missing, diff[-3000:])
    for revision in history.unrenderable:
        named = [line for line in diff.splitlines() if revision in line and re.search(r"render|offline", line, re.I)]
        assert named, "%s: the diff does not name revision %s as impossible to render offline:\n%s" % (host, revision, diff[-3000:])
    state = checked.states[host]
    assert state.versions == [] and all(items == [] for items in state.catalog.values()), "--check changed %s: %s" % (host, state)


def review_findings(output: str) -> set[tuple[str, str]]:
    """(revision, rule) of every review finding a run printed, e.g. '9d4e3f0a5c43 (9d4e..._x.py): warning rule-name'."""
    flat = " ".join(output.split())
    return set(re.findall(r"(\w+) \(\S+\.py\): (?:error|warning|info) ([a-z][\w-]+)", flat))


def test_the_review_of_forked_judges_what_the_revisions_really_do(checked: Step) -> None:
    """A merge with pass bodies and a conditional raising helper are not irreversible; a read-only SELECT of
    pg_index is not a data migration; postgresql_concurrently=<variable> is not a non-concurrent index; and every
    finding says how to fix it (issue 14, points 2 and 9)."""
    findings = review_findings(checked.run.output)
    assert ("9d4e3f0a5c43", "mixed-data-and-schema") in findings, "the review did not run on forked: %s" % sorted(findings)
    false_positives = {
        ("e37b6c2d8f76", "irreversible-downgrade"),
        ("d26a5b1c7e65", "irreversible-downgrade"),
        ("b15f4a0b6d54", "irreversible-downgrade"),
        ("b15f4a0b6d54", "mixed-data-and-schema"),
        ("b15f4a0b6d54", "require-concurrent-index-creation"),
    }
    assert findings & false_positives == set()
    assert not re.search(r"fix:\s*(?:'|\"|$)", " ".join(checked.run.output.split())), "a finding without a fix"


@pytest.mark.parametrize("host", HOSTS)
def test_migrate_from_empty_builds_what_plain_alembic_builds_and_verifies_it(
    host: str, migrated: Step, raw_head_catalogs: dict[str, dict[str, list[str]]]
) -> None:
    assert not migrated.host_failed(host), migrated.said_about(host)
    state = migrated.states[host]
    assert state.versions == heads_of(host)
    assert state.catalog == raw_head_catalogs[host]
    assert [(row["action"], row["outcome"]) for row in state.ledger] == [("migrate", "succeeded")]


@pytest.mark.parametrize("host", HOSTS)
def test_a_second_migrate_changes_nothing(host: str, migrated: Step, rerun: Step) -> None:
    assert not rerun.host_failed(host), rerun.said_about(host)
    assert rerun.run.recap()[host].get("changed", 0) == 0, rerun.tail()
    assert rerun.states[host] == migrated.states[host]


@pytest.mark.parametrize("host", HOSTS)
def test_status_at_head_reports_no_drift(host: str, status_clean: tuple[Step, dict[str, dict[str, Any]]]) -> None:
    # status.yml's report task fails on every host when any database needs attention: judge the report's entry.
    step, report = status_clean
    assert host in report, "%s is not in the status report:\n%s" % (host, step.tail())
    assert report[host]["reasons"] == [], report[host]["reasons"]


@pytest.mark.parametrize("host", PG_FIXTURES)
@pytest.mark.parametrize("kind", ["enum type", "check constraint", "column default", "view"])
def test_status_names_each_hand_made_object(host: str, kind: str, status_hand_made: tuple[Step, dict[str, dict[str, Any]]]) -> None:
    step, report = status_hand_made
    history = FIXTURES[host]
    assert step.run.rc != 0, "status.yml passed with hand-made objects in every database"
    assert host in report, "%s is not in the status report:\n%s" % (host, step.tail())
    reasons = list(report[host]["reasons"])
    needle = {
        "enum type": "rh_hand_mood",
        "check constraint": "rh_hand_check",
        "column default": "%s.%s" % (history.table, history.column),
        "view": "rh_hand_view",
    }[kind]
    named = [reason for reason in reasons if needle in reason and (kind != "column default" or "default" in reason.lower())]
    assert named, "%s: the hand-made %s (%s) is not named in the status reasons: %s" % (host, kind, needle, reasons)


@pytest.mark.parametrize("host", [h for h in HOSTS if h != "forked"])
def test_rollback_by_downgrade_returns_to_empty_with_nothing_left_behind(host: str, fleet: Fleet, rolled_back: Step) -> None:
    assert not rolled_back.host_failed(host), rolled_back.said_about(host)
    state = rolled_back.states[host]
    assert state.versions == []
    assert leftovers(state.catalog) == []
    ledger = state.ledger
    assert [(row["action"], row["outcome"]) for row in ledger] == [("migrate", "rolled_back"), ("rollback", "succeeded")]
    assert ledger[0]["undone_by"] == ledger[1]["entry_id"]


def test_a_refused_conditional_downgrade_fails_cleanly_naming_its_revision_file(fleet: Fleet, migrated: Step, rolled_back: Step) -> None:
    """forked's d26a5b1c7e65 refuses while an account is 'suspended': the host fails, the file is named, nothing is lost."""
    assert rolled_back.host_failed("forked"), rolled_back.said_about("forked")
    said = " ".join(rolled_back.said_about("forked").split())
    assert re.search(r"%s:? line \d+" % re.escape(FORKED_BLOCKING_FILE), said), "the failure does not name the revision file and line: %s" % said[-2000:]
    assert "which the old account_status type cannot hold" in rolled_back.run.output
    assert "contextlib.py" not in rolled_back.run.output
    state = rolled_back.states["forked"]
    assert state.versions == heads_of("forked"), "a failed downgrade moved the database"
    assert state.catalog == migrated.states["forked"].catalog, "a failed downgrade changed the schema"
    rows = fleet.cluster.execute("select name, status::text from accounts where name = 'held'", dbname=fleet.dbname("forked"))
    assert rows in ([("held", "suspended")], [("held", "closed")]), "the row the helper protects is gone"
    ledger = state.ledger
    assert [(row["action"], row["outcome"]) for row in ledger] == [("migrate", "succeeded"), ("rollback", "failed")], ledger
    assert ledger[-1]["message"] and "d26a5b1c7e65" in ledger[-1]["message"]


def test_forked_rolls_back_by_downgrade_once_the_condition_is_gone(forked_rolled_back: Step) -> None:
    """A merge (pass/pass) and a conditional raising helper do not make a history irreversible."""
    assert forked_rolled_back.run.rc == 0, forked_rolled_back.tail()
    state = forked_rolled_back.states["forked"]
    assert state.versions == []
    assert leftovers(state.catalog) == []  # the enum type went with its table
    outcomes = [(row["action"], row["outcome"]) for row in state.ledger]
    assert outcomes == [("migrate", "rolled_back"), ("rollback", "failed"), ("rollback", "succeeded")], outcomes


@pytest.mark.parametrize("host", HOSTS)
def test_rollback_by_restore_returns_to_the_backup(host: str, fleet: Fleet, remigrated: Step, restored: Step) -> None:
    assert not remigrated.host_failed(host), remigrated.said_about(host)
    assert remigrated.states[host].versions == heads_of(host)
    assert not restored.host_failed(host), restored.said_about(host)
    state = restored.states[host]
    assert state.versions == []
    assert state.hand_rows == 0, "the row written after the backup survived the restore"
    outcomes = [(row["action"], row["outcome"]) for row in state.ledger]
    assert outcomes[-2:] == [("migrate", "rolled_back"), ("rollback", "succeeded")], outcomes
    assert len(outcomes) >= 4, "the ledger rows written after the backup were not carried over: %s" % outcomes
    if host != LITE:
        side = fleet.cluster.execute("select datname from pg_database where datname like %s", ("%s\\_%%" % fleet.dbname(host),))
        assert [row[0] for row in side if re.search(r"_(scratch|replaced|restore)_", row[0])] == []


# -- 3. stamp.yml on databases built outside Alembic ----------------------------------------------------------------
@pytest.fixture(scope="module")
def stamped(fleet: Fleet, raw: RawAlembic) -> Step:
    """Each fixture's schema built by other means (raw Alembic, then its version table dropped), then stamp.yml."""
    for host in HOSTS:
        raw.upgrade(raw.config(host, "stamp"))
        fleet.execute(host, "DROP TABLE alembic_version", suffix="stamp")
    inventory = fleet.inventory("stamp", HOSTS, suffix="stamp")
    # "heads": every head of each project (one for most, both planes for planes), as Alembic's own stamp takes it.
    run = fleet.play("stamp.yml", inventory, "-e", "fleet_stamp_target=heads")
    return Step(run, {host: fleet.state(host, "stamp") for host in HOSTS})


@pytest.mark.parametrize("host", HOSTS)
def test_stamp_records_the_heads_of_a_database_built_outside_alembic(host: str, stamped: Step) -> None:
    assert not stamped.host_failed(host), stamped.said_about(host)
    state = stamped.states[host]
    assert state.versions == heads_of(host), stamped.said_about(host)
    assert [(row["action"], row["outcome"]) for row in state.ledger] == [("stamp", "succeeded")]


# -- 4. prod policy on a fresh install ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prod_fresh(fleet: Fleet) -> Step:
    """Prod's policy (review blocks, backups before and after), every host judged (no stop at the first failure)."""
    fleet.reset(PG_FIXTURES, "prod")
    inventory = fleet.inventory("prod", PG_FIXTURES, environment="prod", suffix="prod", fleet_serial=0, fleet_max_fail_percentage=100, fleet_preflight_wait=0)
    return fleet.step("migrate.yml", inventory, hosts=PG_FIXTURES, suffix="prod")


@pytest.mark.parametrize("host", PG_FIXTURES)
def test_prod_does_not_block_a_fresh_install(host: str, prod_fresh: Step) -> None:
    assert not prod_fresh.host_failed(host), prod_fresh.said_about(host)
    assert prod_fresh.states[host].versions == heads_of(host)
    assert [(row["action"], row["outcome"]) for row in prod_fresh.states[host].ledger] == [("migrate", "succeeded")]


# -- 5. branch targets on forked ------------------------------------------------------------------------------------
def test_branch_targets_are_verified_recovered_and_rolled_back_exactly(fleet: Fleet) -> None:
    """From the branch point: +1 names both candidates; billing's head, then search's head beside it (two heads in
    the database), verified as such; rollback.yml then removes exactly what the second run added."""
    fleet.reset(("forked",), "branch")
    inventory = fleet.inventory("branch", ("forked",), suffix="branch")
    name = fleet.dbname("forked", "branch")

    def migrate_to(target: str) -> Run:
        return fleet.play("migrate.yml", inventory, "-e", "fleet_target=%s" % target)

    to_fork = migrate_to("5b2e1d8c3a21")
    assert to_fork.rc == 0, to_fork.output[-3000:]
    assert pg_versions(fleet.cluster, name) == ["5b2e1d8c3a21"]

    ambiguous = migrate_to("+1")
    assert ambiguous.rc != 0
    assert "7c3d2e9f4b32" in ambiguous.output and "b15f4a0b6d54" in ambiguous.output, ambiguous.output[-3000:]
    assert pg_versions(fleet.cluster, name) == ["5b2e1d8c3a21"]

    billing = migrate_to("9d4e3f0a5c43")
    assert billing.rc == 0, billing.output[-3000:]
    assert pg_versions(fleet.cluster, name) == ["9d4e3f0a5c43"]

    search = migrate_to("d26a5b1c7e65")
    assert search.rc == 0, search.output[-3000:]
    assert pg_versions(fleet.cluster, name) == ["9d4e3f0a5c43", "d26a5b1c7e65"]
    assert "stopped part-way" not in search.output and "no backup was taken" not in search.output
    outcomes = [(row["action"], row["outcome"], row["to_revision"]) for row in pg_ledger(fleet.cluster, name)]
    assert [o[:2] for o in outcomes] == [("migrate", "succeeded")] * 3, outcomes

    undo = fleet.play("rollback.yml", inventory)
    assert undo.rc == 0, undo.output[-3000:]
    assert pg_versions(fleet.cluster, name) == ["9d4e3f0a5c43"], "the rollback must remove exactly the search branch"
    indexes = {row[0] for row in fleet.cluster.execute("select indexname from pg_indexes where schemaname = 'public'", dbname=name)}
    assert "ix_orders_note" not in indexes
    enum = fleet.cluster.execute(
        "select string_agg(enumlabel, ',' order by enumsortorder) from pg_enum e join pg_type t on t.oid = e.enumtypid where t.typname = 'account_status'",
        dbname=name,
    )
    assert enum == [("active,closed",)]
    ledger = pg_ledger(fleet.cluster, name)
    assert [(row["action"], row["outcome"]) for row in ledger][-2:] == [("migrate", "rolled_back"), ("rollback", "succeeded")], ledger


# -- 6. a failure inside batch_alter_table is blamed on its revision file -------------------------------------------
def test_a_failure_inside_batch_alter_table_names_the_revision_file(fleet: Fleet) -> None:
    """The revision fails as its `with op.batch_alter_table(...)` block ends (PostgreSQL and SQLite): the failure
    names that revision file, not contextlib.py; the database is back where it was and the ledger says so."""
    project = fleet.root / "batchy_failing"
    shutil.copytree(HISTORIES / "batchy", project, ignore=shutil.ignore_patterns("__pycache__", "extra"))
    shutil.copy(HISTORIES / "batchy" / "extra" / FAILING_BATCH_FILE, project / "alembic" / "versions" / FAILING_BATCH_FILE)
    hosts = ("batchy", LITE)
    fleet.reset(hosts, "failing")
    inventory = fleet.inventory("failing", hosts, suffix="failing", inis=dict.fromkeys(hosts, project / "alembic.ini"))

    step = fleet.step("migrate.yml", inventory, hosts=hosts, suffix="failing")
    for host in hosts:
        assert step.host_failed(host), step.said_about(host)
        state = step.states[host]
        assert state.versions == [], "%s: the failed run was not undone: %s" % (host, state.versions)
        assert leftovers(state.catalog) == [], "%s: the failed run left objects behind" % host
        runs = [row for row in state.ledger if row["action"] == "migrate"]
        assert runs and runs[-1]["outcome"] != "succeeded", "%s: the ledger says the failed run succeeded: %s" % (host, state.ledger)
        said = " ".join(step.said_about(host).split())
        assert re.search(r"%s:? line \d+" % re.escape(FAILING_BATCH_FILE), said), "%s: the failure does not name the revision file and line: %s" % (
            host,
            said[-2000:],
        )
    assert "contextlib.py" not in step.run.output, step.tail()

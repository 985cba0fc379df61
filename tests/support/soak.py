"""The kill-point soak (issue 15's acceptance): SIGKILL a prod migrate.yml run at one point, rerun it, check nothing broke.

One database (`soak`) on one cluster, under the repository's prod policy (a verified backup before the upgrade, a
post-upgrade backup, lock timeouts; a bench run may change it), with an Alembic project of our own written to the
work directory: revision 1 (events, accounts) is already applied; the run upgrades through 2 (add events.note),
3 (create account_flags) and 4 (backfill it with op.execute; sleeps while a marker file exists, so a kill can land
inside the upgrade): the shape of issue 15's point 4, a column added early and long work after it.
Its env.py lingers while it reads the database at head as long as another marker exists, so a kill can land
between the upgrade's commit and the end of its verification. An application writer inserts into events all the
time (each row in its own committed transaction, with events.note as soon as the column exists).

One run of the soak: reset the database (from a template at revision 1), start the writer, start migrate.yml, wait
until the kill point's phase is visible (the task the run prints, its processes, the database), wait a delay, then
SIGKILL the module's python (`<phase>/module`), its pg_dump (`/pg_dump`), or every process of the run, the control
node too (`/run`); or end the database sessions doing the phase's work with pg_terminate_backend (`/session`: what
README gives as the way to abort a run, and what a server restart or a cut connection looks like). Then migrate.yml
again until it succeeds (the first rerun may fail with one clear line; the second must succeed), stop the writer,
and check:

* committed writes lost: a row the writer saw committed is gone, or its note is not what it wrote;
* inconsistent database: the schema is not the one of the revision in alembic_version (after the kill and after
  the rerun), the rerun did not end at head, or the ledger disagrees (a `running` row, or a last migrate row that
  did not succeed at the database's revision);
* stale locks: an advisory lock, an alembic-fleet session or a side/scratch database of a dead run still there;
* password files: any file holding the password under the work directory (TMPDIR, Ansible's temp directories,
  backups, inventory, project) or ~/.ansible/tmp;
* orphan partial dumps: a `*.partial` file left in the backup root;

and, beside the five counts: a rerun that did not succeed, a password in any run's output, a post-upgrade backup
missing after the rerun, and a misleading report (the killed run's failure message says the database is at another
revision than the one it is at). `tests/integration/test_soak.py` runs a fixed set of kill points; `bench/soak.py` runs
random kill points and delays from a seed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import yaml
from psycopg2 import sql

from support.ansible_run import REPO, Run, playbook, write_yaml
from support.faults import Background, cmdline, descendants, files_holding, module_process, start_playbook, wait_for
from support.pgcluster import PgCluster

DBNAME = "soak"
TEMPLATE = "soak_template"
HOST = "db1"
LEDGER = "alembic_fleet_ledger"
PASSWORD_VARIABLE = "FLEET_SOAK_PASSWORD"
REVISIONS = ("50a0c0000001", "50a0c0000002", "50a0c0000003", "50a0c0000004")
START, HEAD = REVISIONS[0], REVISIONS[-1]
ACCOUNTS = 500
UPGRADE_SLEEP = 4.0  # revision 4's pg_sleep while its marker exists
LINGER_SECONDS = 1.0  # each read of the database at head while the linger marker exists
WRITER_PAUSE = 0.02
PHASE_TIMEOUT = 120.0
RUN_TIMEOUT = 300.0
QUIET_TIMEOUT = 20.0
UPGRADE_TASK = "Back up, upgrade and verify %s" % DBNAME  # the host's one upgrade call (one database here)
POST_BACKUP_TASK = "Back up after the verified upgrade of %s" % DBNAME
HANDED_OVER_TASKS = ("The backup taken before the upgrade of %s" % DBNAME, POST_BACKUP_TASK)
PREFLIGHT_TASK = "Read the revision, pending revisions, blockers and review of every database"


# -- the Alembic project ---------------------------------------------------------------------
INI = """\
[alembic]
script_location = %(here)s
prepend_sys_path = %(here)s
path_separator = os
sqlalchemy.url = postgresql://nobody@127.0.0.1:1/not-this-one
"""

MODELS = """\
import sqlalchemy as sa

metadata = sa.MetaData()

sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("note", sa.Text),
)
sa.Table("accounts", metadata, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False), sa.Column("name", sa.Text, nullable=False))
sa.Table(
    "account_flags",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.Integer, nullable=False),
    sa.Column("flag", sa.Text, nullable=False),
)
"""

ENV_PY = """\
import os
import time

from alembic import context
from alembic.runtime.migration import MigrationContext
from sqlalchemy import engine_from_config, pool

import soak_models

config = context.config
target_metadata = soak_models.metadata

# While this marker exists, every read of the database at head (the upgrade's read-back after its commit, under the
# run lock, and the verification's reads) lingers, so that the soak can kill a run between the commit and the end
# of the verification. A migration starts below head and never lingers.
LINGER_MARKER = {marker!r}
LINGER_SECONDS = {seconds!r}
HEAD = {head!r}


def linger_at_head(connection):
    if os.path.exists(LINGER_MARKER) and connection.in_transaction():
        if MigrationContext.configure(connection).get_current_heads() == (HEAD,):
            time.sleep(LINGER_SECONDS)


def run_online(connection):
    linger_at_head(connection)
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connection = config.attributes.get("connection")
    if connection is not None:
        run_online(connection)
        return
    engine = engine_from_config(config.get_section(config.config_ini_section, {{}}), prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        run_online(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""

REVISION = '''\
"""{message}

Revision ID: {rev}
Revises: {down}
"""
import os

import sqlalchemy as sa
from alembic import op

revision = {rev!r}
down_revision = {down!r}
branch_labels = None
depends_on = None
SLOW_MARKER = {marker!r}


def upgrade():
{upgrade}


def downgrade():
{downgrade}
'''

CHANGES: dict[str, tuple[str, str, str]] = {
    REVISIONS[0]: (
        "events and accounts",
        """
        op.create_table(
            "events",
            sa.Column("id", sa.BigInteger, primary_key=True),
            sa.Column("payload", sa.Text, nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        )
        op.create_table("accounts", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False), sa.Column("name", sa.Text, nullable=False))
        """,
        'op.drop_table("accounts")\nop.drop_table("events")',
    ),
    REVISIONS[1]: ("events.note", 'op.add_column("events", sa.Column("note", sa.Text()))', 'op.drop_column("events", "note")'),
    REVISIONS[2]: (
        "account_flags",
        """
        op.create_table(
            "account_flags",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("account_id", sa.Integer, nullable=False),
            sa.Column("flag", sa.Text, nullable=False),
        )
        """,
        'op.drop_table("account_flags")',
    ),
    REVISIONS[3]: (
        "backfill account_flags (slow while the soak's marker exists)",
        """
        op.execute("INSERT INTO account_flags (account_id, flag) SELECT id, 'migrated' FROM accounts")
        if os.path.exists(SLOW_MARKER):
            op.execute("SELECT pg_sleep(%s)")
        """
        % UPGRADE_SLEEP,
        "op.execute(\"DELETE FROM account_flags WHERE flag = 'migrated'\")",
    ),
}


@dataclass(frozen=True)
class Shape:
    """What the soak can see of the schema: tables, the columns of events, and the rows of account_flags."""

    tables: frozenset[str]
    event_columns: frozenset[str]
    flags: int | None  # None: no account_flags table

    def describe(self) -> str:
        return "tables %s, events(%s), account_flags rows %s" % (sorted(self.tables), ", ".join(sorted(self.event_columns)), self.flags)


_BASE_TABLES = frozenset({"events", "accounts", "alembic_version"})
_BASE_COLUMNS = frozenset({"id", "payload", "created_at"})
EXPECTED: dict[str, Shape] = {
    REVISIONS[0]: Shape(_BASE_TABLES, _BASE_COLUMNS, None),
    REVISIONS[1]: Shape(_BASE_TABLES, _BASE_COLUMNS | {"note"}, None),
    REVISIONS[2]: Shape(_BASE_TABLES | {"account_flags"}, _BASE_COLUMNS | {"note"}, 0),
    REVISIONS[3]: Shape(_BASE_TABLES | {"account_flags"}, _BASE_COLUMNS | {"note"}, ACCOUNTS),
}


@dataclass(frozen=True)
class Project:
    ini: Path
    slow_marker: Path
    linger_marker: Path

    def slow(self) -> None:
        """The next run's upgrade sleeps, and its reads at head linger."""
        for marker in (self.slow_marker, self.linger_marker):
            marker.write_text("slow\n")

    def fast(self) -> None:
        for marker in (self.slow_marker, self.linger_marker):
            marker.unlink(missing_ok=True)


def _body(source: str) -> str:
    return textwrap.indent(textwrap.dedent(source).strip(), "    ")


def write_project(root: Path) -> Project:
    """The soak's Alembic project under root/project (models and revisions agree at head)."""
    folder = root / "project"
    (folder / "versions").mkdir(parents=True, exist_ok=True)
    project = Project(ini=folder / "alembic.ini", slow_marker=root / "slow-upgrade", linger_marker=root / "linger-at-head")
    project.ini.write_text(INI)
    (folder / "soak_models.py").write_text(MODELS)
    (folder / "env.py").write_text(ENV_PY.format(marker=str(project.linger_marker), seconds=LINGER_SECONDS, head=HEAD))
    down: str | None = None
    for number, rev in enumerate(REVISIONS, start=1):
        message, upgrade, downgrade = CHANGES[rev]
        text = REVISION.format(message=message, rev=rev, down=down, marker=str(project.slow_marker), upgrade=_body(upgrade), downgrade=_body(downgrade))
        (folder / "versions" / ("%04d_%s.py" % (number, rev))).write_text(text)
        down = rev
    return project


# -- the database: a template at revision 1, copied for each run --------------------------------------
def _database_url(cluster: PgCluster, dbname: str) -> str:
    return "postgresql://%s@%s:%d/%s" % (cluster.app_user, cluster.host, cluster.port, dbname)


def build_template(cluster: PgCluster, project: Project, rows: int) -> None:
    """soak_template at revision 1 through Alembic itself, with `rows` events (the dumps' size) and the accounts."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    cluster.drop_database(TEMPLATE)
    cluster.create_database(TEMPLATE, owner=cluster.app_user)
    engine = create_engine(cluster.url(TEMPLATE), connect_args={"password": cluster.app_password}, poolclass=NullPool)
    saved_path = list(sys.path)
    try:
        with engine.begin() as migration:
            cfg = Config(str(project.ini))
            cfg.attributes["connection"] = migration
            command.upgrade(cfg, START)
    finally:
        engine.dispose()
        sys.path[:] = saved_path  # prepend_sys_path
        sys.modules.pop("soak_models", None)
    conn = cluster.connect(TEMPLATE, superuser=False)
    try:
        with conn.cursor() as cur:
            # md5 text of random numbers hardly compresses: pg_dump has real work, so a kill can land inside it.
            cur.execute(
                "INSERT INTO events (payload) SELECT md5(random()::text) || md5(random()::text) || md5(random()::text) FROM generate_series(1, %s)",
                (rows,),
            )
            cur.execute("INSERT INTO accounts (id, name) SELECT i, 'account ' || i FROM generate_series(1, %s) AS i", (ACCOUNTS,))
            cur.execute("VACUUM ANALYZE")
    finally:
        conn.close()


def reset_database(cluster: PgCluster) -> None:
    cluster.drop_database(DBNAME)
    cluster.execute(
        sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(sql.Identifier(DBNAME), sql.Identifier(TEMPLATE), sql.Identifier(cluster.app_user))
    )


# -- the application ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Write:
    id: int
    token: str
    noted: bool  # the row was written with events.note = token


class Writer(threading.Thread):
    """The application: one committed INSERT into events after another, with events.note once the column exists.

    Errors (a lock wait cut short, a dropped connection) are counted and the writer goes on, reconnecting; only rows
    whose INSERT returned in autocommit mode, i.e. committed, are recorded.
    """

    def __init__(self, cluster: PgCluster, dbname: str = DBNAME) -> None:
        super().__init__(daemon=True, name="soak-writer")
        self.cluster = cluster
        self.dbname = dbname
        self.committed: list[Write] = []
        self.errors: list[str] = []
        self._stop_event = threading.Event()
        self._count = 0

    def run(self) -> None:
        conn: psycopg2.extensions.connection | None = None
        while not self._stop_event.is_set():
            try:
                if conn is None:
                    conn = self._connect()
                self.committed.append(self._insert(conn))
            except psycopg2.Error as exc:
                self.errors.append(" ".join(str(exc).split())[:200])
                _close(conn)
                conn = None
                self._stop_event.wait(0.2)
            self._stop_event.wait(WRITER_PAUSE)
        _close(conn)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=60)

    def _connect(self) -> psycopg2.extensions.connection:
        conn = self.cluster.connect(self.dbname, superuser=False)
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = '60s'")  # never wait forever: the soak stops the writer before a reset
        return conn

    def _insert(self, conn: psycopg2.extensions.connection) -> Write:
        self._count += 1
        token = "w%06d" % self._count
        with conn.cursor() as cur:
            try:
                cur.execute("INSERT INTO events (payload, note) VALUES (%s, %s) RETURNING id", (token, token))
                noted = True
            except psycopg2.errors.UndefinedColumn:
                cur.execute("INSERT INTO events (payload) VALUES (%s) RETURNING id", (token,))
                noted = False
            row = cur.fetchone()
        assert row is not None
        return Write(id=int(row[0]), token=token, noted=noted)


def _close(conn: psycopg2.extensions.connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(psycopg2.Error):
            conn.close()


# -- watching a run --------------------------------------------------------------------------------
class Watch:
    """What a running migrate.yml is doing: the task it printed last, its processes, the database."""

    def __init__(self, job: Background, cluster: PgCluster) -> None:
        self.job = job
        self.conn = cluster.connect(DBNAME)
        self._text = ""

    def close(self) -> None:
        _close(self.conn)

    def output(self) -> str:
        """The run's stdout so far (pread: the file offset the run writes at is shared, and must not move)."""
        if not self.job.stdout.closed:
            fd = self.job.stdout.fileno()
            size = os.fstat(fd).st_size
            if size > len(self._text.encode()):
                self._text = os.pread(fd, size, 0).decode(errors="replace")
        return self._text

    def task(self) -> str:
        found = re.findall(r"^TASK \[(?:fleet : )?(.*?)\] \*", self.output(), re.M)
        return str(found[-1]) if found else ""

    def in_task(self, *names: str) -> bool:
        return self.task().startswith(names)

    def module_pid(self) -> int | None:
        try:
            return module_process(self.job)
        except AssertionError:
            return None

    def pids(self, program: str) -> list[int]:
        return [pid for pid in descendants(self.job.pid) if Path((cmdline(pid) or [""])[0]).name == program]

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())

    def sleeping(self) -> bool:
        query = "select 1 from pg_stat_activity where datname = %s and state = 'active' and query ilike '%%pg_sleep%%' and pid <> pg_backend_pid()"
        return bool(self.rows(query, (DBNAME,)))

    def at_head(self) -> bool:
        if not self.rows("select to_regclass('public.alembic_version')")[0][0]:
            return False
        return [row[0] for row in self.rows("select version_num from alembic_version")] == [HEAD]

    def terminate(self, names: Sequence[str]) -> list[int]:
        """End the sessions of these application names that are at work (active, or inside a transaction)."""
        query = (
            "with doomed as materialized (select pid from pg_stat_activity where datname = %s and application_name = any(%s) "
            "and state <> 'idle' and pid <> pg_backend_pid()) select pid from doomed where pg_terminate_backend(pid)"
        )
        return [int(row[0]) for row in self.rows(query, (DBNAME, list(names)))]

    def lock_held(self) -> bool:
        return bool(self.rows("select 1 from pg_stat_activity where datname = %s and application_name like 'alembic-fleet:%%'", (DBNAME,)))

    def running_rows(self) -> int:
        if not self.rows("select to_regclass(%s)", ("public.%s" % LEDGER,))[0][0]:
            return 0
        return int(self.rows("select count(*) from %s where outcome = 'running'" % LEDGER)[0][0])


# -- kill points ---------------------------------------------------------------------------------
def _preflight(w: Watch) -> bool:
    return w.in_task(PREFLIGHT_TASK) and w.module_pid() is not None


def _backup(w: Watch) -> bool:
    return w.in_task(UPGRADE_TASK) and bool(w.pids("pg_dump"))


def _running_row(w: Watch) -> bool:
    return w.in_task(UPGRADE_TASK) and w.running_rows() > 0


def _upgrade(w: Watch) -> bool:
    return w.in_task(UPGRADE_TASK) and w.sleeping()


def _committed(w: Watch) -> bool:
    """The upgrade committed (its ledger row with it) and the module reads it back under the run lock."""
    return w.in_task(UPGRADE_TASK) and w.module_pid() is not None and w.at_head() and w.lock_held()


def _verifying(w: Watch) -> bool:
    """Committed, the run lock released, the module still running: the verification."""
    return w.in_task(UPGRADE_TASK) and w.module_pid() is not None and w.at_head() and not w.lock_held()


def _handed_over(w: Watch) -> bool:
    """The upgrade module has returned its result to the control node, which moves on."""
    return w.in_task(*HANDED_OVER_TASKS)


def _post_backup(w: Watch) -> bool:
    return w.in_task(POST_BACKUP_TASK) and bool(w.pids("pg_dump"))


MODULE, PG_DUMP, RUN, SESSION = "module", "pg_dump", "run", "session"
TARGETS = {
    MODULE: "SIGKILL of the module's python (the control node goes on)",
    PG_DUMP: "SIGKILL of pg_dump",
    RUN: "SIGKILL of every process of the run (the control node dies too)",
    SESSION: "pg_terminate_backend of the sessions doing the phase's work, as README's way to abort a run (the module goes on)",
}
MIGRATION_SESSIONS = ("alembic-fleet",)  # fleet_db's application_name: reads, the migration, the verification
BACKUP_SESSIONS = ("alembic-fleet-backup",)  # pg_dump's


@dataclass(frozen=True)
class KillPoint:
    name: str
    phase: str
    target: str  # MODULE, PG_DUMP, RUN or SESSION
    reached: Callable[[Watch], bool]
    max_delay: float  # the bench draws the delay after the phase is seen from [0, max_delay]
    about: str
    sessions: tuple[str, ...] = ()  # SESSION: the application names of the sessions to terminate


@dataclass(frozen=True)
class _Phase:
    stem: str
    phase: str
    reached: Callable[[Watch], bool]
    max_delay: float
    about: str
    targets: tuple[str, ...]
    sessions: tuple[str, ...] = ()


PHASES = (
    _Phase("preflight", "preflight", _preflight, 0.8, "the host's alembic_status call (preflight and review) runs", (MODULE, RUN)),
    _Phase("backup", "backup", _backup, 0.4, "pg_dump of the backup before the upgrade runs", (PG_DUMP, MODULE, RUN, SESSION), BACKUP_SESSIONS),
    _Phase("ledger-start", "ledger", _running_row, 0.1, "the run's 'running' ledger row has just been committed", (MODULE, RUN)),
    _Phase("upgrade", "upgrade", _upgrade, UPGRADE_SLEEP - 0.8, "the upgrade is inside revision 4's pg_sleep", (MODULE, RUN, SESSION), MIGRATION_SESSIONS),
    _Phase(
        "ledger-commit",
        "ledger",
        _committed,
        LINGER_SECONDS * 0.7,
        "the upgrade and its ledger row have committed; the module reads the revision back under the run lock",
        (MODULE, RUN, SESSION),
        MIGRATION_SESSIONS,
    ),
    _Phase("verify", "verify", _verifying, LINGER_SECONDS * 1.5, "the verification runs after the commit", (MODULE, RUN, SESSION), MIGRATION_SESSIONS),
    _Phase("ledger-handover", "ledger", _handed_over, 0.3, "the upgrade module has returned; the control node moves on", (RUN,)),
    _Phase("post-backup", "post-backup", _post_backup, 0.4, "pg_dump of the post-upgrade backup runs", (PG_DUMP, MODULE, RUN, SESSION), BACKUP_SESSIONS),
)


def _points() -> dict[str, KillPoint]:
    points: dict[str, KillPoint] = {}
    for phase in PHASES:
        for target in phase.targets:
            name = "%s/%s" % (phase.stem, target)
            about = "%s: %s" % (phase.about, TARGETS[target])
            points[name] = KillPoint(name, phase.phase, target, phase.reached, phase.max_delay, about, phase.sessions if target == SESSION else ())
    return points


KILL_POINTS = _points()


# -- outcomes --------------------------------------------------------------------------------------
COUNTS = ("committed writes lost", "inconsistent databases", "stale locks", "password files", "orphan partial dumps")
EXTRA_COUNTS = ("failed reruns", "passwords in output", "post-upgrade backups missing", "misleading reports")
PER_RUN = frozenset({"inconsistent databases", "failed reruns", "post-upgrade backups missing"})  # counted once per run, not per item


@dataclass
class Outcome:
    """One kill and what it left."""

    point: str
    delay: float
    landed: str = ""  # the task the run was in when the kill landed
    on_target: bool = False  # the phase was still on when the kill was sent
    sent: str = ""  # what was killed (nothing, when the process had already ended)
    killed: str = ""  # how the killed run ended
    reruns: list[str] = field(default_factory=list)
    writes: int = 0
    writer_errors: int = 0
    seconds: float = 0.0
    lost: list[str] = field(default_factory=list)
    inconsistent: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    password_files: list[str] = field(default_factory=list)
    partials: list[str] = field(default_factory=list)
    failed_reruns: list[str] = field(default_factory=list)
    secret_outputs: list[str] = field(default_factory=list)
    post_backup: list[str] = field(default_factory=list)
    misleading: list[str] = field(default_factory=list)

    def _by_count(self) -> dict[str, list[str]]:
        lists = (self.lost, self.inconsistent, self.stale, self.password_files, self.partials)
        extra = (self.failed_reruns, self.secret_outputs, self.post_backup, self.misleading)
        return dict(zip((*COUNTS, *EXTRA_COUNTS), (*lists, *extra), strict=True))

    def findings(self) -> dict[str, list[str]]:
        """Every broken invariant, by the name of its count."""
        return {name: items for name, items in self._by_count().items() if items}

    def counts(self) -> dict[str, int]:
        return {name: int(bool(items)) if name in PER_RUN else len(items) for name, items in self._by_count().items()}

    def verdict(self) -> str:
        found = self.findings()
        return "ok" if not found else "; ".join("%s: %d" % (name, len(items)) for name, items in found.items())

    def explain(self) -> str:
        """A readable account for a failing assertion: the kill point, where it landed, and each broken invariant."""
        lines = [
            "kill point %s (delay %.2f s, landed in %r%s): killed %s"
            % (self.point, self.delay, self.landed, "" if self.on_target else ", after its phase", self.sent or "nothing"),
            "killed run: %s" % self.killed,
            *("rerun %d: %s" % (number, text) for number, text in enumerate(self.reruns, start=1)),
            "writer: %d committed writes, %d errors" % (self.writes, self.writer_errors),
        ]
        for name, items in self.findings().items():
            lines.append("%s (%d): %s" % (name, len(items), "; ".join(items[:8]) + (" ..." if len(items) > 8 else "")))
        return "\n".join(lines)


def totals(outcomes: Sequence[Outcome]) -> dict[str, int]:
    summed = dict.fromkeys((*COUNTS, *EXTRA_COUNTS), 0)
    for outcome in outcomes:
        for name, value in outcome.counts().items():
            summed[name] += value
    return summed


def table(outcomes: Sequence[Outcome]) -> str:
    """Kill point -> where it landed -> what the run and the rerun said -> the invariants, then the counts."""
    header = ("#", "kill point", "delay", "killed", "landed in", "killed run", "rerun", "writes", "invariants")
    rows = [
        (
            str(number),
            outcome.point,
            "%.2f" % outcome.delay,
            _short(outcome.sent or "nothing", 24),
            _short(outcome.landed + ("" if outcome.on_target else " (late)"), 40),
            _short(outcome.killed, 60),
            _short(" | ".join(outcome.reruns), 60),
            str(outcome.writes),
            outcome.verdict(),
        )
        for number, outcome in enumerate(outcomes, start=1)
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.append("")
    lines.append("%-30s %d of %d" % ("kills inside their phase", sum(outcome.on_target for outcome in outcomes), len(outcomes)))
    lines.extend("%-30s %d" % (name, value) for name, value in totals(outcomes).items())
    return "\n".join(lines)


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def to_json(outcomes: Sequence[Outcome], **meta: Any) -> str:
    return json.dumps({**meta, "counts": totals(outcomes), "runs": [asdict(outcome) for outcome in outcomes]}, indent=2)


# -- the soak --------------------------------------------------------------------------------------
class Soak:
    """A work directory, an inventory, a project and a template database on one cluster; run() is one kill."""

    def __init__(self, cluster: PgCluster, root: Path, policy: Mapping[str, Any] | None = None) -> None:
        self.cluster = cluster
        self.root = root
        self.backups = root / "backups"
        self.scratch = root / "scratch"
        self.project = write_project(root)
        self.inventory = self._write_inventory(policy or {})
        self.password = cluster.app_password

    @classmethod
    def prepare(cls, cluster: PgCluster, root: Path, rows: int = 200_000, policy: Mapping[str, Any] | None = None) -> Soak:
        """policy: group variables over the repository's prod policy (e.g. fleet_transaction: revision)."""
        soak = cls(cluster, root, policy)
        build_template(cluster, soak.project, rows)
        return soak

    def close(self) -> None:
        self.project.fast()
        for dbname in (DBNAME, TEMPLATE):
            self.cluster.drop_database(dbname)

    # -- setup ---------------------------------------------------------------------
    def _write_inventory(self, policy: Mapping[str, Any]) -> Path:
        inventory = self.root / "inventory"
        write_yaml(inventory / "hosts.yml", {"all": {"children": {"prod": {"hosts": {HOST: None}}}}})
        write_yaml(
            inventory / "group_vars" / "all.yml",
            {
                "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                "fleet_project_root": str(REPO),
                "fleet_backup_root": str(self.backups),
            },
        )
        prod = yaml.safe_load((REPO / "inventory" / "group_vars" / "prod.yml").read_text())  # the repository's prod policy
        write_yaml(inventory / "group_vars" / "prod.yml", {**prod, **policy})
        entry = {
            "name": DBNAME,
            "alembic_ini": str(self.project.ini),
            "url": _database_url(self.cluster, DBNAME),
            "password": "{{ lookup('ansible.builtin.env', '%s') }}" % PASSWORD_VARIABLE,
        }
        write_yaml(inventory / "host_vars" / ("%s.yml" % HOST), {"fleet_databases": [entry]})
        return inventory

    def env(self) -> dict[str, str]:
        """The password, private temp directories (so what a run leaves is this soak's), unbuffered output (the
        watch reads the task a run is in from it) and JSON results."""
        dirs = {name: self.scratch / name for name in ("tmp", "ansible-remote", "ansible-local")}
        for directory in dirs.values():
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return {
            PASSWORD_VARIABLE: self.password,
            "TMPDIR": str(dirs["tmp"]),
            "ANSIBLE_REMOTE_TEMP": str(dirs["ansible-remote"]),
            "ANSIBLE_LOCAL_TEMP": str(dirs["ansible-local"]),
            "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }

    def reset(self) -> None:
        """The database back at revision 1 (from the template), no backups, empty temp directories."""
        reset_database(self.cluster)
        shutil.rmtree(self.backups, ignore_errors=True)
        shutil.rmtree(self.scratch, ignore_errors=True)

    # -- one kill ------------------------------------------------------------------
    def run(self, point: KillPoint, delay: float) -> Outcome:
        started = time.monotonic()
        outcome = Outcome(point=point.name, delay=round(delay, 3))
        self.reset()
        writer = Writer(self.cluster)
        writer.start()
        try:
            wait_for("the application's first writes", lambda: len(writer.committed) >= 5, timeout=30)
            self.project.slow()
            try:
                job = start_playbook(REPO / "migrate.yml", self.inventory, "-l", HOST, env=self.env())
                message = self._kill(job, point, delay, outcome)
            finally:
                self.project.fast()
            outcome.inconsistent.extend("after the kill: %s" % p for p in schema_problems(self.cluster))
            outcome.misleading.extend(misleading_report(self.cluster, message))
            self._rerun(outcome)
            self._wait_for_quiet()
        finally:
            writer.stop()
        outcome.writes, outcome.writer_errors = len(writer.committed), len(writer.errors)
        self.check(outcome, writer.committed)
        outcome.seconds = round(time.monotonic() - started, 1)
        return outcome

    def _kill(self, job: Background, point: KillPoint, delay: float, outcome: Outcome) -> str:
        """Kill at the point, let the run end; returns the run's own account of what failed and what was done."""
        watch = Watch(job, self.cluster)
        try:
            if _reach(watch, point):
                time.sleep(delay)
                outcome.on_target = point.reached(watch)
                outcome.landed = watch.task()
                outcome.sent = _send(job, watch, point)
            else:
                outcome.landed = "never reached (the run ended in %r)" % watch.task()
            run = job.wait(timeout=RUN_TIMEOUT)
        finally:
            watch.close()
            if job.running():  # an error or Ctrl-C before the run ended: leave no ansible-playbook behind
                job.kill()
        self._note_secret(run, "killed run", outcome)
        message = failure_message(run.output)
        if run.rc < 0:
            outcome.killed = "killed with its control node (signal %d)" % -run.rc
        else:
            outcome.killed = "rc %d: %s" % (run.rc, message or "no failure reported")
        return message

    def _rerun(self, outcome: Outcome) -> None:
        """migrate.yml until it succeeds: the first rerun may fail with one clear line, the second must succeed."""
        for attempt in (1, 2):
            run = playbook(REPO / "migrate.yml", self.inventory, "-l", HOST, env=self.env(), timeout=RUN_TIMEOUT)
            self._note_secret(run, "rerun %d" % attempt, outcome)
            if run.rc == 0:
                outcome.reruns.append("ok: %s" % (summary_line(run.output) or "no summary"))
                return
            message = failure_message(run.output)
            outcome.reruns.append("rc %d: %s" % (run.rc, message))
            if not _clear(message):
                outcome.failed_reruns.append("rerun %d failed without one clear line: %s" % (attempt, message or run.output[-500:]))
        outcome.failed_reruns.append("the second rerun failed too: %s" % failure_message(run.output))

    def _note_secret(self, run: Run, label: str, outcome: Outcome) -> None:
        for secret, name in ((self.password, "the migration user's password"), (self.cluster.superuser_password, "the superuser's password")):
            if secret in run.output:
                outcome.secret_outputs.append("%s in the output of the %s" % (name, label))

    def _wait_for_quiet(self) -> None:
        """An orphaned pg_dump (its module killed alone) may still be finishing its dump: give it time to end."""
        deadline = time.monotonic() + QUIET_TIMEOUT
        while fleet_sessions(self.cluster) and time.monotonic() < deadline:
            time.sleep(0.2)

    # -- invariants ----------------------------------------------------------------
    def check(self, outcome: Outcome, writes: Sequence[Write]) -> None:
        """Every invariant, once the runs are over: what breaks one is added to outcome."""
        outcome.lost.extend(lost_writes(self.cluster, writes))
        outcome.inconsistent.extend("after the rerun: %s" % p for p in schema_problems(self.cluster))
        outcome.inconsistent.extend(ledger_problems(self.cluster))
        outcome.stale.extend(stale_state(self.cluster))
        outcome.password_files.extend(files_holding(self.password, self.root, Path.home() / ".ansible" / "tmp"))
        outcome.partials.extend(sorted(str(path) for path in self.backups.rglob("*.partial")))
        outcome.post_backup.extend(post_backup_missing(self.cluster, self.backups))


def _reach(watch: Watch, point: KillPoint) -> bool:
    """Poll until the kill point's phase is visible; False when the run ended (or took too long) first."""
    deadline = time.monotonic() + PHASE_TIMEOUT
    while watch.job.running() and time.monotonic() < deadline:
        if point.reached(watch):
            return True
        time.sleep(0.02)
    return False


def _send(job: Background, watch: Watch, point: KillPoint) -> str:
    """SIGKILL (or terminate the sessions of) the kill point's target; says what it killed."""
    target = point.target
    if target == RUN:
        count = len(job.tree())
        job.kill()
        return "the run's %d processes" % count
    if target == SESSION:
        ended = watch.terminate(point.sessions)
        return "sessions %s" % ", ".join(map(str, ended)) if ended else ""
    pids = watch.pids("pg_dump") if target == PG_DUMP else [pid for pid in [watch.module_pid()] if pid is not None]
    killed = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return "%s %s" % (target, ", ".join(map(str, killed))) if killed else ""


# -- reading runs --------------------------------------------------------------------------------
def failure_message(output: str) -> str:
    """The message of the last failed task of a run (the host's own account of what failed and what was done)."""
    messages = []
    for match in re.finditer(r"^fatal: \[[^\]]+\]: FAILED! => \{", output, re.M):
        with contextlib.suppress(ValueError):
            result = json.JSONDecoder().raw_decode(output[match.end() - 1 :])[0]
            messages.append(str(result.get("msg", "")))
    if messages:
        return messages[-1]
    errors = [line for line in output.splitlines() if line.startswith("ERROR!")]
    return errors[-1] if errors else ""


def summary_line(output: str) -> str:
    """The run's summary of the database, without the backups' paths (they are in the backup root)."""
    found = re.findall(r'"%s/%s: ([^"]*)"' % (HOST, DBNAME), output)
    if not found:
        return ""
    return re.sub(r" /\S+\.dump", "", " ".join(str(found[-1]).split()))


# Where the host's failure message (recover.yml: "<host>/<db>: <what failed> -- <what was done>.") says the database is.
_CLAIM = re.compile(r"(?:is at|where it was \(|back to|\(revision|the upgrade to|left at) ([0-9a-f]{12}|base)\b")
_UNCHANGED = ("nothing was changed", "nothing to undo")


def claimed_revision(message: str) -> str | None:
    """The revision the recovery's account says the database is at; None when it says nothing about it."""
    if " -- " not in message:
        return None
    account = message.rsplit(" -- ", 1)[1]
    if account.startswith(_UNCHANGED):
        return START
    found = _CLAIM.findall(account)
    return str(found[-1]) if found else None


def misleading_report(cluster: PgCluster, message: str) -> list[str]:
    """The killed run's account of where it left the database, against where the database is."""
    claimed = claimed_revision(message)
    if claimed is None:
        return []
    actual = versions(cluster) or ["base"]
    if actual == [claimed]:
        return []
    return ["the killed run says the database is at %s, it is at %s: %s" % (claimed, ", ".join(actual), message)]


def _clear(message: str) -> bool:
    """One line that says what is wrong: not a traceback, not Ansible's report of a module that died."""
    return bool(message) and "\n" not in message and "Traceback" not in message and "MODULE FAILURE" not in message


# -- invariant checks -------------------------------------------------------------------------------
def _query(cluster: PgCluster, query: str, params: Sequence[Any] = (), dbname: str = DBNAME) -> list[tuple[Any, ...]]:
    return cluster.execute(query, tuple(params), dbname=dbname)


def versions(cluster: PgCluster) -> list[str]:
    if not _query(cluster, "select to_regclass('public.alembic_version')")[0][0]:
        return []
    return sorted(row[0] for row in _query(cluster, "select version_num from alembic_version"))


def shape(cluster: PgCluster) -> Shape:
    tables = frozenset(row[0] for row in _query(cluster, "select tablename from pg_tables where schemaname = 'public' and tablename <> %s", (LEDGER,)))
    columns = _query(cluster, "select column_name from information_schema.columns where table_schema = 'public' and table_name = 'events'")
    flags = _query(cluster, "select count(*) from account_flags")[0][0] if "account_flags" in tables else None
    return Shape(tables, frozenset(row[0] for row in columns), flags)


def ledger_exists(cluster: PgCluster) -> bool:
    return bool(_query(cluster, "select to_regclass(%s)", ("public.%s" % LEDGER,))[0][0])


def schema_problems(cluster: PgCluster) -> list[str]:
    """The schema is exactly the one of the revision alembic_version records."""
    current = versions(cluster)
    if len(current) != 1 or current[0] not in EXPECTED:
        return ["alembic_version holds %s, not one revision of the project" % (current or "nothing")]
    seen, expected = shape(cluster), EXPECTED[current[0]]
    if seen != expected:
        return ["at %s the schema is %s; that revision has %s" % (current[0], seen.describe(), expected.describe())]
    return []


def ledger_problems(cluster: PgCluster) -> list[str]:
    """After a successful rerun: at head, no row still 'running', and the last migrate row succeeded at head."""
    problems = []
    current = versions(cluster)
    if current != [HEAD]:
        problems.append("the database is at %s after the rerun, not at head %s" % (current or "base", HEAD))
    if not ledger_exists(cluster):
        return [*problems, "no ledger table after the rerun"]
    running = _query(cluster, "select entry_id, action from %s where outcome = 'running'" % LEDGER)
    problems.extend("ledger row %s (%s) still says running after the rerun" % row for row in running)
    last = _query(cluster, "select entry_id, outcome, to_revision from %s where action in ('migrate', 'upgrade') order by id desc limit 1" % LEDGER)
    if not last:
        problems.append("the ledger records no migrate run")
    elif last[0][1] != "succeeded" or sorted((last[0][2] or "").split()) != current:
        problems.append("the ledger's last migrate row %s says %s at %s; the database is at %s" % (last[0][0], last[0][1], last[0][2], current))
    return problems


def lost_writes(cluster: PgCluster, writes: Sequence[Write]) -> list[str]:
    """Rows the application saw committed that are gone, or whose note is not what it wrote."""
    if not writes:
        return []
    has_note = "note" in shape(cluster).event_columns
    query = "select id, payload, %s from events where id = any(%%s)" % ("note" if has_note else "null")
    found = {int(row[0]): (row[1], row[2]) for row in _query(cluster, query, ([w.id for w in writes],))}
    lost = []
    for write in writes:
        if write.id not in found:
            lost.append("row %d (%s) is gone" % (write.id, write.token))
        elif found[write.id][0] != write.token:
            lost.append("row %d (%s) now holds payload %r" % (write.id, write.token, found[write.id][0]))
        elif write.noted and found[write.id][1] != write.token:
            lost.append("row %d (%s): its note is %r, the application wrote %r" % (write.id, write.token, found[write.id][1], write.token))
    return lost


def fleet_sessions(cluster: PgCluster) -> list[tuple[Any, ...]]:
    return _query(
        cluster,
        "select pid, datname, application_name, state from pg_stat_activity where application_name like 'alembic-fleet%%' and pid <> pg_backend_pid()",
        dbname="postgres",
    )


def stale_state(cluster: PgCluster) -> list[str]:
    """Locks, sessions and side databases of a dead run, after the rerun (which holds none of them any more)."""
    found = ["session pid %s on %s (%s, %s)" % row for row in fleet_sessions(cluster)]
    locks = _query(
        cluster,
        "select l.pid, l.classid, l.objid, d.datname from pg_locks l join pg_database d on d.oid = l.database where l.locktype = 'advisory'",
        dbname="postgres",
    )
    found.extend("advisory lock %s/%s on %s held by pid %s" % (row[1], row[2], row[3], row[0]) for row in locks)
    side = _query(cluster, "select datname from pg_database where datname like %s and datname not in (%s, %s)", ("soak%", DBNAME, TEMPLATE), dbname="postgres")
    found.extend("database %s left by a dead run" % row[0] for row in side)
    return found


def post_backup_missing(cluster: PgCluster, backups: Path) -> list[str]:
    """After the rerun, a backup of head taken after the last migrate run finished (prod's post-upgrade backup)."""
    if not ledger_exists(cluster):
        return []
    finished = _query(
        cluster,
        "select to_char(finished_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') from %s "
        "where action in ('migrate', 'upgrade') and outcome = 'succeeded' order by id desc limit 1" % LEDGER,
    )
    if not finished:
        return []
    for manifest in backups.rglob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(manifest.read_text())
            if data.get("revision") == HEAD and str(data.get("created_at") or "") >= finished[0][0]:
                return []
    return ["no backup of %s taken after the upgrade finished at %s" % (HEAD, finished[0][0])]


# -- a soak of many runs ------------------------------------------------------------------------------
def random_plan(runs: int, seed: int, names: Sequence[str] | None = None) -> list[tuple[KillPoint, float]]:
    """runs kill points and delays drawn from seed (every point once before any repeats, in a shuffled order)."""
    rng = random.Random(seed)
    pool = [KILL_POINTS[name] for name in (names or list(KILL_POINTS))]
    plan: list[tuple[KillPoint, float]] = []
    while len(plan) < runs:
        batch = list(pool)
        rng.shuffle(batch)
        plan.extend((point, round(rng.uniform(0, point.max_delay), 3)) for point in batch)
    return plan[:runs]


def soak_runs(soak: Soak, plan: Sequence[tuple[KillPoint, float]], report: Callable[[int, Outcome], None] | None = None) -> list[Outcome]:
    outcomes = []
    for number, (point, delay) in enumerate(plan, start=1):
        outcome = soak.run(point, delay)
        outcomes.append(outcome)
        if report is not None:
            report(number, outcome)
    return outcomes


@contextlib.contextmanager
def prepared(cluster: PgCluster, root: Path, rows: int = 200_000, policy: Mapping[str, Any] | None = None) -> Iterator[Soak]:
    soak = Soak.prepare(cluster, root, rows, policy)
    try:
        yield soak
    finally:
        soak.close()

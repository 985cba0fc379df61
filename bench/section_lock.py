"""The lock section: what the application sees when a migration meets a long transaction.

An application thread reads daily_ohlcv every ~20 ms; a long transaction holds ACCESS SHARE on it; 0.5 s in, a
migration that adds a nullable column (ACCESS EXCLUSIVE) starts. Plain Alembic queues its ALTER behind the
transaction, and every application query then queues behind the ALTER until the transaction ends. alembic-fleet's
alembic_upgrade gives up after lock_timeout and retries later, so the application waits at most about that long.

The transaction ends 5.5 s after the migration's ALTER first queues behind it (so ~6 s after the migration's start
plus the tool's start-up): `ansible` needs a few seconds more than `alembic` to reach its first statement, and a
fixed end would hand ours a shorter conflict, not show its lock policy.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from context import Bench, policy, rotated
from infra import BIN, BenchError, PgCluster, clone, drop, libpq_url, password_lookup, require, run_timed, sessions, start_module, tool_env, wait_for
from results import Target

START_AFTER = 0.5  # the migration starts this long into the transaction
HOLD_AFTER_QUEUE = 5.5  # the transaction ends this long after the migration's ALTER queued behind it
INTERVAL = 0.02  # the application's pause between queries
AFTER = 0.5  # the application keeps reading this long after the migration ended
LOCK_BASE = "lock_base"


class Application(threading.Thread):
    """Point reads of daily_ohlcv by primary key, each query's latency recorded."""

    def __init__(self, cluster: PgCluster, dbname: str, symbols: int) -> None:
        super().__init__(daemon=True)
        self.conn = cluster.connect(dbname, superuser=False)  # autocommit: one short transaction per query
        self.symbols = symbols
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        pick = random.Random(7)
        try:
            with self.conn.cursor() as cur:
                while not self.stop.is_set():
                    symbol = "S%05d" % pick.randint(1, self.symbols)
                    started = time.monotonic()
                    cur.execute("SELECT close FROM daily_ohlcv WHERE symbol = %s AND trade_date = date '2010-06-01'", (symbol,))
                    cur.fetchall()
                    self.latencies.append(time.monotonic() - started)
                    time.sleep(INTERVAL)
        except Exception as exc:  # reported with the case's outcome
            self.errors.append("%s: %s" % (type(exc).__name__, exc))
        finally:
            self.conn.close()


@dataclass
class Outcome:
    worst: float
    queries: int
    migration_seconds: float
    completed: bool
    detail: dict[str, Any] = field(default_factory=dict)


class Migration:
    """A started migration: plain `alembic upgrade head`, or our module in the background."""

    def __init__(self, poll: Callable[[], bool], finish: Callable[[], tuple[int, str, dict[str, Any]]]) -> None:
        self.started = time.monotonic()
        self.running = poll
        self.finish = finish


def plain_alembic(b: Bench, cluster: PgCluster, dbname: str) -> Migration:
    argv = [str(BIN / "alembic"), "-c", str(b.lock_project.ini), "upgrade", "head"]
    proc = subprocess.Popen(
        argv, env=tool_env(b.clusters.pgpass, libpq_url(cluster, dbname)), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )

    def finish() -> tuple[int, str, dict[str, Any]]:
        out, _ = proc.communicate(timeout=600)
        return proc.returncode, out, {}

    return Migration(lambda: proc.poll() is None, finish)


def our_module(b: Bench, cluster: PgCluster, dbname: str, lock: dict[str, float]) -> Migration:
    args = {
        "config": str(b.lock_project.ini),
        "url": libpq_url(cluster, dbname),
        "password": password_lookup("pg1"),
        "lock_timeout": lock["lock_timeout"],
        "lock_retries": int(lock["lock_retries"]),
        "lock_retry_delay": lock["lock_retry_delay"],
    }
    job = start_module("alembic_upgrade", args, env=b.ansible_env())

    def finish() -> tuple[int, str, dict[str, Any]]:
        run = job.wait(timeout=600)
        result = job.result()
        return run.rc, run.output, {"lock_retries": result.get("lock_retries"), "duration": result.get("duration")}

    return Migration(job.running, finish)


def alter_waiting(cluster: PgCluster, dbname: str) -> bool:
    return bool(sessions(cluster, dbname, "query ilike 'ALTER TABLE daily_ohlcv%%' and wait_event_type = 'Lock'"))


def one_case(b: Bench, symbols: int, start: Callable[[PgCluster, str], Migration]) -> Outcome:
    cluster = b.clusters.ensure(1)[0]
    dbname = b.name("lock")
    clone(cluster, LOCK_BASE, dbname)
    app = Application(cluster, dbname, symbols)
    holder = cluster.connect(dbname)
    try:
        app.start()
        time.sleep(0.5)  # the application's steady state before anything happens
        holder.autocommit = False
        with holder.cursor() as cur:
            cur.execute("SELECT 1 FROM daily_ohlcv LIMIT 1")  # ACCESS SHARE until the transaction ends
        opened = time.monotonic()
        time.sleep(START_AFTER)
        migration = start(cluster, dbname)
        wait_for("the migration's ALTER to queue behind the long transaction", lambda: alter_waiting(cluster, dbname) or not migration.running(), 300, 0.01)
        queued = time.monotonic()
        time.sleep(HOLD_AFTER_QUEUE)
        holder.commit()
        held = time.monotonic() - opened
        rc, output, detail = migration.finish()
        seconds = time.monotonic() - migration.started
        detail.update(queued_after=round(queued - migration.started, 2), held=round(held, 2))
        time.sleep(AFTER)
    finally:
        app.stop.set()
        app.join(timeout=10)
        holder.close()
    try:
        columns = cluster.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'daily_ohlcv'", dbname=dbname)
        version = [row[0] for row in cluster.execute("SELECT version_num FROM alembic_version", dbname=dbname)]
    finally:
        drop(cluster, dbname)
    if app.errors:
        raise BenchError("the application failed: %s" % app.errors)
    completed = rc == 0 and version == [b.lock_project.head] and ("note",) in columns
    if not completed:
        detail["output"] = output[-2000:]
    return Outcome(max(app.latencies), len(app.latencies), seconds, completed, detail)


def prepare(b: Bench) -> int:
    """lock_base: a clone of the seeded database at the 35-revision head (not measured); returns its symbols."""
    seeded = b.seeded()
    cluster = seeded.cluster
    if not cluster.execute("SELECT 1 FROM pg_database WHERE datname = %s", (LOCK_BASE,)):
        clone(cluster, seeded.dbname, LOCK_BASE)
        env = tool_env(b.clusters.pgpass, libpq_url(cluster, LOCK_BASE))
        require(run_timed("alembic upgrade", [str(BIN / "alembic"), "-c", str(b.lock_project.ini), "upgrade", b.project.head], env))
    return seeded.symbols


def section_lock(b: Bench) -> None:
    symbols = prepare(b)
    policies = {env: policy(env) for env in ("dev", "prod")}
    plain: list[Outcome] = []
    ours: dict[str, list[Outcome]] = {env: [] for env in policies}

    def run_plain() -> None:
        plain.append(one_case(b, symbols, lambda c, d: plain_alembic(b, c, d)))

    def run_ours(env: str) -> Callable[[], None]:
        def run() -> None:
            ours[env].append(one_case(b, symbols, lambda c, d: our_module(b, c, d, policies[env])))

        return run

    for rep in range(b.repeat):
        rotated(rep, [run_plain, *(run_ours(env) for env in policies)])
    for env, lock in policies.items():
        outcomes = ours[env]
        done = all(o.completed for o in outcomes + plain)
        b.row(
            "lock",
            "worst app query latency, %s policy (lock_timeout %g s, %d retries, delay %g s) vs plain alembic"
            % (env, lock["lock_timeout"], lock["lock_retries"], lock["lock_retry_delay"]),
            [o.worst for o in outcomes],
            [o.worst for o in plain],
            target=Target("ours", lock["lock_timeout"] + 0.2),
            ok=done,
            note="both migrations completed: %s; queries ours/plain %s/%s; our lock retries %s; ALTER queued after ours/plain %s/%s s"
            % (
                "yes" if done else "NO",
                [o.queries for o in outcomes],
                [o.queries for o in plain],
                [o.detail.get("lock_retries") for o in outcomes],
                [o.detail.get("queued_after") for o in outcomes],
                [o.detail.get("queued_after") for o in plain],
            ),
        )
        b.row("lock", "migration wall time, %s policy vs plain alembic" % env, [o.migration_seconds for o in outcomes], [o.migration_seconds for o in plain])
        for o in outcomes + plain:
            if not o.completed:
                b.report.fact("lock", "failed_%s" % env, o.detail)

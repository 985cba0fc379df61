"""Faults on real PostgreSQL: a killed run, a server that goes away, a backup that cannot be
written, two runs at once, a long transaction in the way, secrets while it all runs.

Each test ends with nothing lost and the next normal run succeeding.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.ansible_run import REPO, Run, playbook
from support.faults import (
    cmdline,
    db_args,
    fleet_sessions,
    pgpass_dirs,
    run_env,
    run_module,
    sessions,
    sleeping,
    slow_project,
    start_module,
    start_playbook,
    wait_for,
    wipe,
)
from support.pgcluster import PgCluster

from .conftest import make_inventory, password_env
from .test_migrate_postgres import assert_no_secret, head_of, tables_of, version_of
from .test_rollback import LEDGER, ledger, seed_companies

pytestmark = pytest.mark.slow

EQUITIES_INI = REPO / "migrations" / "equities" / "alembic.ini"
HEAD = head_of("equities")
ALGORITHMS_HEAD = head_of("algorithms")


# -- helpers --------------------------------------------------------------------
def to_head(cluster: PgCluster, scratch: Path) -> None:
    """equities to the bundled project's head, by the module."""
    run, _ = run_module("alembic_upgrade", {"config": str(EQUITIES_INI), **db_args(cluster)}, env=run_env(cluster, scratch))
    assert run.rc == 0, run.output[-3000:]


def one_line_failure(run: Any, result: dict[str, Any], clusters: list[PgCluster]) -> str:
    assert run.rc != 0, run.output[-3000:]
    assert_no_secret(run.output, clusters)
    message = str(result.get("msg", ""))
    assert message, run.output[-3000:]
    assert "\n" not in message and "Traceback" not in message, message
    assert not message.startswith("unexpected "), "an expected fault reported as a bug: %s" % message
    assert "exception" not in result, "a traceback came with the failure: %s" % message
    return message


def flush_wal(cluster: PgCluster) -> None:
    """Make every commit so far durable before a crash.

    The test clusters run with synchronous_commit = off, so an immediate stop could lose
    commits made in the last few hundred ms (such as the ledger's 'running' row). A
    synchronous commit flushes the WAL up to itself, and with it every earlier commit.
    """
    conn = cluster.connect()
    try:
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute("SET LOCAL synchronous_commit = on")
            cur.execute("SELECT txid_current()")  # an xid, so the commit writes (and flushes) a record
        conn.commit()
    finally:
        conn.close()


def columns_of(cluster: PgCluster, table: str, dbname: str = "equities") -> set[str]:
    rows = cluster.execute("select column_name from information_schema.columns where table_name = %s", (table,), dbname=dbname)
    return {row[0] for row in rows}


def ledger_exists(cluster: PgCluster, dbname: str) -> bool:
    return bool(cluster.execute("select to_regclass(%s) is not null", ("public.%s" % LEDGER,), dbname=dbname)[0][0])


def fatal_results(output: str) -> list[dict[str, Any]]:
    """The results of the failed tasks of a playbook run with ANSIBLE_CALLBACK_RESULT_FORMAT=json."""
    found = []
    for match in re.finditer(r"^fatal: \[[^\]]+\]: FAILED! => \{", output, re.M):
        found.append(json.JSONDecoder().raw_decode(output[match.end() - 1 :])[0])
    return found


def failed_task(output: str) -> str:
    """The name of the task whose failure is the first 'fatal:' of a playbook run."""
    before = output[: output.index("\nfatal: ")]
    return before[before.rindex("TASK [") + len("TASK [") :].split("]", 1)[0]


def task_status(output: str, task: str) -> str:
    """ok / changed / skipping / fatal: how a role task of a playbook run ended (its first host line); `task` is the
    beginning of its name."""
    header = "TASK [fleet : %s" % task  # a prefix: the host's upgrade call names the databases it works on
    assert header in output, "task %r did not run" % task
    after = output[output.index(header) :].splitlines()[1:]
    for line in after:
        match = re.match(r"^(ok|changed|skipping|fatal): \[", line)
        if match:
            return match.group(1)
    raise AssertionError("no result line for task %r" % task)


def only_equities(inventory: Path) -> Path:
    """Keep only the equities entry of each host: half the work per run."""
    for path in (inventory / "host_vars").glob("*.yml"):
        data = yaml.safe_load(path.read_text())
        data["fleet_databases"] = [db for db in data["fleet_databases"] if db["name"] == "equities"]
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return inventory


def json_env(clusters: list[PgCluster]) -> dict[str, str]:
    return {**password_env(clusters), "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# -- 1. SIGKILL in the middle of an upgrade --------------------------------------------
def test_sigkill_mid_upgrade_frees_the_lock_and_changes_nothing(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    scratch = tmp_path / "scratch"
    env = run_env(db1, scratch)
    try:
        to_head(db1, scratch)
        project = slow_project(
            tmp_path,
            "fa11ed000001",
            HEAD,
            6,
            upgrade='    op.create_table("fault_partial", sa.Column("id", sa.Integer(), primary_key=True))',
            downgrade='    op.drop_table("fault_partial")',
        )
        args = {"config": str(project.ini), **db_args(db1)}

        job = start_module("alembic_upgrade", args, env=env)
        sleeper = wait_for("the migration's pg_sleep", lambda: sleeping(db1, "equities") or not job.running(), timeout=60)
        assert job.running(), job.wait().output[-3000:]
        assert fleet_sessions(db1, "equities", "alembic-fleet:%"), "the run holds its lock in a session of its own"
        created = db1.execute("select count(*) from pg_locks where pid = %s and locktype = 'relation' and mode = 'AccessExclusiveLock'", (sleeper[0][0],))[0][0]
        assert created, "the revision's CREATE TABLE ran (uncommitted) before the sleep"
        assert pgpass_dirs(scratch) == [], "the password file lives in memory only, never in TMPDIR"

        # kill -9 of the whole run: ansible's worker calls setsid(), so killpg() of the
        # ansible process group alone would leave the module running to its end.
        job.kill()
        killed_at = time.monotonic()

        # The lock session and the migration's session both end with the process.
        wait_for("the run lock to be released", lambda: not fleet_sessions(db1, "equities", "alembic-fleet:%"), timeout=5)
        lock_free_after = time.monotonic() - killed_at
        wait_for("the killed migration's session to end", lambda: not fleet_sessions(db1, "equities"), timeout=3)
        assert not sleeping(db1, "equities")
        print("lock free %.2f s after SIGKILL" % lock_free_after)

        # Transactional DDL: nothing of the killed revision is left.
        assert version_of(db1, "equities") == [HEAD]
        assert "fault_partial" not in tables_of(db1, "equities")
        raw = ledger(db1, "equities")
        assert raw[-1]["outcome"] == "running" and raw[-1]["from_revision"] == HEAD, raw[-1]
        killed_entry = raw[-1]["entry_id"]

        run, status = run_module("alembic_status", {"config": str(project.ini), **db_args(db1)}, env=env)
        assert run.rc == 0, run.output[-3000:]
        assert status["lock_holder"] is None, status["lock_holder"]
        assert status["last_runs"][0]["entry_id"] == killed_entry
        assert status["last_runs"][0]["outcome"] == "interrupted", status["last_runs"][0]
        assert status["current"] == [HEAD] and status["pending_count"] == 1

        project.fast()
        run, result = run_module("alembic_upgrade", args, env=env)
        assert run.rc == 0, run.output[-3000:]
        assert result["changed"] is True and result["before"] == [HEAD] and result["after"] == [project.revision]
        assert "fault_partial" in tables_of(db1, "equities")
        rows = {r["entry_id"]: r for r in ledger(db1, "equities")}
        assert rows[killed_entry]["outcome"] == "interrupted", rows[killed_entry]
        assert rows[result["ledger_entry_id"]]["outcome"] == "succeeded"
        assert_no_secret(run.output, fresh_pg)
    finally:
        wipe(scratch)  # SIGKILL leaves the run's PGPASSFILE and ansible's module payload behind


# -- 2. the server goes away in the middle of a run --------------------------------------
def test_server_stopped_mid_upgrade_fails_readably_and_changes_nothing(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    scratch = tmp_path / "scratch"
    env = run_env(db1, scratch)
    try:
        to_head(db1, scratch)
        project = slow_project(
            tmp_path,
            "fa11ed000002",
            HEAD,
            5,
            upgrade='    op.create_table("fault_partial", sa.Column("id", sa.Integer(), primary_key=True))',
            downgrade='    op.drop_table("fault_partial")',
        )
        args = {"config": str(project.ini), **db_args(db1)}
        job = start_module("alembic_upgrade", args, env=env)
        try:
            wait_for("the migration's pg_sleep", lambda: sleeping(db1, "equities") or not job.running(), timeout=60)
            assert job.running(), job.wait().output[-3000:]
            flush_wal(db1)
            db1.stop()
            run, result = job.wait(timeout=60), job.result()
        finally:
            db1.start()
            if job.running():
                job.kill()
        message = one_line_failure(run, result, fresh_pg)
        assert result["database"].endswith(":%d/equities" % db1.port), result.get("database")
        assert "closed the connection" in message or "terminating connection" in message, message
        assert "unreachable" in result.get("ledger_note", ""), "the failure could not be recorded and the result says so"

        assert version_of(db1, "equities") == [HEAD]
        assert "fault_partial" not in tables_of(db1, "equities")
        assert ledger(db1, "equities")[-1]["outcome"] in ("running", "failed"), "the stopped run's row says it did not finish"
        assert not fleet_sessions(db1, "equities")

        project.fast()
        run, result = run_module("alembic_upgrade", args, env=env)
        assert run.rc == 0, run.output[-3000:]
        assert result["after"] == [project.revision]
        assert "fault_partial" in tables_of(db1, "equities")
        outcomes = [r["outcome"] for r in ledger(db1, "equities")]
        assert outcomes[-1] == "succeeded" and "running" not in outcomes, outcomes
        assert pgpass_dirs(scratch) == [], "a failed run leaves no PGPASSFILE behind"
    finally:
        wipe(scratch)


@pytest.mark.parametrize("count_tables", [10, 0], ids=["with-counts", "without-counts"])
def test_server_stopped_mid_backup_says_the_connection_was_lost_and_nothing_else(fresh_pg: list[PgCluster], tmp_path: Path, count_tables: int) -> None:
    """A crash during a backup is said as such: no hint about counting rows, no advice to restore anything."""
    db1 = fresh_pg[0]
    scratch = tmp_path / "scratch"
    env = run_env(db1, scratch)
    try:
        to_head(db1, scratch)
        locker = db1.connect("equities")
        locker.autocommit = False
        with locker.cursor() as cur:
            cur.execute("LOCK TABLE companies IN ACCESS EXCLUSIVE MODE")  # the backup waits here, still connected
        args = {
            **db_args(db1),
            "backup_root": str(tmp_path / "backups"),
            "environment": "prod",
            "host": "db1",
            "name": "equities",
            "count_tables": count_tables,
            "lock_wait_timeout": 60,
        }
        job = start_module("db_backup", args, env=env)
        try:
            wait_for("the backup waiting on the lock", lambda: sessions(db1, "equities", "wait_event_type = 'Lock'") or not job.running(), timeout=60)
            assert job.running(), job.wait().output[-3000:]
            db1.stop()
            run, result = job.wait(timeout=60), job.result()
        finally:
            locker.close()
            db1.start()
            if job.running():
                job.kill()
        message = one_line_failure(run, result, fresh_pg)
        assert "no backup was written" in message, message
        assert "count_tables" not in message and "restore" not in message, message
        assert re.search(r"connection .*lost|closed the connection|terminating connection|server", message), message
        assert [p for p in (tmp_path / "backups").rglob("*") if p.is_file()] == [], "nothing is left in the backup root"
    finally:
        wipe(scratch)


def _is_the_dump(argv: list[str]) -> bool:
    return bool(argv) and Path(argv[0]).name == "pg_dump" and any(arg.startswith("--file=") for arg in argv)


def test_a_killed_pg_dump_is_said_as_killed(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    scratch = tmp_path / "scratch"
    env = run_env(db1, scratch)
    try:
        to_head(db1, scratch)
        locker = db1.connect("equities")
        locker.autocommit = False
        with locker.cursor() as cur:
            cur.execute("LOCK TABLE companies IN ACCESS EXCLUSIVE MODE")  # pg_dump waits here, alive
        args = {**db_args(db1), "backup_root": str(tmp_path / "backups"), "environment": "prod", "host": "db1", "name": "equities", "count_tables": 0}
        job = start_module("db_backup", {**args, "lock_wait_timeout": 60}, env=env)
        try:
            # The dump itself (it has --file=), not the `pg_dump --version` the module runs first to compare versions.
            dumps = wait_for("pg_dump", lambda: [pid for pid in job.tree() if _is_the_dump(cmdline(pid))], 60)
            os.kill(dumps[0], signal.SIGKILL)
            run, result = job.wait(timeout=60), job.result()
        finally:
            locker.close()
        message = one_line_failure(run, result, fresh_pg)
        assert "pg_dump of" in message and "was killed by signal 9" in message and "no backup was written" in message, message
    finally:
        wipe(scratch)


# -- 3. a backup that cannot be written stops the upgrade ---------------------------------
def _tmpfs(directory: Path, size: str) -> bool:
    directory.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", str(directory)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _not_a_directory(tmp_path: Path) -> tuple[Path, Path]:
    """A regular file, and a backup root under it (which no one can create)."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file where the backup root's parent should be\n")
    return blocker, blocker / "backups"


def test_unwritable_backup_root_stops_before_the_upgrade(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    env = json_env(fresh_pg)
    inventory = only_equities(make_inventory(tmp_path / "plain", fresh_pg))
    blocker, bad_root = _not_a_directory(tmp_path)

    failed = playbook(REPO / "migrate.yml", inventory, "-l", "db1", "-e", "fleet_backup_root=%s" % bad_root, env=env)
    assert failed.rc != 0, failed.output[-3000:]
    assert_no_secret(failed.output, fresh_pg)
    fatal = fatal_results(failed.output)
    # The host's upgrade call takes each backup first (one module start): it fails on the backup, before the upgrade;
    # the database's own step says so.
    assert failed_task(failed.output) == "fleet : Upgrade equities", failed.output[-3000:]
    message = fatal[0]["msg"]
    assert "\n" not in message and str(blocker) in message, message
    assert "nothing was changed: the backup failed, so the upgrade did not start" in fatal[-1]["msg"], fatal[-1]
    assert tables_of(db1, "equities") == set(), "no upgrade ran without a backup"
    assert not ledger_exists(db1, "equities")
    assert blocker.read_text().startswith("a regular file")

    good = playbook(REPO / "migrate.yml", inventory, "-l", "db1", env=env)
    assert good.rc == 0, good.output[-3000:]
    assert version_of(db1, "equities") == [HEAD]
    assert len(files_under(tmp_path / "plain" / "backups")) == 2 * 2, "the backups before and after, with their manifests"


def test_unwritable_backup_root_is_explained_in_one_sentence(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    scratch = tmp_path / "scratch"
    blocker, bad_root = _not_a_directory(tmp_path)
    args = {**db_args(db1), "backup_root": str(bad_root), "environment": "prod", "host": "db1", "name": "equities", "revision": ""}
    run, result = run_module("db_backup", args, env=run_env(db1, scratch))
    message = one_line_failure(run, result, fresh_pg)
    assert str(blocker) in message and ("backup_root" in message or "backup root" in message), message


def test_full_backup_root_leaves_no_partial_file_and_no_upgrade(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    scratch = tmp_path / "scratch"
    to_head(db1, scratch)
    wipe(scratch)
    full = tmp_path / "full"
    if not _tmpfs(full, "256k"):
        pytest.skip("cannot mount a small tmpfs here (mount -t tmpfs not permitted): the full-disk case is not tested")
    env = json_env(fresh_pg)
    project = slow_project(tmp_path, "fa11ed000003", HEAD, 0, upgrade='    op.execute("SELECT 1")')
    project.fast()
    inventory = only_equities(make_inventory(tmp_path / "next", fresh_pg, projects={"equities": str(project.ini)}))
    try:
        # Hex digests hardly compress: the dump is well over the 256 KB the file system holds.
        db1.execute(
            "insert into companies (ticker, company_name) "
            "select 'F' || i, md5(i::text) || md5((-i)::text) || md5((i * 7)::text) from generate_series(1, 40000) as i",
            dbname="equities",
        )
        rows_before = ledger(db1, "equities")

        filled = playbook(REPO / "migrate.yml", inventory, "-l", "db1", "-e", "fleet_backup_root=%s" % full, env=env)
        assert filled.rc != 0, filled.output[-3000:]
        assert_no_secret(filled.output, fresh_pg)
        fatal = fatal_results(filled.output)
        assert failed_task(filled.output) == "fleet : Upgrade equities", filled.output[-3000:]
        message = fatal[0]["msg"]
        assert "\n" not in message and "No space left on device" in message and "no backup was written" in message, message
        assert files_under(full) == [], "a failed backup leaves no file behind"
        assert version_of(db1, "equities") == [HEAD], "no upgrade without a backup"
        assert ledger(db1, "equities") == rows_before
    finally:
        subprocess.run(["umount", str(full)], check=False, capture_output=True, timeout=30)

    done = playbook(REPO / "migrate.yml", inventory, "-l", "db1", env=env)
    assert done.rc == 0, done.output[-3000:]
    assert version_of(db1, "equities") == [project.revision]
    assert ledger(db1, "equities")[-1]["outcome"] == "succeeded"
    assert db1.execute("select count(*) from companies", dbname="equities")[0][0] == 40000


# -- 4. two runs at once ---------------------------------------------------------------
@dataclass
class TwoRuns:
    runs: list[Run]
    overlapped: set[str]
    revision: str
    versions: dict[str, list[str]]
    ledgers: dict[str, list[dict[str, Any]]]

    def summaries(self, index: int) -> list[str]:
        return [line.strip() for line in self.runs[index].output.splitlines() if "db1/equities:" in line and ("upgraded" in line or "nothing to do" in line)]

    def winner(self) -> int:
        """The run whose backup the ledger's migrate row refers to."""
        (row,) = [r for r in self.ledgers["equities"] if r["action"] == "migrate"]
        (index,) = [i for i, run in enumerate(self.runs) if row["backup_path"] and row["backup_path"] in run.output]
        return index


@pytest.fixture(scope="module")
def two_runs(pg_clusters: list[PgCluster], tmp_path_factory: pytest.TempPathFactory) -> TwoRuns:
    """Two migrate.yml runs on db1, started together; the equities migration sleeps 5 s."""
    for cluster in pg_clusters:
        for dbname in ("equities", "algorithms"):
            cluster.reset_database(dbname)
    db1 = pg_clusters[0]
    root = tmp_path_factory.mktemp("two-runs")
    project = slow_project(root, "fa11ed000004", HEAD, 5)  # sleeps only: the models still match
    inventory = make_inventory(root / "inv", pg_clusters, projects={"equities": str(project.ini)})
    env = json_env(pg_clusters)
    args = ("-l", "db1", "-e", "fleet_lock_wait=30")
    jobs = [start_playbook(REPO / "migrate.yml", inventory, *args, env=env) for _ in range(2)]
    overlapped: set[str] = set()
    try:
        while any(job.running() for job in jobs):
            names = {row[1] for row in fleet_sessions(db1, "equities", "alembic-fleet:%")}
            if len(names) >= 2:  # one run holds the lock, the other's lock session polls for it
                overlapped |= names
            time.sleep(0.2)
        runs = [job.wait(timeout=240) for job in jobs]
    finally:
        for job in jobs:
            if job.running():
                job.kill()
    return TwoRuns(
        runs=runs,
        overlapped=overlapped,
        revision=project.revision,
        versions={name: version_of(db1, name) for name in ("equities", "algorithms")},
        ledgers={name: ledger(db1, name) for name in ("equities", "algorithms")},
    )


def test_two_runs_at_once_migrate_each_database_exactly_once(two_runs: TwoRuns, pg_clusters: list[PgCluster]) -> None:
    for run in two_runs.runs:
        assert_no_secret(run.output, pg_clusters)
    assert len(two_runs.overlapped) >= 2, "the two runs never overlapped on equities: the test proves nothing"
    failed = [run for run in two_runs.runs if run.rc != 0]
    assert len(failed) <= 1, [run.output[-2000:] for run in failed]
    for run in failed:
        assert "is locked by another alembic-fleet run" in run.output, run.output[-3000:]
    assert two_runs.versions == {"equities": [two_runs.revision], "algorithms": [ALGORITHMS_HEAD]}
    for dbname, rows in two_runs.ledgers.items():
        migrates = [r for r in rows if r["action"] == "migrate"]
        assert [r["outcome"] for r in migrates] == ["succeeded"], (dbname, migrates)
        assert [r["action"] for r in rows] == ["migrate"], (dbname, rows)
    winner = two_runs.winner()
    assert any("upgraded base -> %s" % two_runs.revision in line for line in two_runs.summaries(winner)), two_runs.summaries(winner)
    # The run that waited for the lock re-planned under it and found nothing left to do.
    assert task_status(two_runs.runs[winner].output, "Back up, upgrade and verify ") == "changed"
    assert task_status(two_runs.runs[1 - winner].output, "Back up, upgrade and verify ") == "ok"
    assert task_status(two_runs.runs[1 - winner].output, "Back up after the verified upgrade of equities") == "skipping"


def test_the_run_that_waited_reports_nothing_to_do(two_runs: TwoRuns) -> None:
    loser = 1 - two_runs.winner()
    lines = two_runs.summaries(loser)
    assert lines and all("nothing to do" in line for line in lines), lines


# -- 5. a long transaction in the way of the migration --------------------------------------
class Application(threading.Thread):
    """Small reads of companies in a loop, each query's latency recorded."""

    def __init__(self, cluster: PgCluster) -> None:
        super().__init__(daemon=True)
        self.conn = cluster.connect("equities")  # autocommit: one short transaction per query
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            with self.conn.cursor() as cur:
                while not self.stop.is_set():
                    started = time.monotonic()
                    cur.execute("SELECT count(*) FROM companies")
                    cur.fetchone()
                    self.latencies.append(time.monotonic() - started)
                    time.sleep(0.05)
        except Exception as exc:  # reported by the test
            self.errors.append("%s: %s" % (type(exc).__name__, exc))
        finally:
            self.conn.close()


def _open_long_transaction(cluster: PgCluster) -> tuple[Any, int]:
    conn = cluster.connect("equities")
    conn.autocommit = False
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = int(cur.fetchone()[0])
        cur.execute("SELECT * FROM companies")  # ACCESS SHARE on companies until the transaction ends
        cur.fetchall()
    return conn, pid


def _alter_waiting(cluster: PgCluster) -> list[tuple[Any, ...]]:
    return sessions(cluster, "equities", "query ilike 'ALTER TABLE companies%%' and wait_event_type = 'Lock'")


def test_long_transaction_the_application_never_waits_longer_than_lock_timeout(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    scratch = tmp_path / "scratch"
    env = run_env(db1, scratch)
    lock_timeout = 1.0
    try:
        to_head(db1, scratch)
        seed_companies(db1, "AAPL", "MSFT", "GOOG")
        project = slow_project(
            tmp_path,
            "fa11ed000005",
            HEAD,
            0,
            upgrade='    op.add_column("companies", sa.Column("fault_note", sa.Text()))',
            downgrade='    op.drop_column("companies", "fault_note")',
        )
        project.fast()
        policy = {"lock_timeout": lock_timeout, "lock_retry_delay": 0.5, "lock_wait": 5}
        args = {"config": str(project.ini), **db_args(db1), **policy}

        # Without retries, the run gives up and names the session in its way.
        long_tx, long_pid = _open_long_transaction(db1)
        try:
            run, result = run_module("alembic_upgrade", {**args, "lock_retries": 0}, env=env)
        finally:
            long_tx.rollback()
            long_tx.close()
        message = one_line_failure(run, result, fresh_pg)
        assert "gave up after 1 attempt(s)" in message, message
        assert "table companies is locked by pid %d" % long_pid in message, message
        assert version_of(db1, "equities") == [HEAD] and "fault_note" not in columns_of(db1, "companies")
        assert ledger(db1, "equities")[-1]["outcome"] == "failed"

        # With retries: the application keeps running while the transaction lasts ~3 s more.
        long_tx, long_pid = _open_long_transaction(db1)
        app = Application(db1)
        app.start()
        app_started = time.monotonic()
        job = start_module("alembic_upgrade", {**args, "lock_retries": 5}, env=env)
        try:
            wait_for("the ALTER to queue behind the long transaction", lambda: _alter_waiting(db1) or not job.running(), timeout=60)
            time.sleep(3)
            long_tx.commit()
            run, result = job.wait(timeout=120), job.result()
            while time.monotonic() - app_started < 6:
                time.sleep(0.1)
        finally:
            app.stop.set()
            app.join(timeout=10)
            long_tx.close()
            if job.running():
                job.kill()
        assert not app.errors, app.errors
        worst = max(app.latencies)
        print(
            "application: %d queries, worst %.3f s, median %.4f s, %d over 0.1 s; lock_retries %s"
            % (len(app.latencies), worst, sorted(app.latencies)[len(app.latencies) // 2], sum(1 for x in app.latencies if x > 0.1), result.get("lock_retries"))
        )
        assert run.rc == 0, run.output[-3000:]
        assert result["lock_retries"] >= 1, result
        assert worst <= lock_timeout + 0.5, "the application waited %.2f s behind the migration" % worst
        assert "fault_note" in columns_of(db1, "companies")
        assert version_of(db1, "equities") == [project.revision]
        assert ledger(db1, "equities")[-1]["outcome"] == "succeeded"
    finally:
        wipe(scratch)


# -- 6. secrets while a backup and an upgrade run ---------------------------------------------
def test_no_password_on_any_command_line_during_a_backup_and_an_upgrade(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    """Every process's full argv (ps -ww: no cut at the terminal width), sampled every 0.1 s.

    The runs' TMPDIR (where PGPASSFILE dirs go) is private to this test.
    """
    db1 = fresh_pg[0]
    scratch = tmp_path / "scratch"
    env = run_env(db1, scratch)
    try:
        to_head(db1, scratch)
        # Enough rows that pg_dump runs for a second or more: the sampler (one `ps` every 0.1 s, slower under load)
        # must see it, or the test proves nothing (50,000 rows were dumped between two samples in a loaded CI run).
        db1.execute(
            "insert into companies (ticker, company_name) select 'S' || i, md5(i::text) from generate_series(1, 400000) as i",
            dbname="equities",
        )
        project = slow_project(tmp_path, "fa11ed000006", HEAD, 4)
        backup_args = {**db_args(db1), "backup_root": str(tmp_path / "backups"), "environment": "prod", "host": "db1", "name": "equities", "revision": HEAD}
        jobs = [
            start_module("alembic_upgrade", {"config": str(project.ini), **db_args(db1)}, env=env),
            start_module("db_backup", backup_args, env=env),
        ]
        samples = seen_pgpass = 0
        seen: dict[str, int] = {"pg_dump": 0, "pg_restore": 0, "module sessions": 0}
        try:
            while any(job.running() for job in jobs):
                listing = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True).stdout
                assert_no_secret(listing, fresh_pg)
                samples += 1
                for name in ("pg_dump", "pg_restore"):
                    seen[name] += name in listing
                # With pipelining no AnsiballZ_<module>.py file name shows in ps: the modules are seen by their sessions.
                seen["module sessions"] += bool(fleet_sessions(db1, "equities"))
                seen_pgpass += bool(pgpass_dirs(scratch))
                time.sleep(0.1)
            results = [(job.wait(), job.result()) for job in jobs]
        finally:
            for job in jobs:
                if job.running():
                    job.kill()
        print("argv samples: %d, seen %s, PGPASSFILE dir present in %d" % (samples, seen, seen_pgpass))
        for run, _result in results:
            assert run.rc == 0, run.output[-3000:]
            assert_no_secret(run.output, fresh_pg)
        assert seen["module sessions"] and seen["pg_dump"], "the sampler never saw the modules run"
        assert seen_pgpass == 0, "a password file appeared in TMPDIR: it must live in memory only"
        assert pgpass_dirs(scratch) == [], "a PGPASSFILE directory was left behind"
        assert list((scratch / "ansible-remote").iterdir()) == []
        upgrade, backup = results[0][1], results[1][1]
        assert upgrade["after"] == [project.revision]
        manifest = Path(backup["manifest_path"]).read_text()
        assert_no_secret(manifest, fresh_pg)
    finally:
        wipe(scratch)


# -- 7. a forgotten -l ----------------------------------------------------------------------
def test_migrate_refuses_hosts_of_two_environments_and_touches_nothing(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    inventory = make_inventory(tmp_path, fresh_pg, environment="prod")
    dev = yaml.safe_load((REPO / "inventory" / "group_vars" / "dev.yml").read_text())
    (inventory / "group_vars" / "dev.yml").write_text(yaml.safe_dump(dev, sort_keys=False))
    (inventory / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"children": {"dev": {"hosts": {"db1": None}}, "prod": {"hosts": {"db2": None}}}}}, sort_keys=False)
    )
    refused = playbook(REPO / "migrate.yml", inventory, env=password_env(fresh_pg))
    assert refused.rc != 0, refused.output[-3000:]
    assert_no_secret(refused.output, fresh_pg)
    text = " ".join(refused.output.split())
    assert "span the environments dev, prod" in text and "run one environment at a time, e.g. -l prod" in text, refused.output[-3000:]
    for cluster in fresh_pg:
        for dbname in ("equities", "algorithms"):
            assert tables_of(cluster, dbname) == set()
    assert not (tmp_path / "backups").exists()
    assert "Preflight" not in refused.output

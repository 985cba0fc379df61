"""Real-server tests for tests/support/pgcluster.py (no mocks).

Never put a password into an ``assert`` expression: on failure pytest would
print it.  Leak checks compare and report only *labels*.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from .pgcluster import PgCluster, pg_bin_dir, start_cluster


def _leaked(text: str, clusters: list[PgCluster]) -> list[str]:
    """Labels of the secrets (never the secrets themselves) found in ``text``."""
    return [
        f"{c.name}:{label}"
        for c in clusters
        for label, secret in (
            ("superuser_password", c.superuser_password),
            ("app_password", c.app_password),
        )
        if secret in text
    ]


def _ps_args() -> str:
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout


def _postgres_processes_under(base_dir: Path) -> list[str]:
    """ps lines (incl. zombies) of postgres processes whose args mention base_dir."""
    out = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if str(base_dir) in line]


@pytest.fixture(scope="module")
def clusters() -> Iterator[list[PgCluster]]:
    started: list[PgCluster] = []
    try:
        for name in ("alpha", "beta"):
            started.append(start_cluster(name))
        yield started
    finally:
        for c in started:
            c.destroy()
        for c in started:
            assert not c.base_dir.exists()
            assert _postgres_processes_under(c.base_dir) == []


def test_pg_bin_dir_has_server_binaries() -> None:
    bindir = pg_bin_dir()
    for tool in ("initdb", "pg_ctl", "postgres"):
        assert os.access(bindir / tool, os.X_OK), tool


def test_clusters_are_distinct_and_password_free_repr(clusters: list[PgCluster]) -> None:
    a, b = clusters
    assert a.port != b.port
    assert a.base_dir != b.base_dir
    assert a.superuser_password != b.superuser_password
    assert a.app_password != b.app_password
    assert _leaked(repr(clusters), clusters) == []
    for c in clusters:
        assert c.url("fleet") == f"postgresql+psycopg2://migrator@127.0.0.1:{c.port}/fleet"
        assert c.url("fleet", user="postgres").startswith("postgresql+psycopg2://postgres@")
        assert _leaked(c.url("fleet"), clusters) == []
        # pwfile is deleted right after initdb
        assert not (c.base_dir / "pwfile").exists()


def test_app_user_scram_login_over_tcp(clusters: list[PgCluster]) -> None:
    for c in clusters:
        conn = c.connect(superuser=False)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT current_user, inet_server_addr()::text, inet_server_port()")
                assert cur.fetchone() == ("migrator", "127.0.0.1/32", c.port)
                cur.execute("SHOW password_encryption")
                assert cur.fetchone() == ("scram-sha-256",)
        finally:
            conn.close()
        rows = c.execute(
            "SELECT rolcanlogin, rolcreatedb, rolsuper, left(rolpassword, 14) FROM pg_authid WHERE rolname = %s",
            (c.app_user,),
        )
        assert rows == [(True, True, False, "SCRAM-SHA-256$")]
        hba = c.execute("SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE error IS NULL")
        assert hba == [("scram-sha-256",)]


def test_sqlalchemy_url_with_out_of_band_password(clusters: list[PgCluster]) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    c = clusters[0]
    engine = sqlalchemy.create_engine(c.url("postgres"), connect_args={"password": c.app_password})
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT current_user")).scalar() == "migrator"
    finally:
        engine.dispose()


def test_wrong_password_rejected(clusters: list[PgCluster]) -> None:
    for c in clusters:
        for user in (c.app_user, c.superuser):
            with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
                psycopg2.connect(
                    host=c.host,
                    port=c.port,
                    dbname="postgres",
                    user=user,
                    password="definitely-wrong",
                    connect_timeout=5,
                )


def test_passwords_do_not_cross_clusters(clusters: list[PgCluster]) -> None:
    a, b = clusters
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(
            host=b.host,
            port=b.port,
            dbname="postgres",
            user=b.app_user,
            password=a.app_password,
            connect_timeout=5,
        )


def test_create_reset_drop_database(clusters: list[PgCluster]) -> None:
    for c in clusters:
        c.create_database("fleet_test")
        assert c.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
            ("fleet_test",),
        ) == [("migrator",)]

        conn = c.connect("fleet_test", superuser=False)
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE TABLE marker (id int)")
        finally:
            conn.close()
        assert c.execute("SELECT to_regclass('marker') IS NOT NULL", dbname="fleet_test") == [(True,)]

        # reset must work even with an open session on the database (FORCE).
        holder = c.connect("fleet_test", superuser=False)
        try:
            c.reset_database("fleet_test")
        finally:
            holder.close()
        assert c.execute("SELECT to_regclass('marker') IS NULL", dbname="fleet_test") == [(True,)]
        assert c.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
            ("fleet_test",),
        ) == [("migrator",)]

        c.create_database("owned_by_postgres", owner="postgres")
        assert c.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
            ("owned_by_postgres",),
        ) == [("postgres",)]

        for name in ("fleet_test", "owned_by_postgres"):
            c.drop_database(name)
            c.drop_database(name)  # IF EXISTS: idempotent
        assert c.execute("SELECT datname FROM pg_database WHERE datname IN ('fleet_test', 'owned_by_postgres')") == []


def test_passwords_not_in_process_list_or_logs(clusters: list[PgCluster]) -> None:
    # Hold live sessions so backend process titles are part of the listing.
    conns = [c.connect(superuser=s) for c in clusters for s in (True, False)]
    try:
        ps_out = _ps_args()
        for c in clusters:
            assert any(str(c.data_dir) in line for line in ps_out.splitlines()), c.name
        assert _leaked(ps_out, clusters) == []
    finally:
        for conn in conns:
            conn.close()
    for c in clusters:
        # failed logins from earlier tests are logged, but never with a secret
        assert _leaked(c.log_text(), clusters) == []


def test_stop_start_and_destroy() -> None:
    c = start_cluster("gamma")
    try:
        assert c.base_dir.is_dir()
        pid = c.postmaster_pid
        assert pid is not None
        c.stop()
        c.stop()  # already stopped: tolerated
        assert c.postmaster_pid is None
        assert _postgres_processes_under(c.base_dir) == []
        c.start()
        assert c.execute("SELECT 1") == [(1,)]
        assert c.log_text()
    finally:
        c.destroy()
    assert not c.base_dir.exists()
    deadline = time.monotonic() + 5
    while _postgres_processes_under(c.base_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _postgres_processes_under(c.base_dir) == []
    c.destroy()  # idempotent


@pytest.mark.skipif(os.geteuid() != 0, reason="only relevant when running as root")
def test_unreachable_root_dir_is_rejected_clearly(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir()
    os.chmod(tmp_path, 0o700)
    with pytest.raises(RuntimeError, match="not traversable"):
        start_cluster("delta", root=private)
    assert list(private.iterdir()) == []


# ---------------------------------------------------------------- the command line (pgcluster_cli)
def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m support.pgcluster_cli`` as the molecule scenario does (PYTHONPATH=tests)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = [sys.executable, "-m", "support.pgcluster_cli", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)


def test_cli_start_connect_stop_and_stop_again(tmp_path: Path) -> None:
    state_file, password_file = tmp_path / "state.json", tmp_path / "password"
    started = _cli("start", "--state", state_file, "--password-file", password_file, "--database", "equities", "--name", "cli-test")
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    base_dir = Path(state.get("base_dir", tmp_path / "none"))
    try:
        assert started.returncode == 0, started.stderr
        password = password_file.read_text().strip()
        # The password is in its own 0600 file only: not in the record, not in what start printed.
        for path in (state_file, password_file):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        places = {"state file": state_file.read_text(), "stdout": started.stdout, "stderr": started.stderr}
        has_password = len(password) >= 16  # compared, never shown: pytest would print it in a failed assert
        assert has_password
        assert [label for label, text in places.items() if password in text] == []
        assert json.loads(started.stdout)["changed"] is True
        assert state["base_dir"] == json.loads(started.stdout)["base_dir"]
        assert base_dir.name.startswith("fleet-pg-cli-test-")
        assert state["socket_dir"] == str(base_dir / "sock")
        assert (Path(state["bin_dir"]) / "pg_ctl").exists()
        assert (state["host"], state["superuser"], state["app_user"], state["databases"]) == ("127.0.0.1", "postgres", "migrator", ["equities"])
        assert state["password_file"] == str(password_file)

        # A second start on the same record refuses, and leaves the first cluster alone.
        again = _cli("start", "--state", state_file, "--password-file", tmp_path / "other", "--name", "cli-test")
        assert (again.returncode, again.stdout) == (1, ""), again.stderr
        assert "exists already" in again.stderr

        conn = psycopg2.connect(host=state["host"], port=state["port"], dbname="equities", user=state["app_user"], password=password, connect_timeout=10)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT current_user, pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
                assert cur.fetchone() == ("migrator", "migrator")
        finally:
            conn.close()
    finally:
        stopped = _cli("stop", "--state", state_file)
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["changed"] is True
    assert not base_dir.exists() and not state_file.exists() and not password_file.exists()
    assert _postgres_processes_under(base_dir) == []

    # Nothing recorded any more: stop is a no-op that succeeds (molecule's destroy runs before any prepare).
    stopped_again = _cli("stop", "--state", state_file)
    assert (stopped_again.returncode, stopped_again.stderr) == (0, "")
    assert json.loads(stopped_again.stdout) == {"changed": False, "state": str(state_file), "removed": []}


def test_cli_stop_removes_only_what_a_cluster_made(tmp_path: Path) -> None:
    # A start killed before initdb leaves a record and a bare cluster directory: stop removes both.
    bare = tmp_path / "fleet-pg-bare"
    (bare / "data").mkdir(parents=True)
    (bare / "log").touch()
    record = tmp_path / "bare.json"
    record.write_text(json.dumps({"base_dir": str(bare), "bin_dir": str(pg_bin_dir())}))
    stopped = _cli("stop", "--state", record)
    assert stopped.returncode == 0, stopped.stderr
    assert not bare.exists() and not record.exists()

    # A record naming a directory that holds anything else is refused, and nothing is touched.
    other = tmp_path / "other"
    (other / "data").mkdir(parents=True)
    (other / "notes.txt").write_text("mine\n")
    record.write_text(json.dumps({"base_dir": str(other)}))
    refused = _cli("stop", "--state", record)
    assert refused.returncode == 1
    assert "notes.txt" in refused.stderr and "not removing it" in refused.stderr
    assert (other / "notes.txt").exists() and record.exists()

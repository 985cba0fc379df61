"""Throwaway PostgreSQL clusters for the test suite.

Each cluster lives in its own base directory (``data/``, ``sock/``, ``log``),
listens on 127.0.0.1 on a free TCP port, and uses scram-sha-256 for every
connection.  Passwords are random per cluster and are never printed, logged or
placed on a command line:

* the superuser password reaches ``initdb`` through a ``--pwfile`` that only the
  server user can read and that is deleted right after ``initdb`` returns;
* the application role password is sent as a client-side computed SCRAM
  verifier (so not even the server log could ever contain the clear text);
* connections pass the password as a keyword argument to ``psycopg2.connect``;
* ``PgCluster.__repr__`` hides both passwords.

PostgreSQL refuses to run as root.  When the tests run as root, ``initdb`` and
``pg_ctl`` are run through ``runuser -u postgres --`` and the cluster files are
owned by the ``postgres`` user; the base directory must therefore be traversable
by that user (the default, a ``fleet-pg-*`` directory created with mode 0755
under the system temp dir, is; pytest's ``tmp_path`` is *not*).

``pgcluster_cli`` beside this file starts and stops these clusters from the
command line, for callers outside pytest (the molecule ``postgres`` scenario).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

__all__ = ["SERVER_USER", "PgCluster", "pg_bin_dir", "start_cluster"]

#: OS user that owns and runs the server when the tests run as root.
SERVER_USER = "postgres"
#: Package that provides the server binaries (named in error messages).
SERVER_PACKAGE = "postgresql-15"

_CMD_TIMEOUT = 60  # seconds for initdb / pg_ctl invocations
_START_TIMEOUT = 30  # seconds pg_ctl -w waits for the server to accept connections
_START_ATTEMPTS = 3  # retries with a fresh port if the chosen one was taken meanwhile

# Clusters started (and not yet stopped) by this process; stopped at interpreter
# exit as a last-resort safety net so no postmaster outlives the test run.
_LIVE: dict[Path, PgCluster] = {}


def pg_bin_dir() -> Path:
    """Directory holding the PostgreSQL server binaries (initdb, pg_ctl, postgres).

    Uses ``pg_config --bindir``; falls back to the newest
    ``/usr/lib/postgresql/<major>/bin``.  Raises RuntimeError if none is usable.
    """
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                check=True,
                timeout=_CMD_TIMEOUT,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            candidates.append(Path(out))

    def _major(p: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/([0-9.]+)/bin$", p)
        return tuple(int(x) for x in m.group(1).split(".") if x) if m else (0,)

    candidates.extend(Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True))
    for cand in candidates:
        if all(os.access(cand / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return cand
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found via "
        "`pg_config --bindir` or /usr/lib/postgresql/*/bin; install the "
        f"{SERVER_PACKAGE} package (e.g. `apt-get install {SERVER_PACKAGE}`)."
    )


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _server_ids() -> tuple[int, int] | None:
    """(uid, gid) to chown cluster files to, or None when no switch is needed."""
    if not _running_as_root():
        return None
    try:
        pw = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise RuntimeError(
            f"running as root but there is no {SERVER_USER!r} OS user to run the server as; install {SERVER_PACKAGE} (it creates that user)."
        ) from None
    return pw.pw_uid, pw.pw_gid


def _chown(path: Path, ids: tuple[int, int] | None) -> None:
    if ids is not None:
        os.chown(path, *ids)


def _check_traversable(path: Path, ids: tuple[int, int] | None) -> None:
    """Fail early (clearly) if the server user cannot reach ``path``."""
    if ids is None:
        return
    uid, gid = ids
    for d in [path, *path.parents]:
        st = d.stat()
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            raise RuntimeError(
                f"{d} (mode {stat.filemode(st.st_mode)}) is not traversable by the "
                f"{SERVER_USER!r} user, so a cluster cannot live under {path}; use a "
                "directory such as one from tempfile.mkdtemp() chmod 0755 (note: "
                "pytest's tmp_path is 0700 and does not work)."
            )


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


@contextlib.contextmanager
def _adopt_orphans() -> Iterator[None]:
    """Make this process a child subreaper (Linux) for the duration of the block.

    ``pg_ctl start`` detaches the postmaster, which is then reparented to the
    nearest subreaper, normally PID 1.  In containers/VMs whose PID 1 never reaps
    (as on this machine) a stopped postmaster would linger as a ``<defunct>``
    zombie.  Adopting it lets :meth:`PgCluster.stop` reap it with ``waitpid``.
    Best effort: silently does nothing where prctl is unavailable.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
        prev = ctypes.c_int(0)
        if prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(prev), 0, 0, 0) != 0:
            raise OSError
        if not prev.value and prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError
    except (OSError, AttributeError):
        yield
        return
    try:
        yield
    finally:
        if not prev.value:
            prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our (adopted) child; no-op otherwise."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


@dataclass(kw_only=True)
class PgCluster:
    """A throwaway PostgreSQL cluster rooted at ``base_dir``.

    ``base_dir`` holds ``data/`` (PGDATA), ``sock/`` (unix socket dir) and ``log``.
    Use :func:`start_cluster` to create one; construct directly only to re-attach
    to an initialised cluster.
    """

    name: str
    base_dir: Path
    port: int
    host: str = "127.0.0.1"
    superuser: str = "postgres"
    superuser_password: str = field(repr=False)
    app_user: str = "migrator"
    app_password: str = field(repr=False)
    bin_dir: Path = field(default_factory=pg_bin_dir, repr=False)

    # ------------------------------------------------------------------ paths
    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "sock"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "log"

    @property
    def postmaster_pid(self) -> int | None:
        """PID from ``data/postmaster.pid`` (None if the server is not running)."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            return int(first.strip())
        except (FileNotFoundError, IndexError, ValueError):
            return None

    # ---------------------------------------------------------- subprocesses
    def _run(self, argv: Sequence[str | os.PathLike[str]], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [os.fspath(a) for a in argv]
        if _running_as_root():
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.setdefault("LC_ALL", "C")
        proc = subprocess.run(
            cmd,
            cwd=self.base_dir,  # the server user may not be able to read the caller's cwd
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_CMD_TIMEOUT,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"[{self.name}] {' '.join(cmd)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}\n"
                f"server log (tail):\n{self.log_text()[-4000:]}"
            )
        return proc

    def _write_settings(self) -> None:
        """(Re)write the include file holding our per-cluster server settings."""
        conf = self.data_dir / "fleet.conf"
        conf.write_text(
            "# written by tests/support/pgcluster.py\n"
            f"port = {self.port}\n"
            f"listen_addresses = '{self.host}'\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "password_encryption = 'scram-sha-256'\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "max_connections = 50\n"
            "shared_buffers = 32MB\n"
            "log_min_messages = warning\n"
            "log_statement = 'none'\n"
            "log_min_error_statement = panic\n"  # never echo statements into the log
            "logging_collector = off\n"
        )
        conf.chmod(0o600)
        _chown(conf, _server_ids())

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the server (pg_ctl -w); no-op if it is already running."""
        pid = self.postmaster_pid
        if pid is not None and _pid_alive(pid):
            return
        with _adopt_orphans():
            self._run(
                [
                    self.bin_dir / "pg_ctl",
                    "-D",
                    self.data_dir,
                    "-l",
                    self.log_file,
                    "-w",
                    "-t",
                    str(_START_TIMEOUT),
                    "start",
                ]
            )
        _LIVE[self.base_dir] = self

    def stop(self) -> None:
        """Stop the server immediately (pg_ctl stop -m immediate); tolerates stopped/missing clusters."""
        _LIVE.pop(self.base_dir, None)
        pid = self.postmaster_pid
        if pid is None:
            return
        proc = self._run(
            [self.bin_dir / "pg_ctl", "-D", self.data_dir, "-m", "immediate", "-w", "stop"],
            check=False,
        )
        if proc.returncode != 0 and pid is not None and _pid_alive(pid):
            raise RuntimeError(f"[{self.name}] pg_ctl stop failed (rc={proc.returncode}) and postmaster {pid} is still alive:\n{proc.stdout}{proc.stderr}")
        # pg_ctl -w returns once postmaster.pid is gone; wait for the process too
        # and reap it if it was adopted by this process (see _adopt_orphans).
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        _reap(pid)

    def leave_running(self) -> None:
        """Take the cluster off the stop-at-exit list, so it outlives this process.

        For a process that starts a cluster for others to use and then exits
        (``pgcluster_cli start``); whoever stops it later uses :meth:`stop`.
        """
        _LIVE.pop(self.base_dir, None)

    def destroy(self) -> None:
        """Stop the server and remove ``base_dir`` entirely."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # ------------------------------------------------------------ SQL access
    def connect(self, dbname: str = "postgres", *, superuser: bool = True) -> psycopg2.extensions.connection:
        """Autocommit psycopg2 connection over TCP (scram) as the superuser or the app user."""
        user, password = (self.superuser, self.superuser_password) if superuser else (self.app_user, self.app_password)
        conn = psycopg2.connect(
            host=self.host,
            port=self.port,
            dbname=dbname,
            user=user,
            password=password,
            connect_timeout=10,
            application_name=f"fleet-tests-{self.name}",
        )
        conn.autocommit = True
        return conn

    def execute(self, sql_text: str | sql.Composable, params: Any = None, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement as the superuser; return the fetched rows (or [])."""
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql_text, params)
                return list(cur.fetchall()) if cur.description is not None else []
        finally:
            conn.close()

    def create_database(self, name: str, owner: str | None = None) -> None:
        self.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner or self.app_user)))

    def drop_database(self, name: str) -> None:
        self.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def reset_database(self, name: str) -> None:
        """Drop (forcibly) and recreate ``name`` owned by the app user."""
        self.drop_database(name)
        self.create_database(name, owner=self.app_user)

    def url(self, dbname: str, *, user: str | None = None) -> str:
        """Password-free SQLAlchemy URL, e.g. ``postgresql+psycopg2://migrator@127.0.0.1:5432/db``.

        Supply the password out of band (e.g. ``connect_args={"password": ...}``).
        """
        return f"postgresql+psycopg2://{quote(user or self.app_user, safe='')}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def _initdb(cluster: PgCluster, ids: tuple[int, int] | None) -> None:
    pwfile = cluster.base_dir / "pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            if ids is not None:
                os.fchown(fd, *ids)
            os.write(fd, (cluster.superuser_password + "\n").encode())
        finally:
            os.close(fd)
        cluster._run(
            [
                cluster.bin_dir / "initdb",
                "-D",
                cluster.data_dir,
                f"--username={cluster.superuser}",
                f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ]
        )
    finally:
        pwfile.unlink(missing_ok=True)
    with (cluster.data_dir / "postgresql.conf").open("a") as fh:
        fh.write("\ninclude = 'fleet.conf'\n")


def start_cluster(name: str, *, root: Path | None = None, on_create: Callable[[PgCluster], None] | None = None) -> PgCluster:
    """initdb + start a fresh cluster and create the LOGIN CREATEDB app role.

    ``root``: parent directory for the cluster's base dir (default: the system temp
    dir).  When running as root it must be traversable by the ``postgres`` user.
    ``on_create``: called with the cluster as soon as its base dir exists, before
    initdb, so a caller can record where it is before anything can be left
    running (the port may still change if the first one is taken meanwhile).
    No application databases are created.
    """
    bin_dir = pg_bin_dir()
    ids = _server_ids()
    parent = Path(root) if root is not None else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40]
    base_dir = Path(tempfile.mkdtemp(prefix=f"fleet-pg-{safe}-", dir=parent)).resolve()
    cluster = PgCluster(
        name=name,
        base_dir=base_dir,
        port=_free_port(),
        superuser_password=secrets.token_urlsafe(16),
        app_password=secrets.token_urlsafe(16),
        bin_dir=bin_dir,
    )
    try:
        if on_create is not None:
            on_create(cluster)
        base_dir.chmod(0o755)
        _check_traversable(base_dir, ids)
        for d in (cluster.data_dir, cluster.socket_dir):
            d.mkdir(mode=0o700)
            _chown(d, ids)
        cluster.log_file.touch(mode=0o600)
        _chown(cluster.log_file, ids)

        _initdb(cluster, ids)

        for attempt in range(1, _START_ATTEMPTS + 1):
            cluster._write_settings()
            try:
                cluster.start()
                break
            except RuntimeError:
                # Port grabbed by someone else between _free_port() and bind()?
                if attempt == _START_ATTEMPTS or "could not bind" not in cluster.log_text():
                    raise
                cluster.stop()
                cluster.port = _free_port()

        conn = cluster.connect()
        try:
            # Send a client-side computed SCRAM verifier, never the clear text.
            verifier = psycopg2.extensions.encrypt_password(cluster.app_password, cluster.app_user, conn, "scram-sha-256")
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(sql.Identifier(cluster.app_user), sql.Literal(verifier)))
        finally:
            conn.close()
    except BaseException:
        cluster.destroy()
        raise
    return cluster


@atexit.register
def _stop_leftovers() -> None:
    for cluster in list(_LIVE.values()):
        try:
            cluster.stop()
        except Exception:  # pragma: no cover - best effort at interpreter exit
            pass

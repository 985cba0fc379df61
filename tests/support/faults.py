"""Helpers for the fault tests: background ansible runs, slow revisions, polling.

Background runs use the same argv and environment as ``support.ansible_run``
(``module`` / ``playbook``), but are started with ``Popen`` in a session of
their own so a test can interfere with them while they run, or kill their whole
process group. Passwords reach them through environment variables that the
module arguments look up, never through the command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from support.ansible_run import BIN, REPO, Run, _env, module_argv
from support.pgcluster import PgCluster

T = TypeVar("T")

PASSWORD_VARIABLE = "FLEET_FAULT_PASSWORD"
PASSWORD_LOOKUP = "{{ lookup('ansible.builtin.env', '%s') }}" % PASSWORD_VARIABLE


@dataclass
class Background:
    """An ansible / ansible-playbook process running in its own session."""

    argv: list[str]
    proc: subprocess.Popen[str]
    stdout: IO[str]
    stderr: IO[str]
    started: float = field(default_factory=time.monotonic)
    run: Run | None = None
    stdout_text: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def tree(self) -> list[int]:
        """This run's processes: ansible, its forked worker, the shell and the module's python."""
        return [self.proc.pid, *descendants(self.proc.pid)]

    def kill(self) -> None:
        """SIGKILL every process of the run, as a dying control node would.

        Killing the process group is not enough: ansible's worker calls setsid(),
        so the module runs in a session (and group) of its own and would go on.
        """
        self._signal_tree()
        self.wait(timeout=30)

    def _signal_tree(self) -> None:
        for pid in self.tree():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def wait(self, timeout: float = 180) -> Run:
        if self.run is None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_tree()
                self.proc.wait(timeout=30)
                raise
            self.stdout.seek(0)
            self.stderr.seek(0)
            out, err = self.stdout.read(), self.stderr.read()
            self.stdout.close()
            self.stderr.close()
            self.run = Run(argv=self.argv, rc=self.proc.returncode, output=out + err)
            self.stdout_text = out
        return self.run

    def result(self, timeout: float = 180) -> dict[str, Any]:
        """The parsed module result (ad-hoc runs), {} when there is none."""
        self.wait(timeout)
        return parse_module_result(self.stdout_text)


def descendants(pid: int) -> list[int]:
    """All live descendants of pid, from /proc (parents before children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path("/proc/%d/cmdline" % pid).read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def module_process(job: Background) -> int:
    """The pid of the module's own python (not ansible's controller or worker, not the shell).

    With pipelining (ansible.cfg) its command line is the bare interpreter: no AnsiballZ_<module>.py file name.
    """
    for pid in descendants(job.pid):
        argv = cmdline(pid)
        if argv and "python" in Path(argv[0]).name and not any("bin/ansible" in part for part in argv):
            return pid
    raise AssertionError("no module process under %d: %s" % (job.pid, [cmdline(p) for p in descendants(job.pid)]))


def files_holding(secret: str, *roots: Path) -> list[str]:
    """Every file under roots whose bytes contain secret (as written: the module payload holds it in clear)."""
    found: list[str] = []
    needle = secret.encode()
    for root in roots:
        if not root.exists():
            continue
        for path in root.rglob("*"):
            with contextlib.suppress(OSError):
                if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                    found.append(str(path))
    return found


def parse_module_result(stdout: str) -> dict[str, Any]:
    marker = re.search(r"^localhost \| [A-Z!]+ => \{", stdout, re.M)
    if not marker:
        return {}
    return dict(json.JSONDecoder().raw_decode(stdout[marker.end() - 1 :])[0])


def _start(argv: list[str], env: dict[str, str]) -> Background:
    stdout = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
    stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, text=True, start_new_session=True)
    return Background(argv=argv, proc=proc, stdout=stdout, stderr=stderr)


def start_module(name: str, module_args: Mapping[str, Any], *flags: str, env: Mapping[str, str] | None = None) -> Background:
    """``support.ansible_run.module`` in the background."""
    argv, password_env = module_argv(name, module_args, *flags)
    extra = {"ANSIBLE_CALLBACK_RESULT_FORMAT": "json", **password_env}
    extra.update(env or {})
    return _start(argv, _env(extra))


def run_module(
    name: str, module_args: Mapping[str, Any], *flags: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> tuple[Run, dict[str, Any]]:
    """Like ``support.ansible_run.module``, with the environment this file's runs use."""
    job = start_module(name, module_args, *flags, env=env)
    return job.wait(timeout), job.result()


def start_playbook(playbook_path: str | Path, inventory: str | Path, *args: str, env: Mapping[str, str] | None = None) -> Background:
    """``support.ansible_run.playbook`` in the background."""
    argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook_path), *args]
    return _start(argv, _env(env))


# -- connection arguments and private temp dirs ------------------------------------
def db_args(cluster: PgCluster, dbname: str = "equities") -> dict[str, Any]:
    """url + a password that is looked up from the environment (never on any argv)."""
    return {"url": "postgresql://%s@127.0.0.1:%d/%s" % (cluster.app_user, cluster.port, dbname), "password": PASSWORD_LOOKUP}


def run_env(cluster: PgCluster, scratch: Path) -> dict[str, str]:
    """The password variable, and private temp dirs so leftovers can be told apart from other runs'."""
    tmp = scratch / "tmp"
    remote = scratch / "ansible-remote"
    for directory in (tmp, remote):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return {PASSWORD_VARIABLE: cluster.app_password, "TMPDIR": str(tmp), "ANSIBLE_REMOTE_TEMP": str(remote)}


def pgpass_dirs(scratch: Path) -> list[Path]:
    return sorted((scratch / "tmp").glob("fleet-pgpass-*"))


def wipe(scratch: Path) -> None:
    """Remove a scratch area (a killed run may have left a password file in it)."""
    shutil.rmtree(scratch, ignore_errors=True)


# -- projects with slow revisions ------------------------------------------------
SLOW_REVISION = '''"""{message}

Revision ID: {rev}
Revises: {down}
"""
from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None

# The test removes this file when it wants the revision to run at full speed.
SLOW_MARKER = {marker!r}


def upgrade() -> None:
{upgrade}
    if os.path.exists(SLOW_MARKER):
        op.execute("SELECT pg_sleep({seconds})")


def downgrade() -> None:
{downgrade}
'''


@dataclass
class SlowProject:
    ini: Path
    marker: Path
    revision: str

    def fast(self) -> None:
        """From now on the slow revision does not sleep."""
        self.marker.unlink(missing_ok=True)


def slow_project(
    root: Path,
    rev: str,
    down: str,
    seconds: float,
    upgrade: str = "    pass",
    downgrade: str = '    op.execute("SELECT 1")  # the upgrade changes no schema: nothing to undo',
    message: str = "Slow revision for fault tests",
) -> SlowProject:
    """A copy of the equities project with one extra revision that runs `upgrade`, then sleeps."""
    target = root / ("equities_%s" % rev)
    shutil.copytree(REPO / "migrations" / "equities", target, ignore=shutil.ignore_patterns("__pycache__"))
    marker = root / ("slow-%s" % rev)
    marker.write_text("sleep\n")
    text = SLOW_REVISION.format(message=message, rev=rev, down=down, marker=str(marker), upgrade=upgrade, downgrade=downgrade, seconds=seconds)
    (target / "versions" / ("20260101_0000_%s_fault.py" % rev)).write_text(text)
    return SlowProject(ini=target / "alembic.ini", marker=marker, revision=rev)


# -- polling -------------------------------------------------------------------
def wait_for(what: str, probe: Callable[[], T], timeout: float, interval: float = 0.1) -> T:
    """Poll until probe() is truthy; return its value, or fail saying what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def sessions(cluster: PgCluster, dbname: str, where: str, params: Any = None) -> list[tuple[Any, ...]]:
    """(pid, application_name, state, query) of the sessions on dbname matching `where`."""
    return cluster.execute(
        "select pid, application_name, state, query from pg_stat_activity where datname = %%s and pid <> pg_backend_pid() and (%s)" % where,
        (dbname, *(params or ())),
    )


def sleeping(cluster: PgCluster, dbname: str) -> list[tuple[Any, ...]]:
    return sessions(cluster, dbname, "query ilike '%%pg_sleep%%' and state = 'active'")


def fleet_sessions(cluster: PgCluster, dbname: str, pattern: str = "alembic-fleet%") -> list[tuple[Any, ...]]:
    return sessions(cluster, dbname, "application_name like %s", (pattern,))

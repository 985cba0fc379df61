"""Clusters, passwords, commands and inventories of one benchmark run.

The clusters come from the test suite's tests/support/pgcluster.py and the ansible runs from
tests/support/ansible_run.py (reused, not copied: the benchmark runs the modules and playbooks exactly as the
tests do). Passwords never reach a command line: the raw tools read a 0600 PGPASSFILE, the playbooks and modules
look up BENCH_<HOST>_PASSWORD in their environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from psycopg2 import sql

REPO = Path(__file__).resolve().parents[1]
# The test suite's helpers are imported as `support`, as the tests do.
sys.path.insert(0, str(REPO / "tests"))

from support.ansible_run import BIN, Run, module, playbook, write_yaml  # noqa: E402
from support.faults import Background, sessions, start_module, wait_for  # noqa: E402
from support.pgcluster import PgCluster, start_cluster  # noqa: E402

__all__ = [
    "BIN",
    "REPO",
    "Background",
    "BenchError",
    "Clusters",
    "PgCluster",
    "Placement",
    "Run",
    "Timed",
    "ansible_module",
    "ansible_playbook",
    "clone",
    "create_empty",
    "drop",
    "libpq_url",
    "load_vars",
    "password_lookup",
    "require",
    "run_timed",
    "sessions",
    "shell_timed",
    "spread",
    "start_module",
    "tool_env",
    "wait_for",
    "write_inventory",
]

# A 1 GB dump or restore takes minutes; nothing the benchmark runs should take hours.
LONG = 4 * 3600.0


class BenchError(RuntimeError):
    """A run that should have succeeded did not: the section stops and the report says why."""


class Clusters:
    """Throwaway PostgreSQL 15 clusters pg1..pgN, started on demand, all stopped at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.items: list[PgCluster] = []
        self.pgpass = root / "pgpass"

    def ensure(self, count: int) -> list[PgCluster]:
        while len(self.items) < count:
            host = self.host(len(self.items))
            started = time.monotonic()
            self.items.append(start_cluster("bench-%s" % host, root=self.root / "clusters"))
            self._write_pgpass()
            print("  started cluster %s on port %d (%.1f s)" % (host, self.items[-1].port, time.monotonic() - started), flush=True)
        return self.items[:count]

    @staticmethod
    def host(index: int) -> str:
        return "pg%d" % (index + 1)

    def password_env(self) -> dict[str, str]:
        """BENCH_PG1_PASSWORD=..., what the inventories and ad-hoc module arguments look up."""
        return {password_variable(self.host(i)): cluster.app_password for i, cluster in enumerate(self.items)}

    def _write_pgpass(self) -> None:
        # Created 0600 before anything is written: libpq ignores a pgpass file that others can read.
        fd = os.open(self.pgpass, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            for cluster in self.items:
                password = cluster.app_password.replace("\\", "\\\\").replace(":", "\\:")
                out.write("%s:%d:*:%s:%s\n" % (cluster.host, cluster.port, cluster.app_user, password))

    def stop_all(self) -> None:
        for cluster in self.items:
            try:
                cluster.destroy()
            except Exception as exc:  # one cluster that will not stop must not keep the others running
                print("could not stop %s: %s" % (cluster.name, exc), file=sys.stderr)
        self.items.clear()

    def keep(self) -> None:
        """Leave the clusters running after exit (--keep): take them off pgcluster's stop-at-exit list."""
        for cluster in self.items:
            cluster.leave_running()


def password_variable(host: str) -> str:
    return "BENCH_%s_PASSWORD" % host.upper()


def password_lookup(host: str) -> str:
    return "{{ lookup('ansible.builtin.env', '%s') }}" % password_variable(host)


def libpq_url(cluster: PgCluster, dbname: str) -> str:
    """A password-free URL that libpq (pg_dump, pg_restore), SQLAlchemy and alembic-fleet all accept."""
    return "postgresql://%s@%s:%d/%s" % (cluster.app_user, cluster.host, cluster.port, dbname)


# -- databases -----------------------------------------------------------------
def clone(cluster: PgCluster, template: str, name: str) -> None:
    """A copy of template (file-level, fast): every repetition starts from the same data."""
    cluster.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(template), sql.Identifier(cluster.app_user)))


def create_empty(cluster: PgCluster, name: str) -> None:
    cluster.create_database(name, owner=cluster.app_user)


def drop(cluster: PgCluster, *names: str) -> None:
    for name in names:
        cluster.drop_database(name)


# -- commands ------------------------------------------------------------------
@dataclass
class Timed:
    what: str
    seconds: float
    rc: int
    output: str


def tool_env(pgpass: Path, url: str | None = None) -> dict[str, str]:
    """The environment of the raw tools: the pgpass file, the venv's alembic first on PATH, and the target URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "FLEET_", "BENCH_"))}
    env["PGPASSFILE"] = str(pgpass)
    env["PATH"] = "%s:%s" % (BIN, env.get("PATH", ""))
    if url:
        env["BENCH_DATABASE_URL"] = url
    return env


def run_timed(what: str, argv: Sequence[str], env: Mapping[str, str], timeout: float = LONG) -> Timed:
    started = time.perf_counter()
    done = subprocess.run(list(argv), cwd=REPO, env=dict(env), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    return Timed(what, time.perf_counter() - started, done.returncode, done.stdout + done.stderr)


def shell_timed(what: str, script: str, env: Mapping[str, str], timeout: float = LONG) -> Timed:
    """What an operator types, in one bash process: the peer of a whole procedure."""
    return run_timed(what, ["bash", "-euo", "pipefail", "-c", script], env, timeout)


def ansible_playbook(what: str, book: Path, inventory: Path, *args: str, env: Mapping[str, str]) -> Timed:
    started = time.perf_counter()
    run = playbook(book, inventory, *args, env=env, timeout=LONG)
    return Timed(what, time.perf_counter() - started, run.rc, run.output)


def ansible_module(what: str, name: str, args: Mapping[str, Any], env: Mapping[str, str]) -> tuple[Timed, dict[str, Any]]:
    """`ansible localhost -m name -a ...` with the repo's ansible.cfg, as an operator runs a module on its own."""
    started = time.perf_counter()
    run, result = module(name, args, env=env, timeout=LONG)
    return Timed(what, time.perf_counter() - started, run.rc, run.output), result


def require(timed: Timed) -> Timed:
    if timed.rc != 0:
        raise BenchError("%s exited %d:\n%s" % (timed.what, timed.rc, timed.output[-3000:]))
    return timed


# -- inventories -----------------------------------------------------------------
class _VarsLoader(yaml.SafeLoader):
    """Ansible variable files: `!unsafe` (Ansible's "do not template") read as the plain string it marks."""


_VarsLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))  # type: ignore[arg-type]


def load_vars(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(), Loader=_VarsLoader)  # noqa: S506 - a SafeLoader subclass
    return dict(data or {})


@dataclass(frozen=True)
class Placement:
    host: str
    cluster: PgCluster
    databases: tuple[str, ...]


def spread(count: int, clusters: Sequence[PgCluster], prefix: str) -> list[Placement]:
    """count databases <prefix>1, <prefix>2, ... dealt round-robin over the clusters (hosts), as a fleet grows: one
    per host first. The names restart on each host (each host is its own server)."""
    per_host: dict[int, list[str]] = {}
    for i in range(count):
        dbs = per_host.setdefault(i % len(clusters), [])
        dbs.append("%s%d" % (prefix, len(dbs) + 1))
    return [Placement(Clusters.host(i), clusters[i], tuple(dbs)) for i, dbs in sorted(per_host.items())]


def write_inventory(dest: Path, work: Path, placements: Sequence[Placement], ini: Path) -> Path:
    """A `dev` inventory like tests/integration/conftest.py's, with the repo's own dev policy."""
    group_vars = load_vars(REPO / "inventory" / "group_vars" / "all.yml")
    group_vars.update(fleet_project_root=str(REPO), fleet_backup_root=str(work / "backups"), fleet_report_dir=str(work / "reports"))
    # A review cache of its own per inventory: every measurement from empty pays its review (a warm cache is what a
    # second environment over the same files meets, not a first run).
    group_vars.update(fleet_review_cache=str(dest / "review-cache"))
    write_yaml(dest / "group_vars" / "all.yml", group_vars)
    # The repo's dev policy, verbatim.
    shutil.copyfile(REPO / "inventory" / "group_vars" / "dev.yml", dest / "group_vars" / "dev.yml")
    write_yaml(dest / "hosts.yml", {"all": {"children": {"dev": {"hosts": {p.host: None for p in placements}}}}})
    for placement in placements:
        entries = [
            {"name": db, "alembic_ini": str(ini), "url": libpq_url(placement.cluster, db), "password": password_lookup(placement.host)}
            for db in placement.databases
        ]
        write_yaml(dest / "host_vars" / ("%s.yml" % placement.host), {"fleet_databases": entries})
    return dest

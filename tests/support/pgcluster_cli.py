"""Command line for the test suite's throwaway PostgreSQL clusters (support.pgcluster).

For callers that are not pytest, such as the molecule ``postgres`` scenario, which
starts a cluster in one process (prepare) and stops it in another (destroy)::

    PYTHONPATH=tests python -m support.pgcluster_cli start --state STATE --password-file PWFILE \\
        [--database NAME ...] [--name NAME] [--root DIR]
    PYTHONPATH=tests python -m support.pgcluster_cli stop --state STATE

``start`` starts a cluster exactly as ``start_cluster`` does for the tests (initdb
as the ``postgres`` OS user when root, 127.0.0.1 on a free port, scram for every
login, the LOGIN CREATEDB application role), creates the databases owned by that
role and leaves the cluster running.  It writes the application role's password
alone into PWFILE (0600, created, never overwritten) and the connection facts
into STATE (JSON, 0600): name, base_dir, socket_dir, bin_dir, host, port,
superuser, app_user, databases and password_file.  STATE is written as soon as the
cluster's directory exists, so ``stop`` can remove whatever a failed or killed
``start`` left.  The superuser's password is not kept: nothing after ``start``
needs it, so it exists only in that process (and as a verifier in the cluster).

``stop`` stops the cluster STATE names, removes its directory, PWFILE and STATE.
Nothing recorded (no STATE) is not an error: it exits 0, as a molecule destroy
that runs before any prepare needs.

Each command prints one JSON line (``changed`` and where things are, never a
password); an expected failure prints ``pgcluster: <what is wrong>`` on stderr
and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg2

from .pgcluster import PgCluster, pg_bin_dir, start_cluster

__all__ = ["main", "start", "stop"]

#: What a cluster's base dir may hold (see PgCluster); stop removes no directory holding anything else.
_CLUSTER_ENTRIES = frozenset({"data", "sock", "log", "pwfile"})


class CliError(Exception):
    """An expected failure, reported as one line without a traceback."""


def _write_private(path: Path, text: str, *, replace: bool) -> None:
    """Write ``text`` to a new 0600 file; ``replace`` swaps it in atomically, else an existing file is an error."""
    target = path.with_name(path.name + ".tmp") if replace else path
    if replace:
        target.unlink(missing_ok=True)  # left by a process killed between its write and its rename
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"{target} exists already: remove it (or run stop) first") from None
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    if replace:
        os.replace(target, path)


def _state_of(cluster: PgCluster, databases: Sequence[str], password_file: Path) -> dict[str, Any]:
    return {
        "name": cluster.name,
        "base_dir": str(cluster.base_dir),
        "socket_dir": str(cluster.socket_dir),
        "bin_dir": str(cluster.bin_dir),
        "host": cluster.host,
        "port": cluster.port,
        "superuser": cluster.superuser,
        "app_user": cluster.app_user,
        "databases": list(databases),
        "password_file": str(password_file),
    }


def _record(state_file: Path, state: dict[str, Any]) -> None:
    _write_private(state_file, json.dumps(state, indent=2) + "\n", replace=True)


def start(state_file: Path, password_file: Path, *, databases: Sequence[str] = (), name: str = "cli", root: Path | None = None) -> dict[str, Any]:
    """Start a cluster, create ``databases`` and record it; on any failure leave nothing behind."""
    state_file, password_file = state_file.absolute(), password_file.absolute()
    for path in (state_file, password_file):
        if path.exists():
            raise CliError(f"{path} exists already: a cluster may be recorded there; run stop first")

    def record_early(cluster: PgCluster) -> None:
        _record(state_file, _state_of(cluster, [], password_file))

    try:
        cluster = start_cluster(name, root=root, on_create=record_early)
    except BaseException:
        # start_cluster removed its cluster already; the early record names nothing left.
        state_file.unlink(missing_ok=True)
        raise
    try:
        for database in databases:
            cluster.create_database(database)
        _write_private(password_file, cluster.app_password + "\n", replace=False)
        state = _state_of(cluster, databases, password_file)
        _record(state_file, state)
    except BaseException:
        stop(state_file)
        raise
    cluster.leave_running()
    return {"changed": True, "state": str(state_file), **{k: state[k] for k in ("base_dir", "host", "port", "databases")}}


def _read_state(state_file: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CliError(f"{state_file} is not a cluster record ({exc}): remove what it names by hand") from None
    if not isinstance(state, dict) or not isinstance(state.get("base_dir"), str) or not os.path.isabs(state["base_dir"]):
        raise CliError(f"{state_file} names no absolute base_dir: remove what it names by hand")
    return state


def _check_cluster_dir(base_dir: Path) -> None:
    """Refuse to remove a directory that is not (or no longer only) a cluster's."""
    foreign = sorted(entry.name for entry in base_dir.iterdir() if entry.name not in _CLUSTER_ENTRIES)
    if foreign:
        raise CliError(f"{base_dir} holds {', '.join(foreign)}, which no cluster made: not removing it")


def _attach(state: dict[str, Any]) -> PgCluster:
    # Stopping needs no password: pg_ctl acts on the data directory, as the server user.
    base_dir = Path(state["base_dir"])
    return PgCluster(
        name=str(state.get("name") or base_dir.name),
        base_dir=base_dir,
        port=int(state.get("port") or 0),
        superuser_password="",
        app_password="",
        bin_dir=Path(state["bin_dir"]) if state.get("bin_dir") else pg_bin_dir(),
    )


def stop(state_file: Path) -> dict[str, Any]:
    """Stop and remove the cluster ``state_file`` records, its password file and the record; idempotent."""
    state = _read_state(state_file)
    if state is None:
        return {"changed": False, "state": str(state_file), "removed": []}
    removed: list[str] = []
    cluster = _attach(state)
    if cluster.base_dir.is_dir():
        _check_cluster_dir(cluster.base_dir)
        cluster.destroy()
        if cluster.base_dir.exists():
            raise CliError(f"could not remove {cluster.base_dir}")
        removed.append(str(cluster.base_dir))
    password_file = state.get("password_file")
    if password_file and os.path.lexists(password_file):
        os.unlink(password_file)
        removed.append(password_file)
    state_file.unlink()
    removed.append(str(state_file))
    return {"changed": True, "state": str(state_file), "removed": removed}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m support.pgcluster_cli", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start_cmd = commands.add_parser("start", help="start a cluster, create databases, record it")
    start_cmd.add_argument("--state", type=Path, required=True, help="JSON record to write (0600); must not exist")
    start_cmd.add_argument("--password-file", type=Path, required=True, help="file to write the application role's password to (0600); must not exist")
    start_cmd.add_argument("--database", action="append", default=[], help="a database to create, owned by the application role (repeatable)")
    start_cmd.add_argument("--name", default="cli", help="the cluster's name (its directory is fleet-pg-NAME-*)")
    start_cmd.add_argument("--root", type=Path, help="parent of the cluster's directory (default: the system temp dir)")
    stop_cmd = commands.add_parser("stop", help="stop and remove the recorded cluster (nothing recorded: exit 0)")
    stop_cmd.add_argument("--state", type=Path, required=True, help="JSON record that start wrote")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "start":
            result = start(args.state, args.password_file, databases=args.database, name=args.name, root=args.root)
        else:
            result = stop(args.state)
    except (CliError, RuntimeError, OSError, psycopg2.Error) as exc:
        print(f"pgcluster: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One table of bad inputs for every module: a failed run, one line saying what is wrong, nothing changed.

Each case runs one module ad hoc through the real ``ansible`` CLI against db1 (a real PostgreSQL 15 cluster)
and a temporary backup root.  "The world" - the databases on the cluster, the tables, version and ledger rows
of ``equities`` (upgraded to head first, so that a stray ``DROP TABLE companies`` would show) and every file
under the temporary directory that holds the backup root - is snapshot once per module and compared after
each case.  A case that does change the world is repaired afterwards (new files and databases removed,
``equities`` rebuilt) so that the cases stay independent.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support.ansible_run import REPO, module
from support.pgcluster import PgCluster

from .test_bad_input import conn_args, fails_with
from .test_migrate_postgres import tables_of

pytestmark = pytest.mark.slow

EQUITIES_INI = str(REPO / "migrations" / "equities" / "alembic.ini")
PORT = "<PORT>"  # replaced by db1's port in every string of a case's arguments
ROOT = "<ROOT>"  # ... by the watched directory
PASSWORD = "<PASSWORD>"  # ... by db1's application password (passed to Ansible through the environment)
OMIT = "<OMIT>"  # as a value: leave the base argument out
URL = "postgresql://migrator@127.0.0.1:%s/equities" % PORT
ENTRY = {"name": "equities", "config": EQUITIES_INI, "url": URL, "password": PASSWORD}  # an alembic_status `databases` entry
MANY = {"config": OMIT, "url": OMIT, "password": OMIT}  # alembic_status with `databases` instead
BACKUP = {"backup_root": ROOT + "/backups", "environment": "test", "host": "db1", "name": "equities"}  # alembic_upgrade's `backup`
SQL = "x'; DROP TABLE companies; --"

# ---------------------------------------------------------------------------- the world


@dataclass
class World:
    db1: PgCluster
    root: Path  # watched directory; the backup root is root/backups
    dump: Path  # a good backup of equities (outside root), for db_restore
    baseline: dict[str, Any] = field(default_factory=dict)

    @property
    def backup_root(self) -> Path:
        return self.root / "backups"

    def snapshot(self) -> dict[str, Any]:
        db1 = self.db1
        return {
            "databases": sorted(row[0] for row in db1.execute("select datname from pg_database")),
            "tables": sorted(
                "%s.%s" % row
                for row in db1.execute(
                    "select schemaname, tablename from pg_tables where schemaname not in ('pg_catalog', 'information_schema')",
                    dbname="equities",
                )
            ),
            "version": sorted(row[0] for row in db1.execute("select version_num from alembic_version", dbname="equities")),
            "ledger": sorted("%s %s %s" % row for row in db1.execute("select entry_id, action, outcome from alembic_fleet_ledger", dbname="equities")),
            "files": sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*")),
        }

    def changes(self) -> dict[str, Any]:
        """What differs from the baseline (empty when nothing changed); repairs it so the next case starts clean."""
        try:
            now = self.snapshot()
        except Exception as exc:  # e.g. equities or a table dropped
            now = {"error": repr(exc)}
        diff = {key: {"before": self.baseline.get(key), "after": now.get(key)} for key in now if now.get(key) != self.baseline.get(key)}
        if not diff:
            return {}
        for name in set(now.get("databases", [])) - set(self.baseline["databases"]):
            self.db1.drop_database(name)
        for rel in sorted(set(now.get("files", [])) - set(self.baseline["files"]), key=len):
            path = self.root / rel
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()
        if self.snapshot_db_part(now) != self.snapshot_db_part(self.baseline):
            build_equities(self.db1)
            self.baseline = self.snapshot()
        return diff

    @staticmethod
    def snapshot_db_part(snap: dict[str, Any]) -> tuple[Any, ...]:
        return (snap.get("tables"), snap.get("version"), snap.get("ledger"), snap.get("error"))


def build_equities(db1: PgCluster) -> None:
    db1.reset_database("equities")
    run, result = module("alembic_upgrade", {"config": EQUITIES_INI, **conn_args(db1)})
    assert run.rc == 0, result
    assert {"companies", "daily_ohlcv"} <= tables_of(db1, "equities")


@pytest.fixture(scope="module")
def world(pg_clusters: list[PgCluster], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    db1 = pg_clusters[0]
    for name in ("equities", "algorithms"):
        db1.reset_database(name)
    build_equities(db1)
    side = tmp_path_factory.mktemp("good_backup")
    run, result = module("db_backup", {"backup_root": str(side), "environment": "test", "host": "db1", "name": "equities", **conn_args(db1)})
    assert run.rc == 0, result
    root = tmp_path_factory.mktemp("world")
    (root / "backups").mkdir(mode=0o700)
    state = World(db1=db1, root=root, dump=Path(result["path"]))
    state.baseline = state.snapshot()
    yield state
    for name in ("equities", "algorithms"):
        db1.reset_database(name)


def base_args(world: World, kind: str) -> dict[str, Any]:
    # Paths first and the password last: the ad-hoc "Origin" echo of ansible-core shows a prefix of the args.
    conn = conn_args(world.db1)
    if kind == "alembic":
        return {"config": EQUITIES_INI, **conn}
    if kind == "backup":
        return {"backup_root": str(world.backup_root), "environment": "test", "host": "db1", "name": "equities", **conn}
    if kind == "restore":
        return {"path": str(world.dump), "name": "equities", **conn}
    if kind == "conn":
        return conn
    if kind == "drill":
        return {"config": EQUITIES_INI, "path": str(world.dump), **conn}
    if kind == "report":
        return {"databases": [{"environment": "test", "host": "db1", "name": "equities"}], "report_dir": str(world.root / "reports")}
    raise AssertionError(kind)


def placed(value: Any, world: World) -> Any:
    """value with the placeholders filled in for this world."""
    if isinstance(value, str):
        return value.replace(PORT, str(world.db1.port)).replace(ROOT, str(world.root)).replace(PASSWORD, world.db1.app_password)
    if isinstance(value, list):
        return [placed(v, world) for v in value]
    if isinstance(value, dict):
        return {k: placed(v, world) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------- the table

BASE = {
    "alembic_status": "alembic",
    "alembic_upgrade": "alembic",
    "alembic_downgrade": "alembic",
    "alembic_stamp": "alembic",
    "alembic_verify": "alembic",
    "alembic_lint": "alembic",
    "db_backup": "backup",
    "db_restore": "restore",
    "db_unlock": "conn",
    "db_restore_check": "drill",
    "fleet_report": "report",
}
REQUIRED = {"alembic_downgrade": {"target": "-1"}, "alembic_stamp": {"target": "head"}}


def case(kind: str, name: str, args: dict[str, Any], *phrases: str, flags: tuple[str, ...] = (), bug: str | None = None) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason="BUG: " + bug)] if bug else []
    return pytest.param(name, args, phrases, flags, id="%s-%s-%s" % (kind, name, "-".join(args)), marks=marks)


CASES = [
    # -- a wrong type ------------------------------------------------------------------------------------------
    case("type", "alembic_status", {"connect_timeout": "soon"}, "argument 'connect_timeout' is of type str", "unable to convert to int"),
    case("type", "alembic_upgrade", {"record": "not-a-dict"}, "dictionary requested"),
    case("type", "alembic_status", {**MANY, "databases": ENTRY}, "a mapping cannot be converted to a list", "write it as a YAML list"),
    case("type", "alembic_downgrade", {"lock_wait": "soon"}, "argument 'lock_wait' is of type str", "unable to convert to float"),
    case("type", "alembic_stamp", {"require_schema_match": "perhaps"}, "argument 'require_schema_match'", "unable to convert to bool"),
    case("type", "alembic_status", {"ledger_limit": [1]}, "argument 'ledger_limit' is of type list", "unable to convert to int"),
    case("type", "alembic_verify", {"compare_schema": "perhaps"}, "argument 'compare_schema'", "unable to convert to bool"),
    case("type", "db_backup", {"compress_level": "high"}, "argument 'compress_level' is of type str", "unable to convert to int"),
    case("type", "db_restore", {"keep_replaced": "sometimes"}, "argument 'keep_replaced'", "unable to convert to bool"),
    case("type", "db_unlock", {"connect_timeout": "soon"}, "argument 'connect_timeout' is of type str", "unable to convert to int"),
    case("type", "fleet_report", {"databases": [1]}, "Elements value for option 'databases' is of type int"),
    case("type", "db_restore_check", {"count": 1}, "Unsupported parameters for (db_restore_check) module: count"),
    case(
        "type",
        "alembic_status",
        {**MANY, "databases": [{**ENTRY, "create_database": "perhaps"}]},
        "argument 'create_database' is of type str",
        "found in 'databases'",
    ),
    # ansible-core's own wording for a string where a dict is expected (it tries to parse key=value first)
    case("type", "alembic_status", {**MANY, "databases": ["equities"]}, "dictionary requested, could not parse JSON or key=value"),
    case("type", "alembic_upgrade", {"verify": {"compare_schema": "perhaps"}}, "argument 'compare_schema'", "found in 'verify'"),
    case("type", "alembic_upgrade", {"backup": {**BACKUP, "compress_level": "high"}}, "argument 'compress_level' is of type str", "found in 'backup'"),
    # -- a value out of range ----------------------------------------------------------------------------------
    case("range", "alembic_upgrade", {"backup": {**BACKUP, "compress_level": 42}}, "compress_level 42 is out of range"),
    case("range", "alembic_upgrade", {"backup": {**BACKUP, "keep_last": -1}}, "keep_last -1 is not allowed"),
    case("range", "fleet_report", {"max_backup_age_hours": -1}, "max_backup_age_hours is -1.0: give a number of 0 or more"),
    case("empty", "fleet_report", {"databases": []}, "databases is empty"),
    case("choice", "db_restore_check", {"backup_dir": "/tmp"}, "parameters are mutually exclusive: backup_dir|path"),
    case("missing", "db_restore_check", {"path": "/nonexistent/x.dump"}, "backup file /nonexistent/x.dump does not exist"),
    case("choice", "db_restore_check", {"record": {"action": "explode"}}, "value of action must be one of", "got: explode found in record"),
    case(
        "range",
        "db_backup",
        {"keep_last": -1},
        "keep_last -1 is not allowed",
    ),
    # -- an empty required string ------------------------------------------------------------------------------
    case("empty", "alembic_status", {"url": ""}, "url is empty"),
    case(
        "empty",
        "alembic_upgrade",
        {"config": ""},
        "config is empty",
    ),
    case("empty", "alembic_downgrade", {"target": ""}, "target is empty"),
    case("empty", "alembic_stamp", {"target": ""}, "target is empty"),
    case("empty", "alembic_verify", {"url": ""}, "url is empty"),
    case("empty", "db_backup", {"name": ""}, "name '' cannot be used in a backup path"),
    case(
        "empty",
        "db_backup",
        {"backup_root": ""},
        "backup_root",
        "empty",
        # In check mode, so that the accepted empty root writes nothing into the repository (the module's cwd).
        flags=("--check",),
    ),
    case(
        "empty",
        "db_restore",
        {"path": ""},
        "path is empty",
    ),
    case("empty", "db_restore", {"name": ""}, "is a backup of 'equities', not of ''"),
    case("empty", "db_unlock", {"url": ""}, "url is empty"),
    case("empty", "alembic_upgrade", {"backup": {**BACKUP, "backup_root": ""}}, "backup_root is empty"),
    case("missing", "alembic_status", {**MANY, "databases": [{"name": "equities", "url": URL}]}, "missing required arguments: config found in databases"),
    case("choice", "alembic_status", {"databases": [ENTRY]}, "parameters are mutually exclusive"),
    case("missing", "alembic_status", {"url": OMIT}, "parameters are required together: config, url"),
    # -- an unknown choice -------------------------------------------------------------------------------------
    case("choice", "alembic_downgrade", {"refuse": ["maybe"]}, "value of refuse must be one or more of: lossy, irreversible", "maybe"),
    case("choice", "alembic_upgrade", {"record": {"action": "explode"}}, "value of action must be one of", "got: explode found in record"),
    case("choice", "db_restore", {"record": {"action": "explode"}}, "value of action must be one of", "got: explode found in record"),
    # -- an unknown option -------------------------------------------------------------------------------------
    case("unknown", "alembic_stamp", {"colour": "red"}, "Unsupported parameters for (alembic_stamp) module: colour"),
    case("unknown", "db_restore", {"colour": "red"}, "Unsupported parameters for (db_restore) module: colour"),
    case("unknown", "db_unlock", {"colour": "red"}, "Unsupported parameters for (db_unlock) module: colour"),
    case(
        "unknown", "alembic_status", {**MANY, "databases": [{**ENTRY, "colour": "red"}]}, "Unsupported parameters for (alembic_status) module: databases.colour"
    ),
    case("unknown", "alembic_upgrade", {"backup": {**BACKUP, "colour": "red"}}, "Unsupported parameters for (alembic_upgrade) module: backup.colour"),
    case("escape", "alembic_upgrade", {"backup": {**BACKUP, "name": "../../etc"}}, "name '../../etc' cannot be used in a backup path"),
    # -- a path that escapes the backup root -------------------------------------------------------------------
    case("escape", "db_backup", {"name": "../../etc"}, "name '../../etc' cannot be used in a backup path", "no '/' or '..'"),
    case("escape", "db_backup", {"environment": "../x"}, "environment '../x' cannot be used in a backup path"),
    case("escape", "db_backup", {"host": "a/b"}, "host 'a/b' cannot be used in a backup path"),
    # -- SQL-looking text in names -----------------------------------------------------------------------------
    case("sql", "db_backup", {"name": SQL}, "name '%s' cannot be used in a backup path" % SQL),
    case("sql", "db_restore", {"name": SQL}, "is a backup of 'equities', not of '%s'" % SQL),
    case("sql", "alembic_upgrade", {"target": "head; drop table companies"}, "'head; drop table companies' is not a revision target"),
    case("sql", "alembic_lint", {"target": "head; drop table companies"}, "'head; drop table companies' is not a revision target"),
    case("sql", "alembic_downgrade", {"target": "base; drop table companies"}, "'base; drop table companies' is not a revision target"),
    case("sql", "alembic_stamp", {"target": "head'; drop table companies; --"}, "is not a revision target"),
    case(
        "sql",
        "alembic_status",
        {"url": "postgresql://migrator@127.0.0.1:%s/equities; drop database equities" % PORT},
        "database 'equities; drop database equities' does not exist",
    ),
    case("sql", "alembic_upgrade", {"ledger_table": 'x"; drop table companies; --'}, "is not a plain table name"),
    case("sql", "db_restore", {"version_table": "alembic_version; drop table companies"}, "is not a plain table name"),
    case(
        "sql",
        "db_unlock",
        {"ledger_table": "x; drop table companies"},
        "is not a plain table name",
    ),
    case(
        "sql",
        "alembic_stamp",
        {"url": "postgresql://migrator@127.0.0.1:%s/equities?options=-c%%20search_path%%3Devil" % PORT},
        "search_path",
    ),
    # -- a non-existent file -----------------------------------------------------------------------------------
    case("missing", "alembic_status", {"config": "/nonexistent/alembic.ini"}, "Alembic config /nonexistent/alembic.ini does not exist"),
    case("missing", "alembic_verify", {"project_dir": "/nonexistent/project"}, "project_dir /nonexistent/project does not exist"),
    case("missing", "db_restore", {"path": "/nonexistent/x.dump"}, "backup file /nonexistent/x.dump does not exist"),
    case(
        "missing",
        "db_backup",
        {"pg_bin_dir": "/nonexistent/bin"},
        "/nonexistent/bin",
    ),
]


@pytest.mark.parametrize(("name", "overrides", "phrases", "flags"), CASES)
def test_bad_input_fails_in_one_line_and_changes_nothing(
    world: World, name: str, overrides: dict[str, Any], phrases: tuple[str, ...], flags: tuple[str, ...]
) -> None:
    args = {**base_args(world, BASE[name]), **REQUIRED.get(name, {}), **placed(overrides, world)}
    args = {key: value for key, value in args.items() if value != OMIT}
    run, result = module(name, args, *flags)
    changed = world.changes()  # before any assertion: it also repairs the world for the next case

    message = fails_with(result, run.rc, *placed(list(phrases), world))
    assert not message.startswith("unexpected "), message  # run_module's marker for a bug, not an input problem
    assert changed == {}, "bad input changed the world: %s" % json.dumps(changed, indent=1)[:3000]
    assert "Traceback" not in message and "exception" not in result, result
    assert result.get("changed") is not True, result
    secrets = (world.db1.app_password, world.db1.superuser_password)
    # ansible-core's ad-hoc "Origin" echo repeats the -a arguments as given on the command line; the rest of the
    # output (and the module's result above all) must never show a password.
    output = re.sub(r"^\{'action': '\w+', 'args': .*$", "", run.output, flags=re.M)
    for secret in secrets:
        assert secret not in json.dumps(result) and secret not in output, "a password leaked"


def test_every_module_is_in_the_table() -> None:
    modules = {p.stem for p in (REPO / "library").glob("*.py")}
    assert modules == set(BASE), "add cases for: %s" % sorted(modules - set(BASE))
    covered = {param.values[0] for param in CASES}
    assert covered == modules, sorted(modules - covered)

"""Sections on the seeded database: backup, restore, migrate-1gb."""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from context import Bench, ratio_target, rotated
from infra import (
    BIN,
    REPO,
    BenchError,
    PgCluster,
    Placement,
    Timed,
    ansible_module,
    ansible_playbook,
    clone,
    create_empty,
    drop,
    libpq_url,
    load_vars,
    password_lookup,
    require,
    run_timed,
    shell_timed,
    tool_env,
)

MB = 2**20
BACKUP_NAME = "ohlcv"  # the database's name as the inventory (and so the backup's manifest) knows it
NAIVE = REPO / "bench" / "naive" / "naive.yml"


def compress_level() -> int:
    """The level the role uses by default (fleet_backup_compress_level in the repo's group_vars/all.yml)."""
    return int(load_vars(REPO / "inventory" / "group_vars" / "all.yml").get("fleet_backup_compress_level", 1))


def version_of(cluster: PgCluster, dbname: str) -> list[str]:
    return [row[0] for row in cluster.execute("SELECT version_num FROM alembic_version", dbname=dbname)]


def require_at(cluster: PgCluster, dbname: str, revision: str, what: str) -> None:
    found = version_of(cluster, dbname)
    if found != [revision]:
        raise BenchError("%s left %s at %s, not %s" % (what, dbname, found, revision))


def pg_dump(b: Bench, cluster: PgCluster, dbname: str, out: Path, *options: str) -> Timed:
    """Raw pg_dump -Fc of the server's own major version (the one db_backup picks too)."""
    argv = [str(cluster.bin_dir / "pg_dump"), "-Fc", *options, "-f", str(out), libpq_url(cluster, dbname)]
    return require(run_timed("pg_dump -Fc %s" % " ".join(options), argv, tool_env(b.clusters.pgpass)))


def db_backup(b: Bench, cluster: PgCluster, dbname: str, revision: str, count_tables: int | None = None) -> tuple[Timed, dict[str, Any]]:
    """Our module, as an operator runs it on its own, with the role's defaults (compression, count_tables)."""
    args: dict[str, Any] = {
        "url": libpq_url(cluster, dbname),
        "password": password_lookup("pg1"),
        "backup_root": str(b.work / "backups"),
        "environment": "dev",
        "host": "pg1",
        "name": BACKUP_NAME,
        "revision": revision,
        "compress_level": compress_level(),
    }
    if count_tables is not None:
        args["count_tables"] = count_tables
    timed, result = ansible_module("db_backup", "db_backup", args, env=b.ansible_env())
    require(timed)
    return timed, result


def forget_backup(path: Path) -> None:
    for leftover in (path, Path("%s.manifest.json" % path)):
        leftover.unlink(missing_ok=True)


# -- backup ----------------------------------------------------------------------------
def section_backup(b: Bench) -> None:
    seeded = b.seeded()
    cluster, dbname = seeded.cluster, seeded.dbname
    raw_dir = b.work / "raw"
    raw_dir.mkdir(exist_ok=True)
    walls: dict[str, list[float]] = {"ours": [], "default": [], "z1": []}
    sizes: dict[str, list[float]] = {"ours": [], "default": [], "z1": []}
    durations: list[float] = []
    uncounted: list[float] = []
    own_dumps: list[float] = []

    def ours_uncounted() -> None:
        """count_tables 0, as the migrate procedure's backup before an upgrade (alembic_upgrade's backup)."""
        _, result = db_backup(b, cluster, dbname, seeded.revision, count_tables=0)
        uncounted.append(float(result["duration"]))
        own_dumps.append(float(result["manifest"]["pg_dump_seconds"]))
        forget_backup(Path(result["path"]))

    def ours() -> None:
        timed, result = db_backup(b, cluster, dbname, seeded.revision)
        if b.our_backup is not None:
            forget_backup(b.our_backup)  # keep only the newest: the restore section restores it
        b.our_backup = Path(result["path"])
        walls["ours"].append(timed.seconds)
        durations.append(float(result["duration"]))
        sizes["ours"].append(b.our_backup.stat().st_size / MB)

    def raw(key: str, *options: str) -> None:
        out = raw_dir / ("%s.dump" % key)
        walls[key].append(pg_dump(b, cluster, dbname, out, *options).seconds)
        sizes[key].append(out.stat().st_size / MB)
        out.unlink()

    for rep in range(b.repeat):
        rotated(rep, [ours, ours_uncounted, lambda: raw("default"), lambda: raw("z1", "-Z1")])

    level = compress_level()
    b.row("backup", "wall: ansible -m db_backup vs pg_dump -Fc (default level)", walls["ours"], walls["default"], target=ratio_target(0.30))
    b.row("backup", "file size vs pg_dump -Fc (default level)", sizes["ours"], sizes["default"], unit="MB", target=ratio_target(1.25))
    b.row(
        "backup",
        "module duration vs its own pg_dump, same run (checksum + verification on top)",
        uncounted,
        own_dumps,
        target=ratio_target(1.05),
        note="ours: the module's `duration` at compress_level %d, count_tables 0 (the migrate procedure's backup); peer: the pg_dump it ran" % level,
    )
    b.row(
        "backup",
        "module duration vs pg_dump -Fc -Z1, separate runs",
        uncounted,
        walls["z1"],
        note="the same comparison across runs: two runs of the same pg_dump differ by more than our work",
    )
    b.row(
        "backup",
        "module duration with row counts (count_tables 10: nightly backups, for the drills) vs pg_dump -Fc -Z1",
        durations,
        walls["z1"],
        note="the counts are a full scan of the largest tables beside pg_dump, in the dump's snapshot",
    )
    b.row("backup", "file size vs pg_dump -Fc -Z1", sizes["ours"], sizes["z1"], unit="MB")
    check_plain_restore(b, cluster, seeded.rows)


def check_plain_restore(b: Bench, cluster: PgCluster, rows: int) -> None:
    """Once: our backup file is an ordinary custom-format dump that plain pg_restore restores."""
    assert b.our_backup is not None
    target = b.name("plain_restore")
    create_empty(cluster, target)
    try:
        argv = [str(cluster.bin_dir / "pg_restore"), "--exit-on-error", "-d", libpq_url(cluster, target), str(b.our_backup)]
        timed = require(run_timed("pg_restore of our backup", argv, tool_env(b.clusters.pgpass)))
        restored = int(cluster.execute("SELECT count(*) FROM daily_ohlcv", dbname=target)[0][0])
    finally:
        drop(cluster, target)
    if restored != rows:
        raise BenchError("plain pg_restore of our backup restored %d rows of daily_ohlcv, not %d" % (restored, rows))
    b.report.fact("backup", "plain_pg_restore", {"ok": True, "rows": restored, "seconds": timed.seconds})
    print("  our backup restores with plain pg_restore: %d rows in %.1f s" % (restored, timed.seconds), flush=True)


# -- restore ---------------------------------------------------------------------------
def our_backup(b: Bench) -> Path:
    """The backup section's file, or (with --only restore) one taken now, not measured."""
    if b.our_backup is None or not b.our_backup.exists():
        seeded = b.seeded()
        _, result = db_backup(b, seeded.cluster, seeded.dbname, seeded.revision)
        b.our_backup = Path(result["path"])
    return b.our_backup


def section_restore(b: Bench) -> None:
    backup = our_backup(b)
    seeded = b.seeded()
    cluster = seeded.cluster
    walls: dict[str, list[float]] = {"ours": [], "peer": []}
    durations: list[float] = []
    own_restores: list[float] = []

    def same_start(name: str) -> str:
        """Both sides start from the same server state: a fresh 1 GB clone of the seeded database (for ours, the
        database it replaces; for the peer, a bystander), checkpointed and synced. The clone's presence alone made
        the same pg_restore about 2 s slower in a test, so a peer without one would not be measured alike."""
        clone(cluster, seeded.dbname, name)
        cluster.execute("CHECKPOINT")
        os.sync()
        return name

    def ours() -> None:
        # db_restore replaces an existing database (scratch restore, checks, swap): its target is the clone.
        target = same_start(b.name("restore_ours"))
        try:
            args = {
                "url": libpq_url(cluster, target),
                "password": password_lookup("pg1"),
                "path": str(backup),
                "name": BACKUP_NAME,
            }
            timed, result = ansible_module("db_restore", "db_restore", args, env=b.ansible_env())
            require(timed)
            require_at(cluster, target, seeded.revision, "db_restore")
        finally:
            drop(cluster, target)
        walls["ours"].append(timed.seconds)
        durations.append(float(result["duration"]))
        own_restores.append(float(result["pg_restore_seconds"]))
        own_restores.append(float(result["pg_restore_seconds"]))

    def peer() -> None:
        bystander = b.name("restore_bystander")
        target = b.name("restore_raw")
        create_empty(cluster, target)
        same_start(bystander)
        try:
            argv = [str(cluster.bin_dir / "pg_restore"), "-d", libpq_url(cluster, target), str(backup)]
            walls["peer"].append(require(run_timed("pg_restore -d", argv, tool_env(b.clusters.pgpass))).seconds)
        finally:
            drop(cluster, target)
            drop(cluster, bystander)

    for rep in range(b.repeat):
        rotated(rep, [ours, peer])
    b.row(
        "restore",
        "module duration vs pg_restore -d <new db>",
        durations,
        walls["peer"],
        target=ratio_target(1.05),
        note="ours restores into a scratch database, checks it, swaps it in and drops the replaced clone",
    )
    b.row("restore", "module duration vs its own pg_restore, same run (our work on top)", durations, own_restores)
    b.row(
        "restore",
        "wall: ansible -m db_restore vs pg_restore -d <new db>",
        walls["ours"],
        walls["peer"],
        note="wall adds Ansible's own start of an ad-hoc call (the CLI, the module's transfer and imports): about 1.6 s",
    )


# -- migrate-1gb -------------------------------------------------------------------------
def raw_procedure(b: Bench, cluster: PgCluster, dbname: str, dump: Path, *dump_options: str) -> str:
    """The raw commands of the procedure: backup, upgrade, check."""
    ini = shlex.quote(str(b.project.ini))
    alembic = shlex.quote(str(BIN / "alembic"))
    dump_argv = [str(cluster.bin_dir / "pg_dump"), "-Fc", *dump_options, "-f", str(dump), libpq_url(cluster, dbname)]
    return "\n".join([shlex.join(dump_argv), "%s -c %s upgrade head" % (alembic, ini), "%s -c %s check" % (alembic, ini)])


def naive_args(b: Bench) -> list[str]:
    backups = b.work / "naive-backups"
    return ["-e", "naive_backup_dir=%s" % backups, "-e", "naive_alembic=%s" % (BIN / "alembic")]


def section_migrate_1gb(b: Bench) -> None:
    seeded = b.seeded()
    cluster = seeded.cluster
    head = b.project.head
    walls: dict[str, list[float]] = {"ours": [], "z1": [], "default": [], "naive": []}

    def on_clone(key: str, run: Callable[[str], Timed]) -> None:
        dbname = b.name("m1g_%s" % key)
        clone(cluster, seeded.dbname, dbname)
        try:
            timed = require(run(dbname))
            require_at(cluster, dbname, head, timed.what)
            walls[key].append(timed.seconds)
        finally:
            drop(cluster, dbname)
            clear_backups(b)

    def playbook(book: Path, *args: str) -> Callable[[str], Timed]:
        def run(dbname: str) -> Timed:
            inventory = b.inventory([Placement("pg1", cluster, (dbname,))])
            return ansible_playbook(book.name, book, inventory, *args, env=b.ansible_env())

        return run

    def raw(*options: str) -> Callable[[str], Timed]:
        def run(dbname: str) -> Timed:
            (b.work / "raw").mkdir(exist_ok=True)
            script = raw_procedure(b, cluster, dbname, b.work / "raw" / ("%s.dump" % dbname), *options)
            return shell_timed("raw procedure", script, tool_env(b.clusters.pgpass, libpq_url(cluster, dbname)))

        return run

    level = "-Z%d" % compress_level()
    steps = [
        lambda: on_clone("ours", playbook(REPO / "migrate.yml")),
        lambda: on_clone("z1", raw(level)),
        lambda: on_clone("default", raw()),
        lambda: on_clone("naive", playbook(NAIVE, *naive_args(b))),
    ]
    for rep in range(b.repeat):
        rotated(rep, steps)
    pending = len(b.project.revisions) - 1
    b.row(
        "migrate-1gb",
        "migrate.yml vs raw pg_dump -Fc %s + alembic upgrade head + alembic check" % level,
        walls["ours"],
        walls["z1"],
        note="%d revisions pending; the same compression level as ours, so the ratio is the procedure's overhead" % pending,
    )
    b.row("migrate-1gb", "migrate.yml vs the same with pg_dump -Fc (default level)", walls["ours"], walls["default"])
    b.row("migrate-1gb", "migrate.yml vs the naive playbook (bench/naive/naive.yml)", walls["ours"], walls["naive"])


def clear_backups(b: Bench) -> None:
    """Dumps of a finished measurement (a 1 GB run would otherwise fill the disk); our backup for the restore
    section, under its own name, stays."""
    for folder in (b.work / "naive-backups", b.work / "raw"):
        shutil.rmtree(folder, ignore_errors=True)
    for database_dir in (b.work / "backups").glob("*/*/*"):
        if database_dir.name != BACKUP_NAME:
            shutil.rmtree(database_dir, ignore_errors=True)

"""Sections over several clusters: fleet-2x2 (migrate from empty, then nothing pending) and fleet (status and
migrate as the fleet grows)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path

from context import Bench, ratio_target, rotated
from infra import (
    BIN,
    REPO,
    BenchError,
    PgCluster,
    Placement,
    Run,
    Timed,
    ansible_playbook,
    clone,
    create_empty,
    drop,
    libpq_url,
    require,
    run_timed,
    shell_timed,
    spread,
    tool_env,
)
from results import Target
from sections_db import NAIVE, clear_backups, compress_level, naive_args, require_at
from synthetic import Project

MIGRATE = REPO / "migrate.yml"
STATUS = REPO / "status.yml"
FLEET_HOSTS = 6
FLEET_PER_HOST = 4
STATUS_SIZES = (1, 4, 12, 24)


def databases(placements: Sequence[Placement]) -> list[tuple[Placement, str]]:
    return [(placement, db) for placement in placements for db in placement.databases]


def create_all(placements: Sequence[Placement]) -> None:
    for placement, db in databases(placements):
        create_empty(placement.cluster, db)


def drop_all(placements: Sequence[Placement]) -> None:
    for placement in placements:
        drop(placement.cluster, *placement.databases)


def require_head(b: Bench, placements: Sequence[Placement], what: str, project: Project | None = None) -> None:
    for placement, db in databases(placements):
        require_at(placement.cluster, db, (project or b.project).head, what)


def changed(timed: Timed) -> int:
    """The PLAY RECAP's changed count, summed over the hosts."""
    return Run(argv=[], rc=timed.rc, output=timed.output).changed_total()


# -- fleet-2x2 --------------------------------------------------------------------------------
def section_fleet_2x2(b: Bench) -> None:
    """The real-shaped history (realistic.py) first, with the targets of a real project; the generated one after it."""
    fleet_2x2(b, b.real_project, "real-shaped %d-revision history" % len(b.real_project.revisions), 0.7, 0.25)
    fleet_2x2(b, b.project, "generated %d-revision project" % len(b.project.revisions), 1.0, 0.4)


def fleet_2x2(b: Bench, project: Project, label: str, from_empty: float, nothing_pending: float) -> None:
    clusters = b.clusters.ensure(2)
    first: dict[str, list[float]] = {"ours": [], "naive": []}
    second: dict[str, list[float]] = {"ours": [], "naive": []}
    changes: dict[str, list[float]] = {"ours": [], "naive": []}

    def measure(key: str, book: str, *args: str) -> None:
        placements = spread(4, clusters, b.name("f2%s" % key[0]) + "_db")
        create_all(placements)
        try:
            inventory = b.inventory(placements, project.ini)
            path = MIGRATE if key == "ours" else NAIVE
            first[key].append(require(ansible_playbook(book, path, inventory, *args, env=b.ansible_env())).seconds)
            require_head(b, placements, book, project)
            again = require(ansible_playbook(book, path, inventory, *args, env=b.ansible_env()))
            second[key].append(again.seconds)
            changes[key].append(changed(again))
        finally:
            drop_all(placements)
            clear_backups(b)

    for rep in range(b.repeat):
        rotated(rep, [lambda: measure("ours", "migrate.yml"), lambda: measure("naive", "naive.yml", *naive_args(b))])
    case = "migrate.yml from empty vs naive playbook (2 hosts x 2 dbs, %s)" % label
    b.row("fleet-2x2", case, first["ours"], first["naive"], target=ratio_target(from_empty))
    b.row("fleet-2x2", "second run, nothing pending (%s)" % label, second["ours"], second["naive"], target=ratio_target(nothing_pending))
    b.row("fleet-2x2", "changed count of the second run (%s)" % label, changes["ours"], changes["naive"], unit="count", target=Target("zero"))


# -- fleet -------------------------------------------------------------------------------------
def section_fleet(b: Bench) -> None:
    clusters = b.clusters.ensure(FLEET_HOSTS)
    template = "fleet_head"
    for cluster in clusters:
        # One database at head per cluster (by the alembic CLI, not measured); the fleet is TEMPLATE copies of it.
        create_empty(cluster, template)
        env = tool_env(b.clusters.pgpass, libpq_url(cluster, template))
        require(run_timed("alembic upgrade head", [str(BIN / "alembic"), "-c", str(b.project.ini), "upgrade", "head"], env))
        for k in range(1, FLEET_PER_HOST + 1):
            clone(cluster, template, "fleet_db%d" % k)
    status_rows(b, clusters)
    fleet_rows(b, clusters)


def alembic_loop(b: Bench, placements: Sequence[Placement], *commands: str, ini: Path | None = None) -> str:
    """The sequential shell loop an operator writes: the commands, one database after the other."""
    alembic, ini_path = str(BIN / "alembic"), str(ini or b.project.ini)
    lines = []
    for placement, db in databases(placements):
        url = libpq_url(placement.cluster, db)
        for command in commands:
            if command == "pg_dump":
                dump = b.work / "raw" / ("%s_%s.dump" % (placement.host, db))
                argv = [str(placement.cluster.bin_dir / "pg_dump"), "-Fc", "-Z%d" % compress_level(), "-f", str(dump), url]
                lines.append(shlex.join(argv))
            else:
                lines.append("BENCH_DATABASE_URL=%s %s" % (shlex.quote(url), shlex.join([alembic, "-c", ini_path, *command.split()])))
    return "\n".join(lines)


def status_rows(b: Bench, fleet: Sequence[PgCluster]) -> None:
    """status.yml without drift is the like-for-like of an `alembic current` loop (it reads more: pending revisions,
    ledger, backups, lock holder, review); with drift (the default: a scratch database per database to compare
    schemas) it is measured once more at the largest size, without a target."""
    walls: dict[int, dict[str, list[float]]] = {n: {"ours": [], "peer": [], "drift": []} for n in STATUS_SIZES}
    for rep in range(b.repeat):
        for n in STATUS_SIZES:
            placements = spread(n, fleet[: min(n, FLEET_HOSTS)], "fleet_db")
            inventory = b.inventory(placements)

            # Default arguments bind this size's values (the loop variables change before the call otherwise).
            def ours(n: int = n, inventory: Path = inventory) -> None:
                timed = ansible_playbook("status.yml", STATUS, inventory, "-e", "fleet_drift=false", env=b.ansible_env())
                check_status(b, timed, n)
                walls[n]["ours"].append(timed.seconds)

            def with_drift(n: int = n, inventory: Path = inventory) -> None:
                timed = ansible_playbook("status.yml (drift)", STATUS, inventory, env=b.ansible_env())
                check_status(b, timed, n)
                walls[n]["drift"].append(timed.seconds)

            def peer(n: int = n, placements: list[Placement] = placements) -> None:
                script = alembic_loop(b, placements, "current")
                walls[n]["peer"].append(require(shell_timed("alembic current loop", script, tool_env(b.clusters.pgpass))).seconds)

            rotated(rep, [ours, peer, with_drift] if n == STATUS_SIZES[-1] else [ours, peer])
    for n in STATUS_SIZES:
        target = ratio_target(0.5) if n == STATUS_SIZES[-1] else None
        b.row("fleet", "status.yml (no drift) vs alembic current loop, %d db" % n, walls[n]["ours"], walls[n]["peer"], target=target)
    last = STATUS_SIZES[-1]
    b.row("fleet", "status.yml with drift (default) vs alembic current loop, %d db" % last, walls[last]["drift"], walls[last]["peer"])
    first, last = STATUS_SIZES[0], STATUS_SIZES[-1]
    growth = {key: [a / c for a, c in zip(walls[last][key], walls[first][key], strict=True)] for key in ("ours", "peer")}
    b.row("fleet", "growth of wall time from %d to %d db (t%d / t%d)" % (first, last, last, first), growth["ours"], growth["peer"], unit="x")


def check_status(b: Bench, timed: Timed, count: int) -> None:
    """status.yml fails when anything needs attention (here: no backups yet, which dev requires), so its exit code
    says little; the report must list every database, read, at head."""
    report = json.loads((b.work / "reports" / "status.json").read_text())
    found = report.get("databases", [])
    bad = [db for db in found if not db.get("status_ok") or db["cells"]["current"]["value"] != b.project.head]
    if len(found) != count or bad:
        raise BenchError("status.yml over %d databases reported %d, not all read at head: %s\n%s" % (count, len(found), bad[:2], timed.output[-2000:]))
    b.report.fact("fleet", "status_reasons_%d" % count, sorted({reason.split(": ", 1)[-1] for reason in report.get("reasons", [])}))
    b.report.fact("fleet", "status_rc_%d" % count, timed.rc)


def fleet_rows(b: Bench, fleet: Sequence[PgCluster]) -> None:
    count = FLEET_HOSTS * FLEET_PER_HOST
    walls: dict[str, list[float]] = {"ours": [], "peer": []}

    def ours() -> None:
        placements = spread(count, fleet, b.name("fmo") + "_db")
        create_all(placements)
        try:
            timed = require(ansible_playbook("migrate.yml", MIGRATE, b.inventory(placements), env=b.ansible_env()))
            require_head(b, placements, "migrate.yml")
            walls["ours"].append(timed.seconds)
        finally:
            drop_all(placements)
            clear_backups(b)

    def peer() -> None:
        placements = spread(count, fleet, b.name("fmp") + "_db")
        create_all(placements)
        try:
            (b.work / "raw").mkdir(exist_ok=True)
            script = alembic_loop(b, placements, "pg_dump", "upgrade head", "current")
            walls["peer"].append(require(shell_timed("raw loop", script, tool_env(b.clusters.pgpass))).seconds)
            require_head(b, placements, "raw loop")
        finally:
            drop_all(placements)
            clear_backups(b)

    for rep in range(b.repeat):
        rotated(rep, [ours, peer])
    b.row(
        "fleet",
        "migrate.yml over %d empty db vs sequential pg_dump + upgrade head + current" % count,
        walls["ours"],
        walls["peer"],
        note="%d hosts x %d databases, 35 revisions each" % (FLEET_HOSTS, FLEET_PER_HOST),
    )

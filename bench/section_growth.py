"""Section growth: how the wall time grows with the fleet, ours against the naive playbook and the sequential raw
loop, on the real-shaped history (realistic.py), drawn as a PNG beside the JSON.

At each size (GROWTH_SIZES databases, dealt one per host first over GROWTH_HOSTS clusters, as a fleet grows):
- migrate.yml from empty, then again with nothing pending;
- naive/naive.yml from empty, then again;
- the sequential raw loop from empty (pg_dump + alembic upgrade head + alembic current, one database after the other);
- status.yml without drift.
Targets (issue 18): at 24 databases from empty <= 0.5x the raw loop; at the largest size, the slope per database
(from the size before it) <= 0.5x the loop's. The plot needs matplotlib (bench/requirements.txt, installed by
bench/run, not by the test suite); without it the figures are still in the JSON and the table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from context import Bench, ratio_target
from infra import Placement, Timed, ansible_playbook, require, shell_timed, spread, tool_env
from sections_db import clear_backups, naive_args
from sections_fleet import MIGRATE, NAIVE, STATUS, alembic_loop, create_all, drop_all, require_head

GROWTH_HOSTS = 12
GROWTH_SIZES = (1, 4, 24, 96)
SERIES = ("ours from empty", "ours nothing pending", "naive from empty", "naive nothing pending", "raw loop from empty", "status.yml")


def section_growth(b: Bench) -> None:
    sizes = tuple(int(n) for n in b.args.growth_sizes.split(",")) if getattr(b.args, "growth_sizes", None) else GROWTH_SIZES
    clusters = b.clusters.ensure(min(GROWTH_HOSTS, max(sizes)))
    project = b.real_project
    walls: dict[str, dict[int, list[float]]] = {name: {n: [] for n in sizes} for name in SERIES}

    def fresh(prefix: str, n: int, body: Callable[[list[Placement]], None]) -> None:
        placements = spread(n, clusters[: min(n, len(clusters))], b.name(prefix) + "_db")
        create_all(placements)
        try:
            body(placements)
        finally:
            drop_all(placements)
            clear_backups(b)

    for rep in range(b.repeat):
        for n in sizes:

            def ours(placements: list[Placement], n: int = n) -> None:
                inventory = b.inventory(placements, project.ini)
                walls["ours from empty"][n].append(require(_playbook(b, "migrate.yml", MIGRATE, inventory)).seconds)
                require_head(b, placements, "migrate.yml", project)
                walls["ours nothing pending"][n].append(require(_playbook(b, "migrate.yml", MIGRATE, inventory)).seconds)
                status = _playbook(b, "status.yml", STATUS, inventory, "-e", "fleet_drift=false")
                walls["status.yml"][n].append(status.seconds)  # fails without backups in dev: its time is what counts

            def naive(placements: list[Placement], n: int = n) -> None:
                inventory = b.inventory(placements, project.ini)
                walls["naive from empty"][n].append(require(_playbook(b, "naive.yml", NAIVE, inventory, *naive_args(b))).seconds)
                walls["naive nothing pending"][n].append(require(_playbook(b, "naive.yml", NAIVE, inventory, *naive_args(b))).seconds)

            def raw(placements: list[Placement], n: int = n) -> None:
                (b.work / "raw").mkdir(exist_ok=True)
                script = alembic_loop(b, placements, "pg_dump", "upgrade head", "current", ini=project.ini)
                walls["raw loop from empty"][n].append(require(shell_timed("raw loop", script, tool_env(b.clusters.pgpass))).seconds)
                require_head(b, placements, "raw loop", project)

            steps = [lambda n=n: fresh("gro", n, ours), lambda n=n: fresh("grn", n, naive), lambda n=n: fresh("grr", n, raw)]
            shift = rep % len(steps)
            for step in [*steps[shift:], *steps[:shift]]:
                step()
            print("  growth %d db: %s" % (n, ", ".join("%s %.1f s" % (name, walls[name][n][-1]) for name in SERIES)), flush=True)
    _rows(b, sizes, walls)
    _plot(b, sizes, walls)


def _playbook(b: Bench, label: str, path: Path, inventory: Path, *args: str) -> Timed:
    return ansible_playbook(label, path, inventory, *args, env=b.ansible_env())


def _rows(b: Bench, sizes: Sequence[int], walls: dict[str, dict[int, list[float]]]) -> None:
    for n in sizes:
        target = ratio_target(0.5) if n == 24 else None
        b.row("growth", "migrate.yml from empty vs raw loop, %d db" % n, walls["ours from empty"][n], walls["raw loop from empty"][n], target=target)
        b.row("growth", "migrate.yml from empty vs naive, %d db" % n, walls["ours from empty"][n], walls["naive from empty"][n])
        b.row("growth", "migrate.yml nothing pending vs naive, %d db" % n, walls["ours nothing pending"][n], walls["naive nothing pending"][n])
        b.row("growth", "status.yml (no drift) vs raw loop from empty, %d db" % n, walls["status.yml"][n], walls["raw loop from empty"][n])
    if len(sizes) >= 2:
        last, before = sizes[-1], sizes[-2]

        def slope(series: str) -> list[float]:
            return [(a - c) / (last - before) for a, c in zip(walls[series][last], walls[series][before], strict=True)]

        b.row(
            "growth",
            "slope per database from %d to %d db, migrate.yml from empty vs raw loop" % (before, last),
            slope("ours from empty"),
            slope("raw loop from empty"),
            target=ratio_target(0.5),
        )
    b.report.fact("growth", "series", {name: {str(n): values for n, values in walls[name].items()} for name in SERIES})


def _plot(b: Bench, sizes: Sequence[int], walls: dict[str, dict[int, list[float]]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  growth: matplotlib is not installed (bench/requirements.txt): no plot", flush=True)
        return
    figure, axes = plt.subplots(figsize=(8, 5))
    for name in SERIES:
        medians = [sorted(walls[name][n])[len(walls[name][n]) // 2] for n in sizes]
        axes.plot(sizes, medians, marker="o", label=name)
    axes.set_xscale("log")
    axes.set_xticks(list(sizes), [str(n) for n in sizes])
    axes.set_xlabel("databases (log scale)")
    axes.set_ylabel("wall time (s), median")
    axes.set_title("alembic-fleet: wall time as the fleet grows (real-shaped %d-revision history)" % len(b.real_project.revisions), fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    path = b.report.path.with_name(b.report.path.stem + "-growth.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    b.report.fact("growth", "plot", str(path))
    print("  growth: plot %s" % path, flush=True)

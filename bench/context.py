"""What every section of one benchmark run shares: options, work directory, clusters, projects, the report."""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra import REPO, Clusters, Placement, load_vars, write_inventory
from results import Report, Row, Target
from seeding import Seeded, seed
from synthetic import Project


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    clusters: Clusters
    report: Report
    project: Project  # the 35-revision history
    lock_project: Project  # the same, plus a revision that adds a column to daily_ohlcv
    real_project: Project  # the real-shaped history (realistic.py): branches, a merge, enums, data migrations
    _seeded: Seeded | None = None
    our_backup: Path | None = None  # the backup section's last db_backup file, restored by the restore section
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def repeat(self) -> int:
        return int(self.args.repeat)

    def seeded(self) -> Seeded:
        """The seeded database on pg1, made the first time a section needs it (not measured)."""
        if self._seeded is None:
            cluster = self.clusters.ensure(1)[0]
            print("seeding daily_ohlcv to about %d MB (not measured) ..." % self.args.size_mb, flush=True)
            self._seeded = seed(cluster, self.clusters.pgpass, self.project, int(self.args.size_mb))
            print("seeding took %.1f s: %d rows, %.0f MB" % (self._seeded.seconds, self._seeded.rows, self._seeded.bytes / 2**20), flush=True)
            self.report.meta["seed"] = self._seeded.as_dict()
        return self._seeded

    def name(self, prefix: str) -> str:
        """A database name never used before in this run."""
        return "%s_%d" % (prefix, next(self._names))

    def ansible_env(self) -> dict[str, str]:
        """The playbooks' environment: the passwords their inventories look up, and the naive playbook's pgpass."""
        return {**self.clusters.password_env(), "PGPASSFILE": str(self.clusters.pgpass)}

    def inventory(self, placements: Sequence[Placement], ini: Path | None = None) -> Path:
        return write_inventory(self.work / "inventories" / self.name("inv"), self.work, placements, ini or self.project.ini)

    def row(self, section: str, case: str, ours: list[float], peer: list[float], **kwargs: Any) -> Row:
        row = self.report.add(Row(section, case, ours, peer, **kwargs))
        print("  " + " | ".join(row.cells()), flush=True)
        return row


def rotated(rep: int, steps: Sequence[Callable[[], None]]) -> None:
    """Run the measurements of one repetition, each repetition starting with the next one, so no side always
    runs first (cold caches) or last (warm ones)."""
    shift = rep % len(steps)
    for step in [*steps[shift:], *steps[:shift]]:
        step()


def ratio_target(limit: float) -> Target:
    return Target("ratio", limit)


def policy(environment: str) -> dict[str, float]:
    """The lock policy the fleet role applies in an environment: group_vars/<env>.yml's fleet_* values, else the
    role's defaults (roles/fleet/defaults/main.yml), read from the files so the benchmark follows the repo."""
    group = load_vars(REPO / "inventory" / "group_vars" / ("%s.yml" % environment))
    defaults = load_vars(REPO / "roles" / "fleet" / "defaults" / "main.yml")
    found: dict[str, float] = {}
    for key in ("lock_timeout", "lock_retries", "lock_retry_delay"):
        value = group.get("fleet_%s" % key)
        found[key] = float(defaults["fleet_%s" % key] if value is None else value)
    return found

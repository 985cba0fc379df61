"""alembic-fleet's benchmark: each measurement of ours next to its peer, measured in the same run.

    bench/run [--size-mb N] [--repeat N] [--only SECTION[,SECTION]] [--keep]

Starts its own throwaway PostgreSQL 15 clusters (tests/support/pgcluster.py), seeds an OHLCV database once, runs
the sections, prints a table and writes bench/results/<UTC time>.json. The clusters are stopped at the end, also on
Ctrl-C or a failure, unless --keep. Not part of the test suite. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from context import Bench
from infra import REPO, Clusters
from realistic import write_project as write_real_project
from results import Report, table
from section_growth import section_growth
from section_lock import section_lock
from section_lock_held import section_lock_held
from sections_db import section_backup, section_migrate_1gb, section_restore
from sections_fleet import section_fleet, section_fleet_2x2
from synthetic import write_project

SECTIONS: dict[str, Callable[[Bench], None]] = {
    "backup": section_backup,
    "restore": section_restore,
    "migrate-1gb": section_migrate_1gb,
    "fleet-2x2": section_fleet_2x2,
    "fleet": section_fleet,
    "lock": section_lock,
    "lock-held": section_lock_held,
    "growth": section_growth,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the seeded daily_ohlcv table (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each measurement (default 3): median and spread")
    parser.add_argument("--only", default="", help="comma-separated sections to run: %s" % ", ".join(SECTIONS))
    parser.add_argument("--keep", action="store_true", help="leave the clusters and the work directory for debugging")
    parser.add_argument("--growth-sizes", default="", help="database counts of the growth section (default 1,4,24,96)")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error("unknown section(s) %s; choose from %s" % (", ".join(unknown), ", ".join(SECTIONS)))
    if args.size_mb < 1 or args.repeat < 1:
        parser.error("--size-mb and --repeat must be at least 1")
    return args


def terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends the run like Ctrl-C: through the finally blocks that stop the clusters."""
    raise KeyboardInterrupt


def new_bench(args: argparse.Namespace, started: datetime) -> Bench:
    # 0755: the clusters live under it and the postgres user must reach them (see tests/support/pgcluster.py).
    work = Path(tempfile.mkdtemp(prefix="alembic-fleet-bench-"))
    work.chmod(0o755)
    meta = {
        "started_at": started.isoformat(),
        "options": {"size_mb": args.size_mb, "repeat": args.repeat, "sections": args.sections},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }
    report = Report(REPO / "bench" / "results" / ("%s.json" % started.strftime("%Y%m%dT%H%M%SZ")), meta)
    return Bench(
        args=args,
        work=work,
        clusters=Clusters(work),
        report=report,
        project=write_project(work / "project"),
        lock_project=write_project(work / "project_lock", with_lock_revision=True),
        real_project=write_real_project(work / "project_real"),
    )


def run_sections(b: Bench) -> None:
    for name in b.args.sections:
        print("\n== %s" % name, flush=True)
        started = time.monotonic()
        try:
            SECTIONS[name](b)
        except Exception as exc:  # one failed section must not cost the others' results
            traceback.print_exc()
            b.report.errors[name] = "%s: %s" % (type(exc).__name__, exc)
        b.report.fact(name, "section_seconds", round(time.monotonic() - started, 1))
        b.report.save()


def finish(b: Bench) -> None:
    if b.args.keep:
        b.clusters.keep()
        print("\nkept (--keep): work directory %s, pgpass %s" % (b.work, b.clusters.pgpass))
        for cluster in b.clusters.items:
            print("  %s: port %d, data %s (stop: pg_ctl -D <data> stop as postgres)" % (cluster.name, cluster.port, cluster.data_dir))
    else:
        b.clusters.stop_all()
        shutil.rmtree(b.work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, terminate)
    started = datetime.now(UTC)
    b = new_bench(args, started)
    print("alembic-fleet bench: sections %s, --size-mb %d, --repeat %d" % (", ".join(args.sections), args.size_mb, args.repeat), flush=True)
    interrupted = False
    try:
        run_sections(b)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted", flush=True)
    finally:
        finish(b)
        b.report.meta["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
        b.report.save()
    print(table(b.report.rows))
    met = [row.met for row in b.report.rows if row.met is not None]
    print("\ntargets met: %d of %d; results: %s" % (sum(met), len(met), b.report.path.relative_to(REPO)))
    for name, error in b.report.errors.items():
        print("section %s FAILED: %s" % (name, error.splitlines()[0]))
    if interrupted:
        return 130
    return 1 if b.report.errors else 0


if __name__ == "__main__":
    sys.exit(main())

"""alembic-fleet's kill-point soak, long version: random kill points and delays from a seed (issue 15's acceptance).

    .venv/bin/python bench/soak.py [--runs 40] [--seed N] [--points P[,P]] [--rows N] [--set VAR=VALUE] [--keep]

Starts a throwaway PostgreSQL 15 cluster (tests/support/pgcluster.py), and runs the engine of the CI test
(tests/support/soak.py) --runs times: a prod migrate.yml run with an application writing all the while, killed
at a kill point drawn from the seed after a random delay inside its phase, then rerun; after each run the
invariants are checked. Prints a line per run, then the table of kill point -> outcome and the counts, and writes
bench/results/soak-<UTC time>.json (rewritten after each run). Exit status 1 when any count is not 0. Not part of
the test suite; tests/integration/test_soak.py is its short version. See bench/README.md.
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
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import yaml

REPO = Path(__file__).resolve().parents[1]
# The test suite's helpers are imported as `support`, as the tests do.
sys.path.insert(0, str(REPO / "tests"))

from support.pgcluster import start_cluster  # noqa: E402
from support.soak import KILL_POINTS, Outcome, Soak, random_plan, table, to_json, totals  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/soak.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40, help="kills (default 40); every kill point comes once before any repeats")
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill points and delays (default: from the clock, printed)")
    parser.add_argument("--points", default="", help="comma-separated kill points to draw from (default all): %s" % ", ".join(KILL_POINTS))
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the application's table (default 200000): pg_dump's work")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="a group variable over the repository's prod policy, e.g. fleet_transaction=revision (YAML value; repeatable)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the cluster and the work directory for a look afterwards")
    args = parser.parse_args(argv)
    args.policy = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            parser.error("--set %r: give VAR=VALUE" % item)
        args.policy[name.strip()] = yaml.safe_load(value)
    args.names = [name.strip() for name in args.points.split(",") if name.strip()] or list(KILL_POINTS)
    unknown = [name for name in args.names if name not in KILL_POINTS]
    if unknown:
        parser.error("unknown kill point(s) %s; choose from %s" % (", ".join(unknown), ", ".join(KILL_POINTS)))
    if args.runs < 1 or args.rows < 1:
        parser.error("--runs and --rows must be at least 1")
    if args.seed is None:
        args.seed = int(time.time()) % 100_000
    return args


def terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends the soak like Ctrl-C: through the finally blocks that stop the cluster."""
    raise KeyboardInterrupt


def one_line(number: int, runs: int, outcome: Outcome) -> str:
    return "[%d/%d] %-22s delay %.2f s  %-9s %5.1f s  %s" % (
        number,
        runs,
        outcome.point,
        outcome.delay,
        "on target" if outcome.on_target else "late",
        outcome.seconds,
        outcome.verdict(),
    )


def soak_all(soak: Soak, args: argparse.Namespace, outcomes: list[Outcome], save: Path, meta: dict[str, object]) -> None:
    for number, (point, delay) in enumerate(random_plan(args.runs, args.seed, args.names), start=1):
        outcome = soak.run(point, delay)
        outcomes.append(outcome)
        print(one_line(number, args.runs, outcome), flush=True)
        if outcome.findings():
            print(outcome.explain(), flush=True)
        save.write_text(to_json(outcomes, **meta))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, terminate)
    started = datetime.now(UTC)
    save = REPO / "bench" / "results" / ("soak-%s.json" % started.strftime("%Y%m%dT%H%M%SZ"))
    save.parent.mkdir(parents=True, exist_ok=True)
    meta: dict[str, object] = {
        "started_at": started.isoformat(),
        "options": {"runs": args.runs, "seed": args.seed, "points": args.names, "rows": args.rows, "policy": args.policy},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }
    policy = ", ".join("%s=%s" % item for item in args.policy.items()) or "the repository's prod policy"
    print("alembic-fleet soak: %d runs, --seed %d, %d kill points, --rows %d, %s" % (args.runs, args.seed, len(args.names), args.rows, policy), flush=True)
    work = Path(tempfile.mkdtemp(prefix="alembic-fleet-soak-"))
    cluster = start_cluster("soak")
    outcomes: list[Outcome] = []
    interrupted = False
    try:
        soak_all(Soak.prepare(cluster, work, args.rows, args.policy), args, outcomes, save, meta)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted", flush=True)
    finally:
        if args.keep:
            print("kept (--keep): work directory %s; cluster on port %d, data %s (stop it: pg_ctl -D <data> stop)" % (work, cluster.port, cluster.data_dir))
        else:
            cluster.destroy()
            shutil.rmtree(work, ignore_errors=True)
        meta["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
        save.write_text(to_json(outcomes, **meta))
    print("\n" + table(outcomes))
    print("\nresults: %s" % save.relative_to(REPO))
    if interrupted:
        return 130
    return 1 if any(totals(outcomes).values()) else 0


if __name__ == "__main__":
    sys.exit(main())

"""The review is paid once (issue 18): alembic_status over a host's databases reviews a plan once and reads it back
for the next database of the same call; a second run (another environment, another policy) over the same files
reads it from review_cache with its own policy applied; a changed revision file is reviewed afresh. Real PostgreSQL,
the forked fixture history (a branch point, a merge, data migrations through op.get_bind())."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from support.ansible_run import REPO, module
from support.pgcluster import PgCluster

from .test_bad_input import conn_args

FORKED = REPO / "tests" / "fixtures" / "histories" / "forked"


def status(cluster: PgCluster, ini: Path, cache: Path, **review: Any) -> list[dict[str, Any]]:
    done, result = module(
        "alembic_status",
        {
            "databases": [{"name": name, "config": str(ini), **conn_args(cluster, name)} for name in ("equities", "algorithms")],
            "review": True,
            "review_cache": str(cache),
            **review,
        },
    )
    assert done.rc == 0, done.output[-3000:]
    entries: list[dict[str, Any]] = result["databases"]
    assert all(not entry["failed"] for entry in entries), entries
    return entries


def test_a_plan_is_reviewed_once_across_databases_and_runs_with_each_runs_policy(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    project = tmp_path / "forked"
    shutil.copytree(FORKED, project, ignore=shutil.ignore_patterns("__pycache__"))
    ini, cache = project / "alembic.ini", tmp_path / "review-cache"

    dev = status(fresh_pg[0], ini, cache)
    assert [entry["review"]["cached"] for entry in dev] == [False, True]  # the second database of the call reads it back
    assert dev[0]["review"]["report"] == dev[1]["review"]["report"] and dev[0]["review"]["report"]
    assert len(list(cache.glob("*.json"))) == 1
    assert not any(entry["review"]["blocked"] for entry in dev)

    # Another run (another process), another environment's policy: read back from the directory, the policy applied.
    warned = {match.group(1) for line in dev[0]["review"]["report"] for match in [re.search(r"\): warning ([a-z-]+) ", line)] if match}
    assert warned, dev[0]["review"]["report"]
    rules = dict.fromkeys(sorted(warned), "error")
    prod = status(fresh_pg[0], ini, cache, review_rules=rules, review_block=True)
    assert [entry["review"]["cached"] for entry in prod] == [True, True]
    assert all(entry["review"]["errors"] > dev[0]["review"]["errors"] for entry in prod), (rules, prod[0]["review"]["report"])
    assert all(entry["review"]["blocked"] for entry in prod)

    # A changed revision file is a new review.
    revision = next((project / "migrations" / "versions").glob("*order_shipping.py"))
    revision.write_text(revision.read_text() + "\n# reviewed again after this change\n")
    again = status(fresh_pg[0], ini, cache)
    assert [entry["review"]["cached"] for entry in again] == [False, True]
    assert len(list(cache.glob("*.json"))) == 2

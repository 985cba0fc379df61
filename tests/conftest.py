# Test-wide setup: make this repo's module_utils importable as
# ansible.module_utils.fleet.<package>.<module> (as AnsiballZ does for the
# modules: module_utils/ joins ansible.module_utils' path, so its package fleet/
# is found there), and provide
# the PostgreSQL clusters that stand for two hosts.
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import ansible.module_utils
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(REPO / "module_utils"))
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

from support.pgcluster import PgCluster, start_cluster  # noqa: E402

APP_DATABASES = ("equities", "algorithms")


@pytest.fixture(scope="session")
def pg_clusters() -> Iterator[list[PgCluster]]:
    """Two throwaway PostgreSQL 15 clusters (hosts db1 and db2), scram auth."""
    clusters: list[PgCluster] = []
    try:
        for name in ("db1", "db2"):
            clusters.append(start_cluster(name))
        yield clusters
    finally:
        for cluster in clusters:
            cluster.destroy()


@pytest.fixture()
def fresh_pg(pg_clusters: list[PgCluster]) -> list[PgCluster]:
    """Both clusters with empty equities and algorithms databases."""
    for cluster in pg_clusters:
        for name in APP_DATABASES:
            cluster.reset_database(name)
    return pg_clusters

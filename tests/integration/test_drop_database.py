"""Dropping a database of ours (scratch, replaced) when a session the migration user may not end is on it.

`DROP DATABASE ... WITH (FORCE)` refuses the whole drop when one session on the database belongs to a role the
user may not signal: an autovacuum worker that has just started on a fresh scratch database (seen in CI: a stamp's
schema check failed with "must be a member of the role whose process is being terminated"), or another role's
session. The drop then falls back to a plain DROP, which stops autovacuum workers itself and waits up to 5 s for
the other sessions to leave. Here a superuser's session stands for the session the migration user may not end.
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from ansible.module_utils.fleet.core.common import parse_target
from ansible.module_utils.fleet.core.db import create_engine, drop_database
from support.pgcluster import PgCluster

pytestmark = pytest.mark.slow

NAME = "drop_me_scratch_0a1b2c"


def _exists(cluster: PgCluster) -> bool:
    return bool(cluster.execute("select 1 from pg_database where datname = %s", (NAME,)))


def _drop_as_migrator(cluster: PgCluster) -> None:
    target = parse_target(cluster.url("postgres"), cluster.app_password)
    engine = create_engine(target).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            drop_database(conn, NAME)
    finally:
        engine.dispose()


def test_a_session_the_user_may_not_end_is_waited_for(pg_clusters: list[PgCluster]) -> None:
    db1 = pg_clusters[0]
    db1.drop_database(NAME)
    db1.create_database(NAME)
    other = db1.connect(NAME)  # the superuser's: WITH (FORCE) may not end it
    leaves = threading.Timer(1.0, other.close)
    leaves.start()
    try:
        started = time.monotonic()
        _drop_as_migrator(db1)
        assert not _exists(db1)
        assert time.monotonic() - started >= 0.9, "dropped only once the other session had left"
    finally:
        leaves.cancel()
        other.close()
        db1.drop_database(NAME)


def test_a_session_that_stays_fails_the_drop_and_leaves_the_database(pg_clusters: list[PgCluster]) -> None:
    db1 = pg_clusters[0]
    db1.drop_database(NAME)
    db1.create_database(NAME)
    other = db1.connect(NAME)
    try:
        with pytest.raises(sa.exc.OperationalError, match="being accessed by other users"):
            _drop_as_migrator(db1)
        assert _exists(db1)
    finally:
        other.close()
        db1.drop_database(NAME)

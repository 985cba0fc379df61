"""The SQLite run lock: an flock on the database file, held by one run at a time, gone with its holder."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible.module_utils.fleet.core.common import FleetError, parse_target
from ansible.module_utils.fleet.state.lock import RunLock, sqlite_holder, sqlite_holder_path


@pytest.fixture()
def database(tmp_path: Path) -> Path:
    path = tmp_path / "eq.db"
    sqlite3.connect(path).close()
    return path


def test_second_run_waits_then_fails_naming_the_holder(database: Path) -> None:
    target = parse_target("sqlite:///%s" % database, None)
    with RunLock(target, "run-one", "alice@ctl", wait=0).held():
        holder = sqlite_holder(target)
        assert holder and holder["run_id"] == "run-one" and holder["pid"] == os.getpid()
        started = time.monotonic()
        with pytest.raises(FleetError) as caught:
            with RunLock(target, "run-two", "bob@ctl", wait=1).held():
                pass
        assert time.monotonic() - started >= 1
        message = str(caught.value)
        assert "locked by another alembic-fleet run" in message and "run run-one" in message and "\n" not in message
        # SQLite's own locking is unaffected: the database stays usable while the run lock is held.
        with sqlite3.connect(database) as conn:
            conn.execute("create table t (x integer)")
    assert sqlite_holder(target) is None
    assert sorted(p.name for p in database.parent.iterdir()) == ["eq.db"], "nothing is left beside the database"


def test_the_lock_dies_with_a_killed_holder(database: Path) -> None:
    target = parse_target("sqlite:///%s" % database, None)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, time; f = open(%r, 'rb'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)" % str(database),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(FleetError):
            with RunLock(target, "run-two", "bob@ctl", wait=0).held():
                pass
    finally:
        holder.kill()
        holder.wait()
    with RunLock(target, "run-three", "carol@ctl", wait=2).held():
        assert os.path.exists(sqlite_holder_path(target))

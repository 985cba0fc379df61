"""The kill-point soak, short version (issue 15's acceptance; the long one is bench/soak.py).

A prod migrate.yml run of one database, an application writing to it all the while, is killed once per phase:
preflight, the backup before the upgrade, the upgrade, the ledger (the upgrade and its ledger row have committed),
the verification and the post-upgrade backup. The kills hit different targets: every process of the run with its
control node, the module's python, its database session (pg_terminate_backend), pg_dump. After the rerun:
0 committed writes lost, 0 inconsistent databases, 0 stale locks, 0 password files, 0 orphan partial dumps (and the
rerun succeeded, no password in any output, the post-upgrade backup taken, the failure message told where the
database is). The engine and what each count means: tests/support/soak.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.faults import wait_for
from support.pgcluster import PgCluster
from support.soak import DBNAME, HEAD, HOST, KILL_POINTS, START, Outcome, Soak, Write, Writer, misleading_report, prepared

pytestmark = pytest.mark.slow

# One kill point per phase, each with a delay that lands inside its phase (pg_dump runs ~0.5 s, revision 4 sleeps
# 4 s, each read at head lingers 1 s while the kill is prepared). bench/soak.py draws them at random instead.
CI_POINTS = {
    "preflight/run": 0.2,
    "backup/module": 0.1,
    "upgrade/module": 1.0,
    "ledger-commit/session": 0.2,
    "verify/session": 0.3,
    "post-backup/pg_dump": 0.1,
}


@pytest.fixture(scope="module")
def soak(pg_clusters: list[PgCluster], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Soak]:
    with prepared(pg_clusters[0], tmp_path_factory.mktemp("soak"), rows=100_000) as prepared_soak:
        yield prepared_soak


# -- the checks themselves can fail ------------------------------------------------------------------------------
def test_the_checks_see_each_thing_they_count(soak: Soak) -> None:
    """A database and a work directory broken by hand: every count sees its own breakage."""
    cluster = soak.cluster
    soak.reset()
    writer = Writer(cluster)
    writer.start()
    try:
        wait_for("the application's writes", lambda: len(writer.committed) >= 10, timeout=30)
    finally:
        writer.stop()
    gone, changed = writer.committed[0], writer.committed[1]
    # As if written after revision 2 added events.note: the note the application wrote is not there.
    noted = Write(id=writer.committed[2].id, token=writer.committed[2].token, noted=True)
    writes = [gone, changed, noted, *writer.committed[3:]]
    cluster.execute("delete from events where id = %s", (gone.id,), dbname=DBNAME)
    cluster.execute("update events set payload = 'overwritten' where id = %s", (changed.id,), dbname=DBNAME)
    cluster.execute("alter table events add column note text", dbname=DBNAME)  # revision 2's column, at revision 1
    cluster.execute("create database soak_scratch_0badc0")
    holder = cluster.connect(DBNAME)
    try:
        with holder.cursor() as cur:
            cur.execute("select set_config('application_name', 'alembic-fleet:dead-run', false), pg_advisory_lock(42)")
        password_file = soak.scratch / "tmp" / "fleet-pgpass-1-x" / "pgpass"
        password_file.parent.mkdir(parents=True)
        password_file.write_text("*:*:*:*:%s\n" % soak.password)
        partial = soak.backups / "prod" / HOST / DBNAME / (".20260101T000000Z_%s.dump.pid1.x.partial" % START)
        partial.parent.mkdir(parents=True)
        partial.write_bytes(b"PGDMP")

        outcome = Outcome(point="by hand", delay=0)
        soak.check(outcome, writes)
    finally:
        holder.close()
        cluster.drop_database("soak_scratch_0badc0")
    found = outcome.findings()
    assert outcome.lost == [
        "row %d (%s) is gone" % (gone.id, gone.token),
        "row %d (%s) now holds payload 'overwritten'" % (changed.id, changed.token),
        "row %d (%s): its note is None, the application wrote %r" % (noted.id, noted.token, noted.token),
    ], found
    assert any("at %s the schema is" % START in line for line in outcome.inconsistent), found
    assert any("not at head" in line for line in outcome.inconsistent), found
    marks = ("alembic-fleet:dead-run", "advisory lock", "soak_scratch_0badc0")  # the session, its lock, the side database
    assert sorted(mark for line in outcome.stale for mark in marks if mark in line) == sorted(marks) and len(outcome.stale) == 3, found
    assert outcome.password_files == [str(password_file)], found
    assert outcome.partials == [str(partial)], found
    assert outcome.counts()["inconsistent databases"] == 1
    # The database is at revision 1: a failure message that says otherwise misleads.
    assert misleading_report(cluster, "db1/soak: Upgrade soak: failed -- the upgrade to %s is committed and verified and was NOT undone." % HEAD)
    unchanged = "db1/soak: Upgrade soak: failed -- nothing to undo: the failed transaction was rolled back and the database is where it was."
    assert not misleading_report(cluster, unchanged)


# -- one kill per phase ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CI_POINTS))
def test_a_kill_loses_no_write_and_leaves_nothing_behind(soak: Soak, name: str) -> None:
    outcome = soak.run(KILL_POINTS[name], CI_POINTS[name])
    print(outcome.explain())
    assert outcome.sent and outcome.on_target, "the kill came after its phase was over, so it proved nothing about it:\n%s" % outcome.explain()
    assert outcome.writes > 0 and outcome.reruns, outcome.explain()
    assert not outcome.findings(), outcome.explain()

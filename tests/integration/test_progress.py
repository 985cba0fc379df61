"""Long steps show progress: a backup of a few hundred MB on real PostgreSQL, run through backup.yml and through
migrate.yml in prod (whose pre-upgrade backup runs inside alembic_upgrade), prints a line at least every 10 s
(the default fleet_progress_interval) naming the host/database, the elapsed time and the bytes dumped so far.

The gaps are measured on the playbook's own stdout, read line by line as it comes."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from ansible.module_utils.fleet.backup.restore import run_pg_restore
from ansible.module_utils.fleet.core.common import FleetError, parse_target
from ansible.module_utils.fleet.core.progress import Progress
from support.ansible_run import BIN, REPO, _env, module
from support.pgcluster import PgCluster, pg_bin_dir

from .conftest import make_inventory, password_env
from .test_bad_input import EQUITIES_INI, conn_args
from .test_migrate_postgres import assert_no_secret
from .test_restore import back_up, restore_args

pytestmark = pytest.mark.slow

INTERVAL = 10.0  # the default fleet_progress_interval
SLACK = 0.75  # the line travels from the worker process to the main one, then through a pipe to this test
# Two million rows of hex text: ~256 MB on disk, ~120 MB dumped; at compress_level 9 (a real setting, pg_dump's
# slowest) pg_dump needs well over 10 s for it on this kind of machine.
FILLER_ROWS = 2_000_000
STEP = re.compile(r"^db1/equities: [a-z ]+ running \d+ s(, .+)?$")
BACKUP = re.compile(r"^(db1/equities): backup running (\d+) s, ([\d.]+) (B|kB|MB|GB|TB) dumped$")
UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


def fill(cluster: PgCluster, dbname: str, rows: int = FILLER_ROWS) -> None:
    """A large table of the app user's own, in a schema the project's models do not cover (the verification ignores it)."""
    conn = cluster.connect(dbname, superuser=False)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE SCHEMA archive")
            cur.execute(
                # UNLOGGED: written without WAL, so the test spends its time on the dump, not on making the data.
                "CREATE UNLOGGED TABLE archive.filler AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS a, md5((g * 13)::text) AS b "
                "FROM generate_series(1, %s) AS g",
                (rows,),
            )
    finally:
        conn.close()


def timed_run(playbook: str, inventory: Path, *args: str, env: dict[str, str]) -> tuple[int, list[tuple[float, str]]]:
    """Run a playbook; every line of its output with the moment (time.monotonic) this test read it."""
    argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / playbook), *args]
    extra = dict(env)  # ansible.cfg names plugins/action
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(argv, cwd=REPO, env=_env(extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic(), line.rstrip("\n")))
        rc = proc.wait(timeout=300)
    return rc, lines


def progress_runs(lines: Sequence[tuple[float, str]]) -> list[list[int]]:
    """The indexes of the progress lines of db1/equities, in runs: lines that follow each other with no other output."""
    runs: list[list[int]] = []
    for index, (_, text) in enumerate(lines):
        if not STEP.match(text):
            continue
        if runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


def check_progress(lines: Sequence[tuple[float, str]], secrets: Sequence[str], interval: float = INTERVAL) -> list[re.Match[str]]:
    """Every stretch of progress is as often as promised (every `interval` s); the backup lines, parsed."""
    output = "\n".join(text for _, text in lines)
    for secret in secrets:
        assert secret not in output
    runs = progress_runs(lines)
    assert runs, "a backup of well over 10 s prints progress:\n" + output[-4000:]
    for run in runs:
        # A TASK banner printed when the task starts: the first line comes within an interval of it.
        before = lines[run[0] - 1]
        if before[1].startswith("TASK ["):
            assert lines[run[0]][0] - before[0] <= interval + SLACK, lines[run[0] - 1 : run[0] + 1]
        moments = [lines[index][0] for index in run]
        gaps = [later - earlier for earlier, later in itertools.pairwise(moments)]
        assert all(interval - 2 <= gap <= interval + SLACK for gap in gaps), (gaps, [lines[i][1] for i in run])
        # After the last one, the next output (the task's end) comes within an interval too: no silent stretch.
        assert run[-1] + 1 < len(lines) and lines[run[-1] + 1][0] - moments[-1] <= interval + SLACK, lines[run[-1] :]
    backup = [(index, match) for run in runs for index in run if (match := BACKUP.match(lines[index][1]))]
    assert backup, output[-4000:]
    # The step's own elapsed time: the first backup line counts from the backup's start, which comes after the output
    # before its stretch (the TASK banner or the previous database's result). Measured against that output, not against
    # the interval: under load the reporter's thread may wake a second or two late, and its line then says so.
    first, match = backup[0]
    start = runs[[first in run for run in runs].index(True)][0]
    since_output = lines[first][0] - lines[start - 1][0]
    assert int(match.group(2)) <= since_output + 1 + SLACK, (match.group(0), since_output)
    backup_matches = [match for _, match in backup]
    dumped = [float(match.group(3)) * UNITS[match.group(4)] for match in backup_matches]
    assert dumped[0] > 0 and dumped == sorted(dumped), dumped
    # A short step (the small algorithms database) shows no progress at all.
    assert not [text for _, text in lines if re.match(r"^db1/algorithms: .* running", text)], output[-4000:]
    return backup_matches


def test_a_long_backup_through_backup_yml_shows_progress(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    fill(db1, "equities")
    inventory = make_inventory(tmp_path, fresh_pg)

    # Every 4 s here (the migrate test below keeps the default 10): how long the dump takes depends on the machine, and
    # several lines, each within an interval of the last, must come on a fast one too.
    args = ("-l", "db1", "-e", "fleet_backup_compress_level=9", "-e", "fleet_progress_interval=4")
    rc, lines = timed_run("backup.yml", inventory, *args, env=password_env(fresh_pg))

    assert rc == 0, "\n".join(text for _, text in lines)[-4000:]
    backup = check_progress(lines, [c.app_password for c in fresh_pg] + [c.superuser_password for c in fresh_pg], interval=4.0)
    assert len(backup) >= 2, [m.group(0) for m in backup]


def test_the_pre_upgrade_backup_of_migrate_yml_shows_progress(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    fill(db1, "equities")
    inventory = make_inventory(tmp_path, fresh_pg)

    # The post-upgrade backup (db_backup, as backup.yml's) is left out: the pre-upgrade one is what this test is about.
    args = ("-l", "db1", "-e", "fleet_backup_compress_level=9", "-e", "fleet_post_upgrade_backup=false")
    rc, lines = timed_run("migrate.yml", inventory, *args, env=password_env(fresh_pg))

    assert rc == 0, "\n".join(text for _, text in lines)[-4000:]
    check_progress(lines, [c.app_password for c in fresh_pg] + [c.superuser_password for c in fresh_pg])
    backups = sorted((tmp_path / "backups" / "prod" / "db1" / "equities").glob("*.dump"))
    assert backups and backups[0].stat().st_size > 50_000_000  # the long one was the pre-upgrade backup of the data


def test_a_restore_names_the_table_it_restores_and_its_errors_stay_readable(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    db1 = fresh_pg[0]
    run, result = module("alembic_upgrade", {"config": str(EQUITIES_INI), "target": "+3", **conn_args(db1)})
    assert run.rc == 0, run.output[-3000:]
    fill(db1, "equities", rows=1_000_000)
    backup = back_up(fresh_pg, tmp_path / "backups")

    # Ad hoc (host localhost), a line every 0.2 s (the restore of 1M rows takes a second or two on an idle machine):
    # pg_restore's --verbose lines say which table it restores.
    run, result = module("db_restore", restore_args(db1, backup["path"]), "-e", "fleet_progress_interval=0.2")
    assert run.rc == 0 and result.get("changed"), run.output[-3000:]
    assert_no_secret(run.output, fresh_pg)
    lines = [line for line in run.output.splitlines() if line.startswith("localhost/equities: restore running ")]
    assert any(
        re.fullmatch(r"localhost/equities: restore running \d+ s, restoring the data of table archive\.filler \(entry \d+ of \d+\)", line) for line in lines
    ), lines
    assert db1.execute("SELECT count(*) FROM archive.filler", dbname="equities") == [(1_000_000,)]

    # pg_restore failing under --verbose: the message holds its error, not the objects it was creating.
    db1.reset_database("scratch")
    db1.execute("CREATE SCHEMA archive AUTHORIZATION %s" % db1.app_user, dbname="scratch")
    target = parse_target("postgresql://%s@%s:%d/equities" % (db1.app_user, db1.host, db1.port), db1.app_password, 10)
    progress = Progress(str(tmp_path / "progress.json"))
    with pytest.raises(FleetError) as failure:
        run_pg_restore(target, str(pg_bin_dir() / "pg_restore"), backup["path"], "scratch", passes=None, progress=progress)
    message = str(failure.value)
    assert "pg_restore of the backup into a scratch database failed" in message and 'schema "archive" already exists' in message, message
    assert "creating" not in message and "connecting to database" not in message, message
    assert json.loads((tmp_path / "progress.json").read_text())["step"] == "restore"
    db1.drop_database("scratch")

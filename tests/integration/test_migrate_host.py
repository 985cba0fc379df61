"""migrate.yml migrates a host's pending databases in ONE alembic_upgrade call (issue 18): every database's preflight
passes first, then the call backs up, upgrades and verifies each on its own, and a database that fails does not stop
the others - the others get their post-upgrade backup and their summary line, the failed one is brought back, and the
host fails once, naming it. Real PostgreSQL, prod policy, the alembic_fleet screen."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support.ansible_run import REPO, playbook
from support.pgcluster import PgCluster

from .conftest import make_inventory, password_env
from .test_bad_input import project_copy
from .test_migrate_postgres import assert_no_secret, backups_under, head_of, version_of
from .test_rollback import FAILING_REVISION, ledger

pytestmark = pytest.mark.slow

SCREEN = {"ANSIBLE_STDOUT_CALLBACK": "alembic_fleet"}


def test_one_failing_database_does_not_stop_the_hosts_others_and_the_host_fails_once_naming_it(tmp_path: Path, fresh_pg: list[PgCluster]) -> None:
    ini = project_copy(tmp_path, ("0bad0bad0bad", "e5f7293c4a65", "unused"))
    (ini.parent / "versions" / "20260101_0000_0bad0bad0bad_extra_unused.py").write_text(FAILING_REVISION)
    inventory = make_inventory(tmp_path, fresh_pg, projects={"equities": str(ini)})
    db1 = fresh_pg[0]

    done = playbook(REPO / "migrate.yml", inventory, "-l", "db1", "-e", "fleet_progress_interval=3600", env={**password_env(fresh_pg), **SCREEN})
    assert_no_secret(done.output, fresh_pg)
    assert done.rc != 0 and done.recap()["db1"]["failed"] == 1, done.output[-4000:]

    # One call for the host's two pending databases.
    assert len(re.findall(r"^TASK \[fleet : Back up, upgrade and verify ", done.output, re.M)) == 1, done.output[-4000:]
    assert "TASK [fleet : Back up, upgrade and verify equities, algorithms]" in done.output, done.output[-4000:]

    lines = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in done.summary()}
    # algorithms: upgraded, verified, backed up before and after, recorded - the other database's failure changed nothing of it.
    assert re.fullmatch(r"upgraded base -> \w+ \(\d+ revisions\), backup /\S+\.dump, post-upgrade backup /\S+\.dump, \d+\.\d s", lines["db1/algorithms"]), lines
    assert version_of(db1, "algorithms") == [head_of("algorithms")]
    assert len(backups_under(tmp_path / "backups" / "prod" / "db1" / "algorithms")) == 2
    assert [(row["action"], row["outcome"]) for row in ledger(db1, "algorithms")] == [("migrate", "succeeded")]
    # equities: its failed transaction rolled back, recorded, and said in one line.
    assert lines["db1/equities"].startswith("FAILED - Upgrade equities: "), lines
    assert "division by zero" in lines["db1/equities"] and "nothing to undo: the failed transaction was rolled back" in lines["db1/equities"], lines
    assert version_of(db1, "equities") == []
    assert ledger(db1, "equities")[-1]["outcome"] == "failed"
    assert len([line for line in done.output.splitlines() if line.startswith("fatal: [db1]: db1/equities: Upgrade equities: ")]) == 1, done.output[-4000:]

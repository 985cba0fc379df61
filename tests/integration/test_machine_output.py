"""A run a CI job reads without parsing text: migrate.yml under the ansible.posix.json stdout callback (declared in
requirements.yml, installed by scripts/bootstrap through PyPI's `ansible`) prints one JSON document with the play
recap and, per database, the custom stat `alembic_fleet` that the fleet role's summary sets."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from support.ansible_run import BIN, REPO, _env
from support.pgcluster import PgCluster

from .conftest import HOSTS, PROJECTS, password_env

pytestmark = pytest.mark.slow

MACHINE_OUTPUT = {"ANSIBLE_STDOUT_CALLBACK": "json", "ANSIBLE_SHOW_CUSTOM_STATS": "true"}


def migrate_as_json(inventory: Path, clusters: list[PgCluster]) -> tuple[int, dict[str, Any], str]:
    """rc, stdout parsed as one JSON document, stderr: stdout must hold nothing else for a CI job to read it."""
    argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / "migrate.yml"), "-l", "prod"]
    done = subprocess.run(argv, cwd=REPO, env=_env({**password_env(clusters), **MACHINE_OUTPUT}), capture_output=True, text=True, timeout=300)
    try:
        document = json.loads(done.stdout)
    except json.JSONDecodeError as error:
        raise AssertionError("stdout is not one JSON document (%s):\n%s\n%s" % (error, done.stdout[-2000:], done.stderr[-2000:])) from None
    return done.returncode, document, done.stderr


def revisions_of(name: str) -> tuple[str, int]:
    script = ScriptDirectory.from_config(Config(str(PROJECTS[name])))
    return script.get_current_head() or "", len(list(script.walk_revisions()))


def test_json_callback_gives_the_recap_and_one_outcome_per_database(prod_inventory: Path, fresh_pg: list[PgCluster]) -> None:
    rc, document, stderr = migrate_as_json(prod_inventory, fresh_pg)
    assert rc == 0, stderr[-3000:] or json.dumps(document["stats"])
    for cluster in fresh_pg:
        for secret in (cluster.app_password, cluster.superuser_password):
            assert secret not in json.dumps(document)

    # The play recap, per host.
    for host in HOSTS:
        recap = document["stats"][host]
        assert recap["failures"] == 0 and recap["unreachable"] == 0, recap
        assert recap["changed"] > 0, recap

    # One outcome per database: the empty databases went to head, each after a verified backup (prod).
    outcomes = document["global_custom_stats"]["alembic_fleet"]
    assert set(outcomes) == {"%s/%s" % (host, name) for host in HOSTS for name in PROJECTS}
    run_ids = {outcome["run_id"] for outcome in outcomes.values()}
    assert len(run_ids) == 1 and None not in run_ids, run_ids
    for key, outcome in outcomes.items():
        head, count = revisions_of(key.split("/")[1])
        assert outcome["outcome"] == "upgraded", (key, outcome)
        assert outcome["check_mode"] is False and outcome["environment"] == "prod", (key, outcome)
        assert (outcome["before"], outcome["after"], outcome["revisions"]) == ([], [head], count), (key, outcome)
        assert isinstance(outcome["duration"], float) and outcome["duration"] > 0, (key, outcome)
        assert outcome["ledger_entry_id"], (key, outcome)
        for backup in (outcome["backup"], outcome["post_upgrade_backup"]):
            assert Path(backup).is_file() and Path(backup).is_relative_to(prod_inventory.parent / "backups"), (key, outcome)

    # Run again: nothing to do, and each database says so.
    rc, document, stderr = migrate_as_json(prod_inventory, fresh_pg)
    assert rc == 0, stderr[-3000:] or json.dumps(document["stats"])
    assert all(document["stats"][host]["changed"] == 0 for host in HOSTS), document["stats"]
    again = document["global_custom_stats"]["alembic_fleet"]
    assert set(again) == set(outcomes)
    for key, outcome in again.items():
        assert outcome["outcome"] == "unchanged" and outcome["before"] == outcome["after"] == outcomes[key]["after"], (key, outcome)
        assert outcome["run_id"] not in run_ids and outcome["backup"] is None, (key, outcome)

"""Issue 16 point 6: an inventory outside the checkout, and the playbooks run from any working directory.

Each run starts in an empty directory of its own (never the checkout) with an inventory copied outside the checkout.
Project paths must not follow the inventory's directory or the working directory: relative alembic_ini paths start at
the checkout (or at the inventory's own fleet_project_root), the databases and backups land where the inventory says,
and nothing is written beside the inventory or in the working directory.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

from support.ansible_run import BIN, REPO, Run

from .test_migrate_postgres import head_of

pytestmark = pytest.mark.slow


def run_elsewhere(book: str, inventory: Path, cwd: Path, *args: str, config: bool, env: dict[str, str] | None = None) -> Run:
    """ansible-playbook <checkout>/<book> from cwd, as an operator's shell would start it: no ANSIBLE_* or FLEET_*
    variable of ours, and ansible.cfg only when config (through ANSIBLE_CONFIG, since it is not in cwd)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "FLEET_"))}
    environment.update(
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",  # the same output with and without ansible.cfg
        ANSIBLE_LOCAL_TEMP=str(cwd.parent / "ansible-local"),
        PATH="%s:%s" % (BIN, environment.get("PATH", "")),
    )
    if config:
        environment["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    environment.update(env or {})
    argv = [str(BIN / "ansible-playbook"), str(REPO / book), "-i", str(inventory), *args]
    done = subprocess.run(argv, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)
    return Run(argv=argv, rc=done.returncode, output=done.stdout + done.stderr)


def copy_inventory(destination: Path, **group_vars: str) -> Path:
    """The checkout's inventory copied to destination, with these variables added to group_vars/local.yml."""
    shutil.copytree(REPO / "inventory", destination)
    local = destination / "group_vars" / "local.yml"
    data = yaml.safe_load(local.read_text())
    data.update(group_vars)
    local.write_text(yaml.safe_dump(data, sort_keys=False))
    return destination / "hosts.yml"


def sqlite_version(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("select version_num from alembic_version")]


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.fixture()
def cwd(tmp_path: Path) -> Path:
    directory = tmp_path / "cwd"
    directory.mkdir()
    return directory


def test_inventory_elsewhere_keeps_relative_alembic_ini_at_the_checkout(tmp_path: Path, cwd: Path) -> None:
    # The copied inventory sets no project root: its relative alembic_ini paths (migrations/...) are the checkout's;
    # databases and backups go where it says.
    dbdir, backups = tmp_path / "db", tmp_path / "backups"
    inventory = copy_inventory(
        tmp_path / "elsewhere" / "inventory",
        fleet_local_db_dir=str(dbdir),
        fleet_backup_root=str(backups),
        fleet_backup_required=True,
    )
    before = files_under(inventory.parent)
    first = run_elsewhere("migrate.yml", inventory, cwd, "-l", "local", config=True)
    assert first.rc == 0, first.output[-3000:]
    assert sqlite_version(dbdir / "equities.db") == [head_of("equities")]
    assert sqlite_version(dbdir / "algorithms.db") == [head_of("algorithms")]
    assert "localhost/equities: upgraded base -> %s" % head_of("equities") in first.output

    # A database with something to upgrade is backed up first, under the inventory's backup root.
    run = run_elsewhere("rollback.yml", inventory, cwd, "-l", "local", config=True)
    assert run.rc == 0, run.output[-3000:]
    again = run_elsewhere("migrate.yml", inventory, cwd, "-l", "local", config=True)
    assert again.rc == 0, again.output[-3000:]
    assert list((backups / "local" / "localhost" / "equities").glob("*.sqlite3")), files_under(tmp_path)

    status = run_elsewhere("status.yml", inventory, cwd, "-l", "local", "-e", "fleet_report_dir=%s" % (tmp_path / "reports"), config=True)
    assert (tmp_path / "reports" / "status.json").is_file(), status.output[-3000:]
    assert files_under(cwd) == set(), "the run wrote into its working directory"
    assert files_under(inventory.parent) == before, "the run wrote beside the inventory"


def test_inventory_with_its_own_project_root(tmp_path: Path, cwd: Path) -> None:
    # An inventory that names its own project: alembic_ini paths, the SQLite files (fleet_local_db_dir's default)
    # and a relative fleet_backup_root all start there - not at the inventory's directory, not at cwd.
    project = tmp_path / "project"
    for name in ("equities", "algorithms"):
        shutil.copytree(REPO / "migrations" / name, project / "migrations" / name, ignore=shutil.ignore_patterns("__pycache__"))
    # fleet_local_db_dir keeps the copy's "{{ __fleet_project_root }}/var/local".
    inventory = copy_inventory(
        tmp_path / "elsewhere" / "inventory",
        fleet_project_root=str(project),
        fleet_backup_root="backups",
        fleet_backup_required=True,
    )

    first = run_elsewhere("migrate.yml", inventory, cwd, "-l", "local", config=True)
    assert first.rc == 0, first.output[-3000:]
    assert sqlite_version(project / "var" / "local" / "equities.db") == [head_of("equities")]
    rollback = run_elsewhere("rollback.yml", inventory, cwd, "-l", "local", config=True)
    assert rollback.rc == 0, rollback.output[-3000:]
    again = run_elsewhere("migrate.yml", inventory, cwd, "-l", "local", config=True)
    assert again.rc == 0, again.output[-3000:]
    assert list((project / "backups" / "local" / "localhost" / "equities").glob("*.sqlite3")), files_under(tmp_path)
    assert files_under(cwd) == set(), "the run wrote into its working directory"


def test_alembic_ini_that_leads_nowhere_is_refused_naming_the_variable(tmp_path: Path, cwd: Path) -> None:
    dbdir = tmp_path / "db"
    inventory = copy_inventory(tmp_path / "elsewhere" / "inventory", fleet_local_db_dir=str(dbdir))
    host_vars = inventory.parent / "host_vars" / "localhost.yml"
    host_vars.write_text(host_vars.read_text().replace("migrations/equities/alembic.ini", "migrations/nope/alembic.ini"))
    missing = REPO / "migrations" / "nope" / "alembic.ini"
    for book in ("migrate.yml", "status.yml"):
        run = run_elsewhere(book, inventory, cwd, "-l", "local", config=True)
        assert run.rc == 2, run.output[-3000:]
        words = "fleet_databases of localhost: the alembic_ini of equities, migrations/nope/alembic.ini, is not there: %s" % missing
        assert words in run.output, run.output[-3000:]
        assert "set fleet_project_root to an absolute path; nothing was touched." in run.output, run.output[-3000:]
    assert not dbdir.exists()


def test_playbooks_run_from_another_directory_without_ansible_cfg(tmp_path: Path, cwd: Path) -> None:
    dbdir = tmp_path / "db"
    inventory = copy_inventory(tmp_path / "elsewhere" / "inventory", fleet_local_db_dir=str(dbdir))
    first = run_elsewhere("migrate.yml", inventory, cwd, "-l", "local", config=False)
    assert first.rc == 0, first.output[-3000:]
    assert sqlite_version(dbdir / "equities.db") == [head_of("equities")]
    assert sqlite_version(dbdir / "algorithms.db") == [head_of("algorithms")]
    status = run_elsewhere("status.yml", inventory, cwd, "-l", "local", "-e", "fleet_report_dir=%s" % (tmp_path / "reports"), config=False)
    assert status.rc == 0, status.output[-3000:]
    assert (tmp_path / "reports" / "status.json").is_file()
    assert files_under(cwd) == set()


def test_pipelining_without_ansible_cfg(tmp_path: Path, cwd: Path) -> None:
    """The playbooks pipeline modules also when ansible.cfg is not read: -vvv shows every file the connection
    writes (PUT ... AnsiballZ_<module>.py) and the remote temp directory stays empty. The inventory is a foreign one,
    without the checkout's ansible_pipelining; the role is found through ANSIBLE_ROLES_PATH here so that this test
    covers pipelining alone (the role lookup is the test above)."""
    dbdir, remote_tmp = tmp_path / "db", tmp_path / "remote-tmp"
    inventory = copy_inventory(tmp_path / "elsewhere" / "inventory", fleet_local_db_dir=str(dbdir))
    all_vars = inventory.parent / "group_vars" / "all.yml"
    all_vars.write_text("\n".join(line for line in all_vars.read_text().splitlines() if not line.startswith("ansible_pipelining")) + "\n")
    env = {"ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_REMOTE_TMP": str(remote_tmp)}
    reports = ("-e", "fleet_report_dir=%s" % (tmp_path / "reports"))

    piped = run_elsewhere("migrate.yml", inventory, cwd, "-l", "local", "-vvv", config=False, env=env)
    assert piped.rc == 0, piped.output[-3000:]
    assert sqlite_version(dbdir / "equities.db") == [head_of("equities")]
    assert "AnsiballZ_" not in piped.output, [line for line in piped.output.splitlines() if "AnsiballZ_" in line][:3]
    assert not remote_tmp.exists() or files_under(remote_tmp) == set(), files_under(remote_tmp)

    # The same run with pipelining turned off writes the module files: what the assertions above would see.
    written = run_elsewhere("status.yml", inventory, cwd, "-l", "local", "-vvv", "-e", "ansible_pipelining=false", *reports, config=False, env=env)
    assert "PUT " in written.output and "AnsiballZ_alembic_status.py" in written.output, written.output[-3000:]

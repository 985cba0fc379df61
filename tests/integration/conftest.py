from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from support.ansible_run import REPO, write_yaml
from support.pgcluster import PgCluster

HOSTS = ("db1", "db2")
PROJECTS = {"equities": REPO / "migrations" / "equities" / "alembic.ini", "algorithms": REPO / "migrations" / "algorithms" / "alembic.ini"}


def password_env(clusters: list[PgCluster]) -> dict[str, str]:
    return {"FLEET_TEST_%s_PASSWORD" % host.upper(): c.app_password for host, c in zip(HOSTS, clusters, strict=False)}


def make_inventory(root: Path, clusters: list[PgCluster], environment: str = "prod", projects: dict[str, str] | None = None, **policy: Any) -> Path:
    """A two-host inventory like the repo's prod example, pointing at the test clusters."""
    inventory = root / "inventory"
    write_yaml(inventory / "hosts.yml", {"all": {"children": {environment: {"hosts": dict.fromkeys(HOSTS)}}}})
    write_yaml(
        inventory / "group_vars" / "all.yml",
        {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "fleet_project_root": str(REPO),
            "fleet_backup_root": str(root / "backups"),
        },
    )
    # The repo's own policy for the environment, as in inventory/group_vars/<env>.yml.
    group = yaml.safe_load((REPO / "inventory" / "group_vars" / ("%s.yml" % environment)).read_text())
    group.update(policy)
    write_yaml(inventory / "group_vars" / ("%s.yml" % environment), group)
    for host, cluster in zip(HOSTS, clusters, strict=False):
        write_yaml(
            inventory / "host_vars" / ("%s.yml" % host),
            {
                "fleet_databases": [
                    {
                        "name": name,
                        "alembic_ini": (projects or {}).get(name, "migrations/%s/alembic.ini" % name),
                        "url": "postgresql://%s@127.0.0.1:%d/%s" % (cluster.app_user, cluster.port, name),
                        "password": "{{ lookup('ansible.builtin.env', 'FLEET_TEST_%s_PASSWORD') }}" % host.upper(),
                    }
                    for name in PROJECTS
                ]
            },
        )
    return inventory


@pytest.fixture()
def prod_inventory(tmp_path: Path, fresh_pg: list[PgCluster]) -> Path:
    return make_inventory(tmp_path, fresh_pg)

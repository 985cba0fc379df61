"""Issue 19: alembic-fleet installed as the collection alembic_fleet.fleet and used by full names from a consumer's
own project outside the checkout.

The collection is built once (scripts/build_collection) and installed once into a temporary collections path. Each
consumer project lives in tmp_path with its own ansible.cfg (collections_path only: no library, module_utils or roles
path of the checkout), its own inventory and its own small Alembic project. The databases are read directly, and the
installed collection must come out of every run exactly as it went in.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from support.ansible_run import BIN, REPO, Run, write_yaml
from support.pgcluster import PgCluster

pytestmark = pytest.mark.slow

FQ = "alembic_fleet.fleet"
MODULES = sorted(p.stem for p in (REPO / "library").glob("*.py"))
HEAD = "b2c3d4e5f6a7"
PASSWORD_ENV = "CONSUMER_DB_PASSWORD"


@dataclass(frozen=True)
class Installed:
    collections: Path  # the collections path given to ansible-galaxy -p
    root: Path  # .../ansible_collections/alembic_fleet/fleet


def main_role() -> str:
    """The role that holds the migration procedure, by its file (the role may be renamed; the collection follows)."""
    found = sorted(p.parent.parent.name for p in (REPO / "roles").glob("*/tasks/plan_run.yml"))
    assert len(found) == 1, found
    return found[0]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with its size and mtime (symlinks as themselves)."""
    result = {}
    for path in root.rglob("*"):
        info = path.lstat()
        result[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return result


def clean_env(**extra: str) -> dict[str, str]:
    """An operator's shell: none of our ANSIBLE_* or FLEET_* settings, the venv's tools first on PATH."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "FLEET_"))}
    # The controller imports the collection's action, callback and filter plugins, and Python writes their bytecode
    # beside them where it may (as root it may): a consumer who installs the collection writable keeps it out with
    # PYTHONPYCACHEPREFIX (or PYTHONDONTWRITEBYTECODE). The tests set the prefix, so the snapshot can be exact.
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    environment.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PATH="%s:%s" % (BIN, environment.get("PATH", "")))
    environment.update(extra)
    return environment


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("collection")
    built = subprocess.run(
        [str(BIN / "python"), str(REPO / "scripts" / "build_collection"), "--output-dir", str(work / "dist")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    tarball = Path(built.stdout.strip().splitlines()[-1])
    assert tarball.is_file() and tarball.parent == work / "dist", built.stdout
    collections = work / "collections"
    install = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "install", str(tarball), "-p", str(collections)],
        cwd=work,
        env=clean_env(PYTHONPYCACHEPREFIX=str(work / "pycache")),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    root = collections / "ansible_collections" / "alembic_fleet" / "fleet"
    assert (root / "MANIFEST.json").is_file()
    before = snapshot(root)
    yield Installed(collections=collections, root=root)
    # Nothing any test ran wrote inside the installed collection: no database, backup, report or cache.
    after = snapshot(root)
    assert after == before, {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def write_alembic_project(directory: Path) -> Path:
    """A small Alembic project of the consumer's own: models and two revisions."""
    (directory / "versions").mkdir(parents=True)
    (directory / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s\npath_separator = os\n")
    (directory / "models.py").write_text(
        textwrap.dedent(
            """\
            import sqlalchemy as sa

            metadata = sa.MetaData()
            sa.Table(
                "note",
                metadata,
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("body", sa.String(200), nullable=False),
                sa.Column("tag", sa.String(40), nullable=True),
            )
            """
        )
    )
    (directory / "env.py").write_text(
        textwrap.dedent(
            """\
            import os
            import sys

            import sqlalchemy as sa
            from alembic import context

            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from models import metadata  # noqa: E402

            config = context.config


            def run(connection):
                context.configure(connection=connection, target_metadata=metadata)
                with context.begin_transaction():
                    context.run_migrations()


            if context.is_offline_mode():
                context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True)
                with context.begin_transaction():
                    context.run_migrations()
            elif config.attributes.get("connection") is not None:
                run(config.attributes["connection"])
            else:
                engine = sa.create_engine(config.get_main_option("sqlalchemy.url"), poolclass=sa.pool.NullPool)
                with engine.connect() as connection:
                    run(connection)
                engine.dispose()
            """
        )
    )
    (directory / "script.py.mako").write_text("")
    (directory / "versions" / "a1b2c3d4e5f6_note.py").write_text(
        textwrap.dedent(
            """\
            import sqlalchemy as sa
            from alembic import op

            revision = "a1b2c3d4e5f6"
            down_revision = None
            branch_labels = None
            depends_on = None


            def upgrade():
                op.create_table(
                    "note",
                    sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("body", sa.String(200), nullable=False),
                )


            def downgrade():
                op.drop_table("note")
            """
        )
    )
    (directory / "versions" / ("%s_note_tag.py" % HEAD)).write_text(
        textwrap.dedent(
            """\
            import sqlalchemy as sa
            from alembic import op

            revision = "%s"
            down_revision = "a1b2c3d4e5f6"
            branch_labels = None
            depends_on = None


            def upgrade():
                op.add_column("note", sa.Column("tag", sa.String(40), nullable=True))


            def downgrade():
                op.drop_column("note", "tag")
            """
            % HEAD
        )
    )
    return directory / "alembic.ini"


def make_consumer(
    tmp_path: Path, installed: Installed, environment: str, hosts: dict[str, list[dict[str, str]]], project_root: bool = True, **policy: object
) -> Path:
    """A consumer project: ansible.cfg (collections_path only), inventory, its Alembic project under project/."""
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    (consumer / "ansible.cfg").write_text("[defaults]\ncollections_path = %s\n" % installed.collections)
    write_alembic_project(consumer / "project")
    inventory = consumer / "inventory"
    write_yaml(inventory / "hosts.yml", {"all": {"children": {environment: {"hosts": dict.fromkeys(hosts)}}}})
    write_yaml(
        inventory / "group_vars" / "all.yml",
        {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "ansible_pipelining": True,
            "fleet_backup_root": "backups",
            **({"fleet_project_root": str(consumer)} if project_root else {}),
        },
    )
    write_yaml(inventory / "group_vars" / ("%s.yml" % environment), {"fleet_environment": environment, **policy})
    for host, databases in hosts.items():
        write_yaml(inventory / "host_vars" / ("%s.yml" % host), {"fleet_databases": databases})
    return consumer


def run_in(consumer: Path, argv: list[str], **env: str) -> Run:
    """A command in the consumer's directory, reading the consumer's ansible.cfg and nothing of the checkout's."""
    done = subprocess.run(
        argv,
        cwd=consumer,
        env=clean_env(ANSIBLE_LOCAL_TEMP=str(consumer.parent / "ansible-local"), PYTHONPYCACHEPREFIX=str(consumer.parent / "pycache"), **env),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    return Run(argv=argv, rc=done.returncode, output=done.stdout + done.stderr)


def playbook(consumer: Path, book: str, *args: str, **env: str) -> Run:
    return run_in(consumer, [str(BIN / "ansible-playbook"), book, "-i", "inventory/hosts.yml", *args], **env)


def sqlite_heads(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("select version_num from alembic_version")]


def pg_heads(cluster: PgCluster, dbname: str) -> list[str]:
    return [row[0] for row in cluster.execute("select version_num from alembic_version", dbname=dbname)]


def pg_columns(cluster: PgCluster, dbname: str) -> set[str]:
    rows = cluster.execute("select column_name from information_schema.columns where table_name = 'note'", dbname=dbname)
    return {row[0] for row in rows}


def test_action_group_lists_every_module() -> None:
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    assert sorted(runtime["action_groups"]["all"]) == MODULES
    assert runtime["requires_ansible"] == ">=2.19.0,<2.20"


def test_installed_collection_layout(installed: Installed) -> None:
    root = installed.root
    assert sorted(p.stem for p in (root / "plugins" / "modules").glob("*.py")) == MODULES
    assert (root / "roles" / main_role() / "tasks" / "main.yml").is_file()
    assert not list(root.rglob("molecule")) and not (root / "tests").exists() and not (root / "library").exists()
    for link in sorted((REPO / "plugins" / "action").glob("*.py")):  # not the __pycache__ a run leaves
        installed_link = root / "plugins" / "action" / link.name
        assert installed_link.is_symlink() == link.is_symlink(), link.name
        assert installed_link.read_text() == link.read_text()
    for path in sorted((root / "plugins").rglob("*.py")):
        assert "ansible.module_utils.fleet" not in path.read_text(), path
    assert {"migrate.yml", "rollback.yml"} <= {p.name for p in (root / "playbooks").glob("*.yml")}


def test_migrate_playbook_by_full_name_on_sqlite(tmp_path: Path, installed: Installed) -> None:
    entries = [{"name": name, "alembic_ini": "project/alembic.ini", "url": "sqlite:///%s" % (tmp_path / "db" / ("%s.db" % name))} for name in ("one", "two")]
    consumer = make_consumer(tmp_path, installed, "local", {"localhost": entries}, fleet_create_databases=True, fleet_backup_required=False)
    (tmp_path / "db").mkdir()
    first = playbook(consumer, "%s.migrate" % FQ)
    assert first.rc == 0, first.output[-4000:]
    assert sqlite_heads(tmp_path / "db" / "one.db") == [HEAD]
    assert sqlite_heads(tmp_path / "db" / "two.db") == [HEAD]


def test_without_a_project_root_nothing_is_written_in_the_collection(tmp_path: Path, installed: Installed) -> None:
    # The role's default project root is the checkout that holds it; installed, that would be the collection.
    entries = [{"name": "one", "alembic_ini": "project/alembic.ini", "url": "sqlite:///%s" % (tmp_path / "db" / "one.db")}]
    consumer = make_consumer(tmp_path, installed, "local", {"localhost": entries}, project_root=False, fleet_create_databases=True)
    refused = playbook(consumer, "%s.migrate" % FQ)
    assert refused.rc != 0
    assert "fleet_project_root is not set, and this role runs from an installed collection" in refused.output, refused.output[-3000:]
    assert not (tmp_path / "db").exists()
    schedule = playbook(consumer, "%s.schedule" % FQ, "--check")
    assert schedule.rc != 0
    assert "inside an installed collection: set schedule_repo_dir" in schedule.output, schedule.output[-3000:]


def test_collection_on_postgresql_playbook_module_defaults_and_include_role(tmp_path: Path, installed: Installed, fresh_pg: list[PgCluster]) -> None:
    db1, db2 = fresh_pg
    # The environment variable holds the password; the inventory only names it.
    password = "{{ lookup('ansible.builtin.env', '%s') }}" % PASSWORD_ENV
    entries = [
        {
            "name": "equities",
            "alembic_ini": "project/alembic.ini",
            "url": "postgresql://%s@127.0.0.1:%d/equities" % (db1.app_user, db1.port),
            "password": password,
        }
    ]
    consumer = make_consumer(tmp_path, installed, "dev", {"db1": entries}, fleet_backup_required=True, fleet_create_databases=False, fleet_review=False)
    env = {PASSWORD_ENV: db1.app_password}

    # (1) The collection's migrate playbook by full name: to head, with a verified backup under the consumer's root.
    run = playbook(consumer, "%s.migrate" % FQ, **env)
    assert run.rc == 0, run.output[-4000:]
    assert pg_heads(db1, "equities") == [HEAD]
    assert pg_columns(db1, "equities") == {"id", "body", "tag"}
    assert db1.app_password not in run.output

    # (2) A play of the consumer's own: connection settings once, through the collection's action group.
    (consumer / "own.yml").write_text(
        textwrap.dedent(
            """\
            ---
            - name: Upgrade with module_defaults from the action group
              hosts: localhost
              connection: local
              gather_facts: false
              vars:
                ansible_python_interpreter: "{{ ansible_playbook_python }}"
                ansible_pipelining: true
              module_defaults:
                group/alembic_fleet.fleet.all:
                  url: "%s"
                  password: "{{ lookup('ansible.builtin.env', '%s') }}"
                  config: "{{ playbook_dir }}/project/alembic.ini"
              tasks:
                - name: Upgrade
                  alembic_fleet.fleet.alembic_upgrade:
                    target: head
                    create_database: false
                  register: upgraded
                - name: Status
                  alembic_fleet.fleet.alembic_status:
                  register: status
                - name: Show
                  ansible.builtin.debug:
                    msg: "upgraded={{ upgraded.changed }} current={{ status.current | default(status) }}"
            """
            % ("postgresql://%s@127.0.0.1:%d/algorithms" % (db2.app_user, db2.port), PASSWORD_ENV)
        )
    )
    own = run_in(consumer, [str(BIN / "ansible-playbook"), "own.yml", "-i", "localhost,"], **{PASSWORD_ENV: db2.app_password})
    assert own.rc == 0, own.output[-4000:]
    assert "upgraded=True" in own.output, own.output[-4000:]
    assert pg_heads(db2, "algorithms") == [HEAD]
    assert db2.app_password not in own.output

    # (3) The role by include_role with its full name, from a play of the consumer's own.
    role_entries = [
        {
            "name": "equities",
            "alembic_ini": "project/alembic.ini",
            "url": "postgresql://%s@127.0.0.1:%d/equities" % (db2.app_user, db2.port),
            "password": password,
        }
    ]
    write_yaml(consumer / "inventory" / "host_vars" / "db1.yml", {"fleet_databases": role_entries})
    (consumer / "role.yml").write_text(
        textwrap.dedent(
            """\
            ---
            - name: The collection's role from a play of our own
              hosts: all
              gather_facts: false
              tasks:
                - name: Migrate
                  ansible.builtin.include_role:
                    name: alembic_fleet.fleet.%s
            """
            % main_role()
        )
    )
    role = playbook(consumer, "role.yml", **{PASSWORD_ENV: db2.app_password})
    assert role.rc == 0, role.output[-4000:]
    assert pg_heads(db2, "equities") == [HEAD]
    assert list((consumer / "backups").rglob("*.dump")), "no backup under the consumer's fleet_backup_root"
    assert db2.app_password not in role.output


def test_ansible_doc_by_full_name(tmp_path: Path, installed: Installed) -> None:
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    (consumer / "ansible.cfg").write_text("[defaults]\ncollections_path = %s\n" % installed.collections)
    names = ["%s.%s" % (FQ, name) for name in MODULES]
    run = run_in(consumer, [str(BIN / "ansible-doc"), "--json", "-t", "module", *names])
    assert run.rc == 0, run.output[-3000:]
    docs = json.loads(run.output)
    assert sorted(docs) == names
    for name, doc in docs.items():
        assert doc["doc"]["requirements"] and doc["doc"]["version_added"] == "1.0.0", name
        assert doc["doc"]["author"] in ("alembic-fleet maintainers (@alembic-fleet)", ["alembic-fleet maintainers (@alembic-fleet)"]), name
        assert {"url", "password"} <= set(doc["doc"]["options"]) or name.endswith(".fleet_report"), name
    text = run_in(consumer, [str(BIN / "ansible-doc"), "-t", "module", "%s.alembic_upgrade" % FQ])
    assert text.rc == 0 and "REQUIREMENTS" in text.output.upper(), text.output[-3000:]


def test_ansible_builder_creates_the_build_context(tmp_path: Path) -> None:
    context = tmp_path / "context"
    done = subprocess.run(
        [str(BIN / "ansible-builder"), "create", "-f", str(REPO / "execution-environment.yml"), "-c", str(context)],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (context / "Containerfile").is_file() or (context / "Dockerfile").is_file()
    # The image gets the runtime requirements and the PostgreSQL client tools, and no test or lint tool.
    python = (context / "_build" / "requirements.txt").read_text()
    assert python == (REPO / "requirements.txt").read_text()
    assert re.search(r"(?m)^alembic==", python) and re.search(r"(?m)^psycopg2-binary==", python)
    assert not re.search(r"(?im)^(pytest|pytest-\S+|molecule|ansible-lint|mypy|ruff|yamllint)==", python)
    system = (context / "_build" / "bindep.txt").read_text()
    assert re.search(r"(?m)^postgresql-client \[platform:dpkg\]$", system) and re.search(r"(?m)^postgresql \[platform:rpm\]$", system)

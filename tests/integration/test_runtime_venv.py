"""The runtime requirements alone run the modules: requirements.txt holds no test or lint tool (issue 19).

A fresh virtualenv gets requirements.txt (what a control node or an execution environment needs) without the
`ansible` community bundle, which only the playbooks' optional collections need and which alone is 500 MB; the
modules need ansible-core, which it keeps. No pytest, molecule, ansible-lint, mypy, ruff or yamllint is installed,
and that virtualenv's `ansible` runs alembic_upgrade (in its own Python) to head on a SQLite database.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from support.ansible_run import REPO

pytestmark = pytest.mark.slow

DEV_TOOLS = ("pytest", "molecule", "ansible-lint", "mypy", "ruff", "yamllint", "ansible-builder")


def test_the_runtime_requirements_run_the_modules_without_any_development_tool(tmp_path: Path) -> None:
    runtime = [line for line in (REPO / "requirements.txt").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert not [line for line in runtime if line.split("==")[0].lower() in DEV_TOOLS], runtime
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(line for line in runtime if not line.startswith("ansible==")) + "\n")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "-r", str(requirements)], check=True, capture_output=True)

    installed = json.loads(subprocess.run([str(venv / "bin" / "pip"), "list", "--format=json"], check=True, capture_output=True, text=True).stdout)
    names = {package["name"].lower() for package in installed}
    assert not names & set(DEV_TOOLS), sorted(names & set(DEV_TOOLS))
    assert {"ansible-core", "alembic", "sqlalchemy", "psycopg2-binary", "pglast"} <= names

    database = tmp_path / "equities.db"
    args = {"config": str(REPO / "migrations" / "equities" / "alembic.ini"), "url": "sqlite:///%s" % database, "create_database": True, "target": "head"}
    done = subprocess.run(
        [
            str(venv / "bin" / "ansible"),
            "localhost",
            "-m",
            "alembic_upgrade",
            "-a",
            json.dumps(args),
            "-e",
            "ansible_python_interpreter=%s" % (venv / "bin" / "python"),
        ],
        cwd=REPO,
        env={"PATH": "%s:/usr/bin:/bin" % (venv / "bin"), "HOME": str(tmp_path), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp")},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with sqlite3.connect(database) as conn:
        revisions = [row[0] for row in conn.execute("select version_num from alembic_version")]
    assert revisions == ["e5f7293c4a65"], revisions

"""The main job on the embedded default: the repo's own inventory, `-l local`, SQLite."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from support.ansible_run import REPO, playbook

from .test_migrate_postgres import head_of

pytestmark = pytest.mark.slow


def sqlite_version(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("select version_num from alembic_version")]


def review_errors(output: str) -> list[str]:
    """Every review error a run printed ('<revision> (<file>.py): error <rule> ...'), whitespace collapsed."""
    return re.findall(r"\w+ \(\S+\.py\): error [a-z][\w-]+", " ".join(output.split()))


def test_migrate_local_brings_both_sqlite_databases_to_head_then_changes_nothing(tmp_path: Path) -> None:
    dbdir = tmp_path / "local"
    extra = ("-e", "fleet_local_db_dir=%s" % dbdir, "-e", "fleet_backup_root=%s" % (tmp_path / "backups"))
    check = playbook(REPO / "migrate.yml", REPO / "inventory" / "hosts.yml", "-l", "local", "--check", "--diff", *extra)
    assert check.rc == 0, check.output[-3000:]
    assert "CREATE TABLE companies" in check.output
    assert review_errors(check.output) == [], "the review judged SQLite by PostgreSQL's rules (issue 16, point 12)"
    assert not dbdir.exists(), "--check created the SQLite directory"

    first = playbook(REPO / "migrate.yml", REPO / "inventory" / "hosts.yml", "-l", "local", *extra)
    assert first.rc == 0, first.output[-3000:]
    assert first.recap()["localhost"]["changed"] == 1  # one upgrade call for the host's two databases
    assert sqlite_version(dbdir / "equities.db") == [head_of("equities")]
    assert sqlite_version(dbdir / "algorithms.db") == [head_of("algorithms")]
    assert "localhost/equities: upgraded base -> %s" % head_of("equities") in first.output
    assert review_errors(first.output) == [], "the first local run printed review errors"

    second = playbook(REPO / "migrate.yml", REPO / "inventory" / "hosts.yml", "-l", "local", *extra)
    assert second.rc == 0, second.output[-3000:]
    assert second.changed_total() == 0, second.output[-3000:]
    assert "nothing to do" in second.output
    assert not (tmp_path / "backups").exists(), "local policy takes no backups"

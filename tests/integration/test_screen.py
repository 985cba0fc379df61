"""What an operator reads: the alembic_fleet stdout callback (ansible.cfg's) on a 2 x 2 prod fleet. Each run ends with
a SUMMARY of exactly one unwrapped line per database, a failure is one line without Ansible's YAML excerpt, a host
that failed says which database failed and which were not reached, and the whole run is short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support.ansible_run import REPO, Run, playbook
from support.pgcluster import PgCluster

from .conftest import HOSTS, PROJECTS, password_env

pytestmark = pytest.mark.slow

SCREEN = {"ANSIBLE_STDOUT_CALLBACK": "alembic_fleet"}
KEYS = ["%s/%s" % (host, name) for host in HOSTS for name in PROJECTS]


def run(inventory: Path, book: str, clusters: list[PgCluster], *args: str) -> Run:
    # No progress lines (test_progress.py has them): a step slowed by a loaded machine would add one.
    quiet = ("-e", "fleet_progress_interval=3600")
    done = playbook(REPO / book, inventory, "-l", "prod", *quiet, *args, env={**password_env(clusters), **SCREEN})
    for cluster in clusters:
        assert cluster.app_password not in done.output and cluster.superuser_password not in done.output
    return done


def summary(done: Run) -> dict[str, str]:
    """The SUMMARY block: database -> its line (after '<host>/<database>: '); each database exactly once."""
    said = done.summary()
    keys = [line.split(": ", 1)[0] for line in said]
    assert sorted(keys) == sorted(KEYS), done.output[-3000:]
    for key in KEYS:  # nowhere else in the output, and on one line
        assert done.output.count(key + ":") == 1, (key, done.output[-3000:])
    return {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in said}


def assert_plain(done: Run) -> None:
    assert "Origin:" not in done.output and "FAILED! =>" not in done.output and "Traceback" not in done.output, done.output[-3000:]


def test_migrate_says_one_line_per_database_and_a_failure_in_one_line(prod_inventory: Path, fresh_pg: list[PgCluster]) -> None:
    first = run(prod_inventory, "migrate.yml", fresh_pg, "-e", "fleet_target=head-1")
    assert first.rc == 0, first.output[-3000:]
    for key, line in summary(first).items():
        assert re.fullmatch(r"upgraded base -> \w+ \(\d+ revisions\), backup /\S+\.dump, post-upgrade backup /\S+\.dump, \d+\.\d s", line), (key, line)

    # Check mode: what would be done, and the directory backups would go to, never a file that is not written.
    backups = sorted((prod_inventory.parent / "backups").rglob("*.dump"))
    checked = run(prod_inventory, "migrate.yml", fresh_pg, "--check")
    assert checked.rc == 0, checked.output[-3000:]
    for key, line in summary(checked).items():
        host, name = key.split("/")
        directory = prod_inventory.parent / "backups" / "prod" / host / name
        assert line.startswith("would upgrade ") and "(1 revision)" in line, (key, line)
        assert ", would back up to %s, then back up again, " % directory in line, (key, line)
    assert sorted((prod_inventory.parent / "backups").rglob("*.dump")) == backups

    done = run(prod_inventory, "migrate.yml", fresh_pg)
    assert done.rc == 0, done.output[-3000:]
    assert_plain(done)
    for key, line in summary(done).items():
        assert re.fullmatch(r"upgraded \w+ -> \w+ \(1 revision\), backup /\S+\.dump, post-upgrade backup /\S+\.dump, \d+\.\d s", line), (key, line)
    # Only what changed and the summary: a banner and a line per change, the plays, the summary, the recap (Ansible's
    # default screen printed 261 lines for this run).
    assert len([line for line in done.output.splitlines() if line.strip()]) <= 8 * len(KEYS), done.output

    failed = run(prod_inventory, "migrate.yml", fresh_pg, "-e", "fleet_target=zzzz")
    assert failed.rc != 0
    assert_plain(failed)
    fatal = [line for line in failed.output.splitlines() if line.startswith("fatal: [")]
    assert fatal == [fatal[0]] and "unknown revision 'zzzz'" in fatal[0], fatal
    # prod goes one host at a time and stops at the first that fails: db2 is never touched, and says so.
    lines = summary(failed)
    first_name, second_name = list(PROJECTS)
    assert lines["db1/%s" % first_name].startswith("FAILED - unknown revision 'zzzz': "), lines
    assert lines["db1/%s" % second_name] == "not reached (the run on db1 stopped at %s)" % first_name, lines
    assert lines["db2/%s" % first_name] == lines["db2/%s" % second_name] == "not reached (the run stopped before it)", lines
    assert failed.recap()["db1"]["failed"] == 1, failed.recap()


CALLBACK_PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Plan
      ansible.builtin.set_fact:
        fleet_summary_plan: "{{ ['a', 'b', 'c'] | map('regex_replace', '^', inventory_hostname ~ '/') | list }}"
    - name: Summary of a
      ansible.builtin.debug:
        msg: "{{ inventory_hostname }}/a: done in a line long enough to be wrapped by Ansible's default screen, which it is not here at all, 1.0 s"
      tags: [fleet_summary]
    - name: Something only ok
      ansible.builtin.debug:
        msg: "shown: a debug task says something"
    - name: Skipped
      ansible.builtin.command: "true"
      when: false
    - name: b fails on h1
      ansible.builtin.assert:
        that: inventory_hostname != 'h1'
        fail_msg: "h1/b: the thing is wrong:
          do this"
        quiet: true
    - name: Summary of b and c
      ansible.builtin.debug:
        msg: ["{{ inventory_hostname }}/b: fine", "{{ inventory_hostname }}/c: fine"]
      tags: [fleet_summary]
"""


def test_the_callback_ends_with_one_line_per_database_and_says_where_a_host_stopped(tmp_path: Path) -> None:
    """The alembic_fleet callback alone, on two local hosts: no database needed."""
    book = tmp_path / "play.yml"
    book.write_text(CALLBACK_PLAY)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    h1: {ansible_connection: local}\n    h2: {ansible_connection: local}\n")
    done = playbook(book, inventory, env=SCREEN)
    assert done.rc == 2, done.output
    assert done.summary() == [
        "h1/a: done in a line long enough to be wrapped by Ansible's default screen, which it is not here at all, 1.0 s",
        "h1/b: FAILED - the thing is wrong: do this",
        "h1/c: not reached (the run on h1 stopped at b)",
        "h2/a: done in a line long enough to be wrapped by Ansible's default screen, which it is not here at all, 1.0 s",
        "h2/b: fine",
        "h2/c: fine",
    ], done.output
    assert "fatal: [h1]: h1/b: the thing is wrong: do this\n" in done.output, done.output
    assert "ok: [h1] => shown: a debug task says something" in done.output
    assert "Skipped" not in done.output and "TASK [Plan]" not in done.output and "skipping" not in done.output
    assert_plain(done)

    # -v: Ansible's own screen (every task), the summary still at the end.
    verbose = playbook(book, inventory, "-v", env=SCREEN)
    assert "TASK [Plan]" in verbose.output and "FAILED! =>" in verbose.output and "SUMMARY *" in verbose.output

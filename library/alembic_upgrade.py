#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: alembic_upgrade
short_description: Upgrade an Alembic-managed database to a target revision
description:
  - Runs the project's pending revisions up to O(target) in-process through Alembic's Python API and the project's
    own C(env.py), on one connection and in one transaction (PostgreSQL and SQLite both have transactional DDL, so a
    failing revision leaves the database where it was, unless C(env.py) commits per migration).
  - Reports C(changed=false) when the database is already at O(target).
  - In check mode nothing is written (not even a missing database or version table); C(changed) tells whether
    anything is pending. With C(--diff) the SQL that runs (or would run) is returned as the diff, rendered by
    Alembic's offline mode for the database's dialect.
version_added: "1.0.0"
extends_documentation_fragment: [fleet.alembic_backup, fleet.connection, fleet.project, fleet.create, fleet.ledger, fleet.lock, fleet.timeouts]
options:
  target:
    description:
      - Revision to upgrade to. V(head) (default), V(heads), a full revision id or a unique prefix of at least four
        characters, V(+N) (N revisions above the current one), V(<rev>+N), V(head-N) (also written V(head~N) as in
        the old guides) or V(<branch>@head). Several revision ids separated by commas mean exactly those heads.
      - At a branch point V(+1) is ambiguous; the error names the candidates. On a project with several heads,
        V(head) names none of them, so give V(heads), V(<branch>@head) or a revision. After the upgrade, C(verify)
        checks the database is at exactly the revisions the run ended at.
    type: str
    default: head
  backup:
    description:
      - Take a verified backup first, exactly as M(db_backup) does (same options, manifest, checksum and retention),
        when something is pending and the database exists - under this run's lock, so nothing can move between the
        backup and the upgrade. The connection options are this module's own; the backup's revision is the
        database's current one. Returned in RV(backup), and its path and checksum go into the ledger row.
      - When the backup fails, nothing is upgraded, no ledger row is written and the module fails with the backup's
        message and RV(backup_failed).
      - In check mode, only the path the backup would have.
      - The fleet role uses this so that a database costs one module start, not three.
    type: dict
    suboptions:
      backup_root: {description: M(db_backup) O(db_backup#module:backup_root)., type: path, required: true}
      environment: {description: M(db_backup) O(db_backup#module:environment)., type: str, required: true}
      host: {description: M(db_backup) O(db_backup#module:host)., type: str, required: true}
      name: {description: M(db_backup) O(db_backup#module:name)., type: str, required: true}
      compress_level: {description: M(db_backup) O(db_backup#module:compress_level)., type: int, default: 1}
      pg_bin_dir: {description: M(db_backup) O(db_backup#module:pg_bin_dir)., type: path}
      count_tables: {description: M(db_backup) O(db_backup#module:count_tables)., type: int, default: 10}
      lock_wait_timeout: {description: M(db_backup) O(db_backup#module:lock_wait_timeout)., type: float, default: 5}
      version_table: {description: M(db_backup) O(db_backup#module:version_table)., type: str, default: alembic_version}
      keep_last: {description: M(db_backup) O(db_backup#module:keep_last)., type: int}
      keep_days: {description: M(db_backup) O(db_backup#module:keep_days)., type: float, default: 0}
      protect: {description: M(db_backup) O(db_backup#module:protect)., type: list, elements: path, default: []}
  verify:
    description:
      - Verify the database afterwards, exactly as M(alembic_verify) does with O(alembic_verify#module:revision) set
        to where the upgrade went (V(head) when O(target=head)) - revision, revision files against the ledger, and
        the schema - in the same process. Returned in RV(verify).
      - When the verification fails, the module fails with its message and RV(verify_failed); the upgrade stays
        (the caller decides - the fleet role downgrades back).
      - Skipped in check mode.
    type: dict
    suboptions:
      compare_schema: {description: M(alembic_verify) O(alembic_verify#module:compare_schema)., type: bool, default: true}
  config: {required: false}  # the fragment's description; required unless O(databases) is given
  url: {required: false}  # the fragment's description; required unless O(databases) is given
  databases:
    description:
      - Several databases in one call (a host's pending databases), instead of O(config), O(url) and O(password)
        (which are required without it) - one module start for all of them. Each entry gets this module's other options, overridden by its own.
      - Each database has its own lock, backup, transaction(s), verification and ledger row, exactly as a call of
        its own; every entry's options are checked before any database is reached.
      - The result is RV(databases), one result per entry in order. A database that fails is reported there
        (C(failed), C(msg), and where it is) and does not stop the others; the module then fails naming them.
    type: list
    elements: dict
    suboptions:
      name: {description: A name for the entry, returned with its result., type: str, required: true}
      config: {description: O(config) of this database., type: path, required: true}
      url: {description: O(url) of this database., type: str, required: true}
      password: {description: O(password) of this database., type: str}
      project_dir: {description: O(project_dir) of this database., type: path}
      target: {description: O(target) of this database., type: str}
      create_database: {description: O(create_database) of this database., type: bool}
      backup: {description: O(backup) of this database (its own directory)., type: dict}
      record: {description: O(record) of this database (its name and host in the ledger)., type: dict}
  parallel:
    description:
      - With O(databases), how many databases are worked at once, each in a process of its own (forked after the
        imports, which are paid once). 1 works them one after the other, in this process.
      - A process that ends without a result (killed) fails its own entry only, saying so. The processes die with
        the module, so a killed module leaves no database migrating behind it.
    type: int
    default: 1
attributes:
  check_mode:
    support: full
    description: Computes the pending revisions (and their SQL with C(--diff)) without writing anything.
  diff_mode:
    support: full
    description: Returns the revision before and after, and the SQL as C(prepared).
author: alembic-fleet maintainers (@alembic-fleet)
"""

EXAMPLES = r"""
- name: Bring equities to head
  alembic_upgrade:
    config: migrations/equities/alembic.ini
    url: postgresql://migrator@db1.example.com:5432/equities
    password: "{{ lookup('ansible.builtin.env', 'FLEET_PROD_DB_PASSWORD') }}"

- name: Apply only the next revision
  alembic_upgrade:
    config: migrations/equities/alembic.ini
    url: sqlite:////srv/app/var/equities.db
    target: "+1"

- name: Stop one revision below head (the guides' head~1)
  alembic_upgrade:
    config: migrations/equities/alembic.ini
    url: sqlite:////srv/app/var/equities.db
    target: head-1
"""

RETURN = r"""
databases:
  description:
    - With O(databases), one result per entry, in order - the entry's C(name), C(failed), C(msg) when it failed, and
      every field this module returns for one database, its own one-line C(summary) too. The top-level fields of a
      single database are then absent.
  returned: when O(databases) is given
  type: list
  elements: dict
summary:
  description: >-
    What the module did, in one line - C(upgraded c3e5071a2d43 -> e5f7293c4a65 (2 revisions), backup <path>), C(at
    e5f7293c4a65, nothing to do); in check mode C(would upgrade ...), C(would back up to <directory>); on failure
    C(upgrade failed: <message>).
  returned: always, also on failure
  type: str
  sample: "upgraded c3e5071a2d43 -> e5f7293c4a65 (2 revisions), backup /srv/backups/prod/db1/equities/20261123T172600Z_c3e5071a2d43.dump"
database:
  description: Password-free description of the target.
  returned: always
  type: str
  sample: migrator@db1.example.com:5432/equities
target:
  description: The target as given.
  returned: when the target parsed
  type: str
before:
  description: Revision ids in the database before the run.
  returned: always
  type: list
  elements: str
after:
  description: Revision ids in the database after the run (predicted in check mode).
  returned: always
  type: list
  elements: str
applied:
  description: Revisions applied, in order (empty in check mode).
  returned: always
  type: list
  elements: dict
  contains:
    revision: {description: Revision id., type: str}
    down_revision: {description: Parent revision ids., type: list, elements: str}
    message: {description: First line of the revision's docstring., type: str}
    file: {description: File name of the revision., type: str}
    direction: {description: C(upgrade) or C(downgrade)., type: str}
pending:
  description: Revisions that would be applied, in order.
  returned: in check mode, when something is pending
  type: list
  elements: dict
sql:
  description: The SQL rendered by Alembic's offline mode for the planned revisions.
  returned: with C(--diff), when something is pending
  type: str
sql_note:
  description:
    - The revisions whose SQL could not be rendered offline and why (one sentence each); each is also named by an
      SQL comment in its place in RV(sql), and the other revisions' SQL is shown. The migration itself is unaffected.
  returned: with C(--diff), when a revision could not be rendered
  type: str
lock_waited:
  description: Seconds spent waiting for another run's lock on this database.
  returned: when something changed
  type: float
transactional:
  description: >-
    Whether the whole change ran in one transaction. False when a revision uses C(autocommit_block()), which
    commits what precedes it; the ledger row is then finished right after Alembic's own commits.
  returned: when something changed or failed
  type: bool
partial:
  description: >-
    On failure of a change that was not one transaction (O(transaction=revision), or a revision using
    C(autocommit_block())), true - the revisions before the failing one stayed committed, and with
    C(autocommit_block()) part of the failing one may have stayed even when the revision did not move.
  returned: on such a failure
  type: bool
whole_revisions:
  description: >-
    With RV(partial), true when every revision that stayed was committed whole and the failing one rolled back
    entirely (O(transaction=revision), no C(autocommit_block())): downgrading back is sound, and the migrate procedure
    does that; false means part of a revision may have stayed, and the procedure restores the backup.
  returned: with RV(partial)
  type: bool
ledger_entry_id:
  description: Id of the ledger row that records this change.
  returned: when something changed
  type: str
backup:
  description: What O(backup) returned - M(db_backup)'s result (C(path), C(manifest_path), C(manifest), C(retention), ...).
  returned: when O(backup) is set and a backup was taken (or would be, in check mode)
  type: dict
backup_failed:
  description: True when the backup of O(backup) failed; nothing was upgraded.
  returned: on that failure
  type: bool
verify:
  description: What O(verify) returned - M(alembic_verify)'s result (C(current), C(expected), C(problems), ...).
  returned: when O(verify) is set, outside check mode
  type: dict
verify_failed:
  description: True when the verification of O(verify) failed; the upgrade itself stayed.
  returned: on that failure
  type: bool
database_created:
  description: Whether the module created the database.
  returned: when it did
  type: bool
log:
  description: Alembic's own log lines of the run.
  returned: success
  type: list
  elements: str
duration:
  description: Seconds the module spent.
  returned: success
  type: float
"""


from ansible.module_utils.fleet.core.common import CONNECTION_ARGUMENT_SPEC, PROJECT_ARGUMENT_SPEC
from ansible.module_utils.fleet.core.module import FleetModule, run_module
from ansible.module_utils.fleet.ops.operations import (
    BACKUP_OPTIONS,
    CREATE_ARGUMENT_SPEC,
    IMPORT_ERROR,
    MIGRATE_ENTRY_OPTIONS,
    TIMEOUT_ARGUMENT_SPEC,
    alembic_argument_spec,
    make_migrate,
    make_migrate_many,
)
from ansible.module_utils.fleet.report.summary import upgrade_many_summary, upgrade_summary
from ansible.module_utils.fleet.state.ledger import LEDGER_ARGUMENT_SPEC
from ansible.module_utils.fleet.state.lock import LOCK_ARGUMENT_SPEC


def main() -> None:
    module = FleetModule(
        argument_spec=alembic_argument_spec(
            CREATE_ARGUMENT_SPEC,
            LEDGER_ARGUMENT_SPEC,
            LOCK_ARGUMENT_SPEC,
            TIMEOUT_ARGUMENT_SPEC,
            target=dict(type="str", default="head"),
            backup=dict(type="dict", options=BACKUP_OPTIONS),
            verify=dict(type="dict", options=dict(compare_schema=dict(type="bool", default=True))),
            config=dict(PROJECT_ARGUMENT_SPEC["config"], required=False),
            url=dict(CONNECTION_ARGUMENT_SPEC["url"], required=False),
            databases=dict(type="list", elements="dict", options=MIGRATE_ENTRY_OPTIONS),
            parallel=dict(type="int", default=1),
        ),
        required_one_of=[("url", "databases")],
        required_together=[("config", "url")],
        mutually_exclusive=[("url", "databases"), ("config", "databases"), ("password", "databases")],
        supports_check_mode=True,
    )
    if module.params["databases"] is not None:
        run_module(module, make_migrate_many("upgrade"), IMPORT_ERROR, summary=upgrade_many_summary)
    run_module(module, make_migrate("upgrade"), IMPORT_ERROR, summary=upgrade_summary)


if __name__ == "__main__":
    main()

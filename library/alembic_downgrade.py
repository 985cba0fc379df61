#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: alembic_downgrade
short_description: Downgrade an Alembic-managed database to an earlier revision
description:
  - Runs the C(downgrade()) of each revision above O(target), newest first, in-process through Alembic's Python API
    and the project's own C(env.py), on one connection and in one transaction.
  - Reports C(changed=false) when the database is already at O(target).
  - In check mode nothing is written; C(changed) tells whether anything would be undone. With C(--diff) the SQL is
    returned as the diff (Alembic offline mode; SQLite table rebuilds cannot render offline and say so).
version_added: "1.0.0"
extends_documentation_fragment: [fleet.alembic_backup, fleet.connection, fleet.project, fleet.ledger, fleet.lock, fleet.timeouts]
options:
  target:
    description:
      - Revision to downgrade to. V(-N) (N revisions below the current one), V(base) (undo every revision, which drops
        the project's tables), a full revision id or unique prefix of at least four characters, V(<rev>-N) or
        V(head-N) (also written V(head~N)), V(<branch>@<rev>) (that branch only, Alembic's way).
      - A revision id means the database ends at exactly that revision - on a project with branches, revisions of
        other branches applied since are undone too (Alembic's own walk does nothing when the target is one of
        several heads). Several ids separated by commas (V(a1b2c3d4e5f6,0f9e8d7c6b5a)) mean exactly those heads
        (how a rollback undoes a run that started at several heads).
    type: str
    required: true
  refuse:
    description:
      - Refuse, before anything runs, a downgrade that undoes a revision of these kinds. Each revision's
        C(downgrade()) is classified by reading its source - V(lossy) drops tables or columns (their data is lost),
        V(irreversible) is missing, empty while C(upgrade()) is not, or raises on every path; V(unknown) raises only
        when a condition holds, or calls what the analysis cannot read - it is attempted by default, since a
        downgrade that fails rolls back in its transaction. The message names the revisions and suggests restoring
        the backup.
    type: list
    elements: str
    choices: [lossy, irreversible, unknown]
    default: [irreversible]
  floor:
    description:
      - Refuse a downgrade that would undo this revision (the lowest one a rollback may reach without an override);
        several revisions separated by commas.
    type: str
  undo_entry_id:
    description: Ledger entry this downgrade undoes; it is marked C(rolled_back) in the same transaction.
    type: str
  backup:
    description:
      - Take a verified backup first, exactly as M(db_backup) does, when a revision to undo is classed V(lossy) (its
        C(downgrade()) drops tables or columns, whose data would otherwise be gone for good) - under this run's lock,
        right before the downgrade. Returned in RV(backup); its path and checksum go into the ledger row.
      - When the backup fails, nothing is downgraded, no ledger row is written and the module fails with
        RV(backup_failed). In check mode, only the path the backup would have.
      - The rollback procedure passes it where the environment requires backups (C(fleet_backup_required)).
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
attributes:
  check_mode:
    support: full
    description: Computes the revisions to undo (and their SQL with C(--diff)) without writing anything.
  diff_mode:
    support: full
    description: Returns the revision before and after, and the SQL as C(prepared).
author: alembic-fleet maintainers (@alembic-fleet)
"""

EXAMPLES = r"""
- name: Undo the last revision
  alembic_downgrade:
    config: migrations/equities/alembic.ini
    url: postgresql://migrator@db1.example.com:5432/equities
    password: "{{ lookup('ansible.builtin.env', 'FLEET_PROD_DB_PASSWORD') }}"
    target: "-1"

- name: Go back to a known revision
  alembic_downgrade:
    config: migrations/equities/alembic.ini
    url: sqlite:////srv/app/var/equities.db
    target: b2d4f608
"""

RETURN = r"""
summary:
  description: >-
    What the module did, in one line - C(downgraded e5f7293c4a65 -> c3e5071a2d43 (1 revision undone)), C(already at
    c3e5071a2d43, nothing to do); in check mode C(would downgrade ...); on failure C(downgrade failed: <message>).
  returned: always, also on failure
  type: str
  sample: "downgraded e5f7293c4a65 -> c3e5071a2d43 (1 revision undone)"
database:
  description: Password-free description of the target.
  returned: always
  type: str
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
  description: Revisions undone, newest first (empty in check mode). Same keys as in M(alembic_upgrade).
  returned: always
  type: list
  elements: dict
pending:
  description: Revisions that would be undone, each with C(reversibility) (reversible, lossy, irreversible) and C(reasons).
  returned: in check mode, or when the downgrade was refused
  type: list
  elements: dict
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
sql:
  description: The SQL rendered by Alembic's offline mode.
  returned: with C(--diff), when something would be undone
  type: str
backup:
  description: What O(backup) returned - M(db_backup)'s result (C(path), C(manifest_path), C(manifest), ...).
  returned: when O(backup) is set and a lossy revision was to be undone
  type: dict
backup_failed:
  description: True when the backup of O(backup) failed; nothing was downgraded.
  returned: when the backup failed
  type: bool
sql_note:
  description:
    - The revisions whose SQL could not be rendered offline and why (one sentence each); each is also named by an
      SQL comment in its place in RV(sql), and the other revisions' SQL is shown. The migration itself is unaffected.
  returned: with C(--diff), when a revision could not be rendered
  type: str
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


from ansible.module_utils.fleet.core.module import FleetModule, run_module
from ansible.module_utils.fleet.ops.operations import (
    BACKUP_OPTIONS,
    IMPORT_ERROR,
    TIMEOUT_ARGUMENT_SPEC,
    alembic_argument_spec,
    make_migrate,
)
from ansible.module_utils.fleet.report.summary import downgrade_summary
from ansible.module_utils.fleet.state.ledger import LEDGER_ARGUMENT_SPEC
from ansible.module_utils.fleet.state.lock import LOCK_ARGUMENT_SPEC


def main() -> None:
    module = FleetModule(
        argument_spec=alembic_argument_spec(
            LEDGER_ARGUMENT_SPEC,
            LOCK_ARGUMENT_SPEC,
            TIMEOUT_ARGUMENT_SPEC,
            target=dict(type="str", required=True),
            refuse=dict(type="list", elements="str", choices=["lossy", "irreversible", "unknown"], default=["irreversible"]),
            floor=dict(type="str"),
            undo_entry_id=dict(type="str"),
            backup=dict(type="dict", options=BACKUP_OPTIONS),
        ),
        supports_check_mode=True,
    )
    run_module(module, make_migrate("downgrade"), IMPORT_ERROR, summary=downgrade_summary)


if __name__ == "__main__":
    main()

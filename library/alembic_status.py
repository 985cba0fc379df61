#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: alembic_status
short_description: Report an Alembic-managed database's revision and what is pending
description:
  - Reads the current revision(s) of a database through the project's own C(env.py), the project's heads, whether
    the database is versioned, and the revisions pending from the current revision to O(target), in order.
  - Read-only. It never changes anything and always returns C(changed=false).
version_added: "0.1.0"
extends_documentation_fragment: [fleet.connection, fleet.project, fleet.create]
options:
  target:
    description:
      - Revision to list pending revisions up to. Same grammar as M(alembic_upgrade) O(alembic_upgrade#module:target).
      - When the project has several heads, V(head) is read as V(heads).
    type: str
    default: head
  ledger_table:
    description: Name of the run ledger table to report the last runs from.
    type: str
    default: alembic_fleet_ledger
  ledger_limit:
    description: How many of the newest ledger rows to return in RV(last_runs).
    type: int
    default: 5
  long_transaction_seconds:
    description: A transaction open longer than this counts as a blocker in RV(blockers) (PostgreSQL).
    type: float
    default: 60
  wait_for_quiet:
    description:
      - When something is pending and RV(blockers) is not empty, wait up to this many seconds for them to end, then
        fail naming them, instead of letting the migration queue behind them (and every application query behind
        the migration). V(0) only reports them.
    type: float
    default: 0
  create_database:
    description:
      - When the database does not exist, report it as empty (C(exists=false), everything pending) instead of
        failing, because the upgrade will create it.
attributes:
  check_mode:
    support: full
    description: The module never changes anything.
  diff_mode:
    support: none
author: alembic-fleet
"""

EXAMPLES = r"""
- name: What is pending on equities
  alembic_status:
    config: migrations/equities/alembic.ini
    url: postgresql://migrator@db1.example.com:5432/equities
    password: "{{ lookup('ansible.builtin.env', 'FLEET_PROD_DB_PASSWORD') }}"
  register: equities_status

- name: Show the pending revisions
  ansible.builtin.debug:
    msg: "{{ equities_status.pending | map(attribute='message') | list }}"
"""

RETURN = r"""
database:
  description: Password-free description of the target.
  returned: always
  type: str
  sample: migrator@db1.example.com:5432/equities
exists:
  description: Whether the database exists.
  returned: success
  type: bool
versioned:
  description: Whether the database has an Alembic version table.
  returned: success
  type: bool
current:
  description: Revision ids recorded in the database (empty for an unversioned database).
  returned: success
  type: list
  elements: str
heads:
  description: Head revisions of the project's script directory.
  returned: always
  type: list
  elements: str
multiple_heads:
  description: Whether the project has more than one head.
  returned: always
  type: bool
pending:
  description: Revisions that an upgrade to O(target) would apply, in order.
  returned: success
  type: list
  elements: dict
  contains:
    revision: {description: Revision id., type: str}
    down_revision: {description: Parent revision ids., type: list, elements: str}
    message: {description: First line of the revision's docstring., type: str}
    file: {description: File name of the revision., type: str}
    direction: {description: Always C(upgrade)., type: str}
pending_count:
  description: Number of pending revisions.
  returned: success
  type: int
at_target:
  description: Whether nothing is pending.
  returned: success
  type: bool
server_version:
  description: Version of the database server.
  returned: when the database exists
  type: str
last_runs:
  description: The newest ledger rows, newest first (run_id, action, outcome, environment, host, name, operator,
    started_at, finished_at, duration, from_revision, to_revision, backup_path, backup_sha256, revisions, message,
    undone_by).
  returned: success
  type: list
  elements: dict
last_change:
  description: The newest migrate/upgrade ledger row - the run a rollback would undo - or null.
  returned: success
  type: dict
blockers:
  description: Sessions a migration would queue behind - transactions open longer than O(long_transaction_seconds)
    and running C(pg_dump)s (not alembic-fleet's own) - each with pid, application_name, state, seconds, query.
  returned: success
  type: list
  elements: dict
blockers_visible:
  description: Whether the user can see other users' sessions (superuser or C(pg_read_all_stats)); without it
    blockers of other users go unseen and RV(blockers_note) says so.
  returned: for PostgreSQL databases
  type: bool
blockers_note:
  description: Why blockers may be missing.
  returned: when RV(blockers_visible) is false
  type: str
lock_holder:
  description: The alembic-fleet run holding this database's run lock (pid, run_id, client, since), or null.
  returned: success
  type: dict
revisions:
  description: Number of revisions in the project.
  returned: always
  type: int
duration:
  description: Seconds the module spent.
  returned: success
  type: float
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.fleet_module import run_module
from ansible.module_utils.fleet_ops import (
    CREATE_ARGUMENT_SPEC,
    IMPORT_ERROR,
    alembic_argument_spec,
    status,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=alembic_argument_spec(
            CREATE_ARGUMENT_SPEC,
            target=dict(type="str", default="head"),
            ledger_table=dict(type="str", default="alembic_fleet_ledger"),
            ledger_limit=dict(type="int", default=5),
            long_transaction_seconds=dict(type="float", default=60),
            wait_for_quiet=dict(type="float", default=0),
        ),
        supports_check_mode=True,
    )
    run_module(module, status, IMPORT_ERROR)


if __name__ == "__main__":
    main()

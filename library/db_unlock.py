#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: db_unlock
short_description: Break-glass release of a database's alembic-fleet run lock
description:
  - The run lock normally never needs releasing - it is a PostgreSQL advisory lock held by the migrating module's
    own session (or an OS file lock for SQLite) and dies with it. This module is for the rare session that is still
    alive but stuck (for example a control node that lost its network while its connection lingers on the server).
  - PostgreSQL - ends the session holding the lock with C(pg_terminate_backend) (its transaction rolls back), but
    only if it is an alembic-fleet session; records the release in the ledger (action C(unlock)).
  - SQLite - a lock is only ever held by a live process; the module names it instead of killing it.
  - In check mode it reports the holder and ends nothing.
version_added: "1.0.0"
extends_documentation_fragment: [fleet.database, fleet.connection, fleet.ledger]
attributes:
  check_mode:
    support: full
    description: Reports the holder without ending it.
  diff_mode:
    support: none
author: alembic-fleet maintainers (@alembic-fleet)
"""

EXAMPLES = r"""
- name: Release a stuck run lock on equities
  db_unlock:
    url: postgresql://migrator@db1.example.com:5432/equities
    password: "{{ lookup('ansible.builtin.env', 'FLEET_PROD_DB_PASSWORD') }}"
"""

RETURN = r"""
summary:
  description: >-
    What the module did, in one line - C(ended pid <pid> (run <run_id>, since <time>)) or C(holds no lock, nothing
    to release); in check mode C(would end ...); on failure C(release of the run lock failed: <message>).
  returned: always, also on failure
  type: str
  sample: "holds no lock, nothing to release"
database:
  description: Password-free description of the target.
  returned: always
  type: str
holder:
  description: The session that held the lock (pid, application_name, run_id, user, client, since, state), or null.
  returned: always
  type: dict
ledger_entry_id:
  description: Id of the ledger row that records the release.
  returned: when a lock was released
  type: str
"""


from ansible.module_utils.fleet.core.common import CONNECTION_ARGUMENT_SPEC, argument_spec
from ansible.module_utils.fleet.core.module import FleetModule, run_module
from ansible.module_utils.fleet.report.summary import unlock_summary
from ansible.module_utils.fleet.state.ledger import LEDGER_ARGUMENT_SPEC
from ansible.module_utils.fleet.state.lock import unlock


def main() -> None:
    module = FleetModule(argument_spec=argument_spec(CONNECTION_ARGUMENT_SPEC, LEDGER_ARGUMENT_SPEC), supports_check_mode=True)
    run_module(module, unlock, summary=unlock_summary)


if __name__ == "__main__":
    main()

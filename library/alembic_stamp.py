#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: alembic_stamp
short_description: Record a revision in a database without running migrations
description:
  - Writes O(target) into the database's Alembic version table without running any migration, as
    C(alembic stamp) does. Used to baseline a database whose schema was created outside Alembic.
  - This trusts the operator that the schema really is at O(target); verify it with M(alembic_verify) afterwards.
  - Reports C(changed=false) when the database already records O(target). Check mode writes nothing.
version_added: "1.0.0"
extends_documentation_fragment: [fleet.alembic, fleet.connection, fleet.project, fleet.ledger, fleet.lock]
options:
  target:
    description: Revision to record. V(head), V(heads), V(base) (empties the version table) or a revision id or unique prefix.
    type: str
    required: true
  require_schema_match:
    description:
      - Before stamping, build the schema the migrations produce at O(target) in a scratch database (PostgreSQL,
        needs CREATEDB) or temporary file (SQLite), compare it with the live schema, and refuse to stamp (listing
        every difference) unless they are equal. The old guides' C(alembic stamp head) trusts the operator blindly.
    type: bool
    default: false
  maintenance_db:
    description: PostgreSQL database to connect to when creating the scratch database.
    type: str
    default: postgres
attributes:
  check_mode:
    support: full
    description: Reports whether the recorded revision would change, writing nothing.
  diff_mode:
    support: full
    description: Returns the revision before and after and the version-table SQL.
author: alembic-fleet maintainers (@alembic-fleet)
"""

EXAMPLES = r"""
- name: Baseline an existing database at head
  alembic_stamp:
    config: migrations/equities/alembic.ini
    url: postgresql://migrator@db1.example.com:5432/equities
    password: "{{ lookup('ansible.builtin.env', 'FLEET_PROD_DB_PASSWORD') }}"
    target: head
"""

RETURN = r"""
summary:
  description: >-
    What the module did, in one line - C(stamped unversioned -> e5f7293c4a65 (schema verified equal)), C(already at
    e5f7293c4a65, nothing to do); in check mode C(would stamp ...); on failure C(stamp failed: <message>).
  returned: always, also on failure
  type: str
  sample: "stamped unversioned -> e5f7293c4a65 (schema verified equal)"
database:
  description: Password-free description of the target.
  returned: always
  type: str
before:
  description: Revision ids recorded before.
  returned: always
  type: list
  elements: str
after:
  description: Revision ids recorded after (predicted in check mode).
  returned: always
  type: list
  elements: str
lock_waited:
  description: Seconds spent waiting for another run's lock on this database.
  returned: when something changed
  type: float
schema_differences:
  description: Differences between the live schema and the one built at O(target).
  returned: with O(require_schema_match)
  type: list
  elements: str
ledger_entry_id:
  description: Id of the ledger row that records this change.
  returned: when something changed
  type: str
duration:
  description: Seconds the module spent.
  returned: success
  type: float
"""


from ansible.module_utils.fleet.core.module import FleetModule, run_module
from ansible.module_utils.fleet.ops.operations import IMPORT_ERROR, alembic_argument_spec, stamp
from ansible.module_utils.fleet.report.summary import stamp_summary
from ansible.module_utils.fleet.state.ledger import LEDGER_ARGUMENT_SPEC
from ansible.module_utils.fleet.state.lock import LOCK_ARGUMENT_SPEC


def main() -> None:
    module = FleetModule(
        argument_spec=alembic_argument_spec(
            LEDGER_ARGUMENT_SPEC,
            LOCK_ARGUMENT_SPEC,
            target=dict(type="str", required=True),
            require_schema_match=dict(type="bool", default=False),
            maintenance_db=dict(type="str", default="postgres"),
        ),
        supports_check_mode=True,
    )
    run_module(module, stamp, IMPORT_ERROR, summary=stamp_summary)


if __name__ == "__main__":
    main()

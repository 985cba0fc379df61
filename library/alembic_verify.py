#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: alembic_verify
short_description: Verify a database's revision and schema against its Alembic project
description:
  - Checks that the project has exactly one head (or exactly O(expected_heads)), that the database is at
    O(revision), and, when the database is at head and the project's C(env.py) exposes C(target_metadata), that the
    live schema matches the models (Alembic's C(compare_metadata), as C(alembic check) does).
  - Fails with a readable list of every difference. Never changes anything; C(changed) is always false.
version_added: "1.0.0"
extends_documentation_fragment: [fleet.alembic, fleet.connection, fleet.project]
options:
  revision:
    description:
      - Revision the database must be at. V(head) (default) means all of the project's heads; several revision ids
        separated by commas mean exactly those heads (a database on some branches of a project with several).
    type: str
    default: head
  expected_heads:
    description:
      - The project's heads when it deliberately has several branches. By default exactly one head is required when
        O(revision=head); with another O(revision) the database's revisions are checked and the number of heads is
        not judged.
    type: list
    elements: str
  compare_schema:
    description:
      - Compare the live schema with the models' metadata when the database is at head; below head, with the schema
        the migrations build at the database's revision in a scratch database (PostgreSQL, needs CREATEDB) or a
        temporary file (SQLite), which is removed afterwards.
    type: bool
    default: true
  check_files:
    description: Fail when an applied revision's file differs from the one recorded in the ledger when it was applied.
    type: bool
    default: true
  ledger_table:
    description: Name of the run ledger table.
    type: str
    default: alembic_fleet_ledger
  maintenance_db:
    description: PostgreSQL database to connect to when creating the scratch database.
    type: str
    default: postgres
attributes:
  check_mode:
    support: full
    description: The module never changes anything.
  diff_mode:
    support: none
author: alembic-fleet maintainers (@alembic-fleet)
"""

EXAMPLES = r"""
- name: Equities is at head and matches the models
  alembic_verify:
    config: migrations/equities/alembic.ini
    url: postgresql://migrator@db1.example.com:5432/equities
    password: "{{ lookup('ansible.builtin.env', 'FLEET_PROD_DB_PASSWORD') }}"
"""

RETURN = r"""
summary:
  description: >-
    The verification in one line - C(verified at e5f7293c4a65, schema equal to <what it was compared with>) or
    C(..., schema not compared); on failure C(verification failed: <message>).
  returned: always, also on failure
  type: str
  sample: "verified at e5f7293c4a65, schema not compared"
database:
  description: Password-free description of the target.
  returned: always
  type: str
current:
  description: Revision ids recorded in the database.
  returned: when the database was read
  type: list
  elements: str
expected:
  description: Revision ids the database should be at.
  returned: when the database was read
  type: list
  elements: str
heads:
  description: The project's heads.
  returned: always
  type: list
  elements: str
schema_compared:
  description: Whether the live schema was compared with the models.
  returned: when the database was read
  type: bool
schema_differences:
  description: One readable line per difference between the live schema and the models.
  returned: when the schema was compared
  type: list
  elements: str
schema_compared_with:
  description: What the live schema was compared with (the models, or the schema built at a revision).
  returned: when the schema was compared
  type: str
schema_note:
  description: Why the schema was not compared.
  returned: when it was not
  type: str
problems:
  description: Every failed check, in words.
  returned: always
  type: list
  elements: str
duration:
  description: Seconds the module spent.
  returned: success
  type: float
"""


from ansible.module_utils.fleet.core.module import FleetModule, run_module
from ansible.module_utils.fleet.ops.operations import IMPORT_ERROR, alembic_argument_spec, verify
from ansible.module_utils.fleet.report.summary import verify_summary


def main() -> None:
    module = FleetModule(
        argument_spec=alembic_argument_spec(
            revision=dict(type="str", default="head"),
            expected_heads=dict(type="list", elements="str"),
            compare_schema=dict(type="bool", default=True),
            check_files=dict(type="bool", default=True),
            ledger_table=dict(type="str", default="alembic_fleet_ledger"),
            maintenance_db=dict(type="str", default="postgres"),
        ),
        supports_check_mode=True,
    )
    run_module(module, verify, IMPORT_ERROR, summary=verify_summary)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: alembic_lint
short_description: Lint the pending Alembic revisions' SQL for locking and safety hazards
description:
  - Renders the SQL of each revision pending from the database's current revision to O(target), one revision at a
    time, with Alembic's offline mode, and checks it with the C(squawk) PostgreSQL migration linter.
  - Adds alembic-fleet's own check from each revision's source - a C(downgrade()) that cannot undo the revision
    (rule C(irreversible-downgrade), an error) or that throws data away (rule C(lossy-downgrade), a warning).
  - Squawk's C(require-lock-timeout) and C(require-statement-timeout) rules are dropped because alembic-fleet sets
    those timeouts on the migration's connection itself.
  - With O(offline=true) no database is needed; O(url) still gives the SQL dialect and O(from_revision) the start.
  - A revision that cannot render offline is still reported, with the reason in its C(note) and the source-level
    findings only.
  - Read-only. It never changes anything and always returns C(changed=false).
  - Needs the C(squawk) binary (C(pip install squawk-cli)) next to the Python running the module or on E(PATH).
version_added: "0.2.0"
extends_documentation_fragment: [fleet.connection, fleet.project]
options:
  target:
    description:
      - Revision to lint up to. Same grammar as M(alembic_upgrade) O(alembic_upgrade#module:target).
      - When the project has several heads, V(head) is read as V(heads).
    type: str
    default: head
  offline:
    description:
      - Lint the revisions from O(from_revision) to O(target) without connecting to any database.
    type: bool
    default: false
  from_revision:
    description:
      - With O(offline=true), the revision the database is assumed to be at; V(base) lints from the first revision.
      - Ignored without O(offline).
    type: str
    default: base
attributes:
  check_mode:
    support: full
    description: The module never changes anything.
  diff_mode:
    support: none
author: alembic-fleet
"""

EXAMPLES = r"""
- name: Lint what an upgrade of equities would run
  alembic_lint:
    config: migrations/equities/alembic.ini
    url: postgresql://migrator@db1.example.com:5432/equities
    password: "{{ lookup('ansible.builtin.env', 'FLEET_PROD_DB_PASSWORD') }}"
  register: equities_lint

- name: Stop on errors
  ansible.builtin.assert:
    that: equities_lint.summary.errors == 0
    fail_msg: "{{ equities_lint.revisions | selectattr('findings') | list }}"

- name: Lint the whole project in CI, without a database
  alembic_lint:
    config: migrations/equities/alembic.ini
    url: postgresql://ci@localhost/equities
    offline: true
"""

RETURN = r"""
database:
  description: Password-free description of the target.
  returned: always
  type: str
  sample: migrator@db1.example.com:5432/equities
offline:
  description: Whether the lint ran without a database.
  returned: always
  type: bool
current:
  description: The revision(s) linting started from (the database's, or O(from_revision)); empty for base.
  returned: success
  type: list
  elements: str
target:
  description: The target as given.
  returned: success
  type: str
revisions:
  description: One entry per pending revision, in upgrade order.
  returned: success
  type: list
  elements: dict
  contains:
    revision: {description: Revision id., type: str}
    file: {description: File name of the revision., type: str}
    message: {description: First line of the revision's docstring., type: str}
    findings:
      description: >-
        The findings, each with rule, severity (C(error) or C(warning)), statement (the SQL statement, empty for
        source-level findings), line (in the rendered SQL, 1-based, or null), why, fix and source (C(squawk) or
        C(alembic-fleet)).
      type: list
      elements: dict
    reversibility: {description: C(reversible), C(lossy) or C(irreversible), from the revision's downgrade()., type: str}
    reversibility_reasons: {description: Why the downgrade is lossy or irreversible., type: list, elements: str}
    sql_rendered: {description: Whether the revision's SQL could be rendered offline and linted., type: bool}
    note: {description: Why the SQL was not rendered, or a caveat about the lint; null otherwise., type: str}
summary:
  description: Number of findings by severity, as C(errors) and C(warnings).
  returned: success
  type: dict
pending_count:
  description: Number of revisions linted.
  returned: success
  type: int
duration:
  description: Seconds the module spent.
  returned: success
  type: float
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.fleet_lint import lint
from ansible.module_utils.fleet_module import run_module
from ansible.module_utils.fleet_ops import IMPORT_ERROR, alembic_argument_spec


def main() -> None:
    module = AnsibleModule(
        argument_spec=alembic_argument_spec(
            target=dict(type="str", default="head"),
            offline=dict(type="bool", default=False),
            from_revision=dict(type="str", default="base"),
        ),
        supports_check_mode=True,
    )
    run_module(module, lint, IMPORT_ERROR)


if __name__ == "__main__":
    main()

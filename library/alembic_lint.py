#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: alembic_lint
short_description: Review the pending Alembic revisions for data loss, rewrites, long locks and missing downgrades
description:
  - Renders the SQL of each revision pending from the database's current revision to O(target), one revision at a
    time, with Alembic's offline mode, and checks it with the C(squawk) PostgreSQL migration linter (NOT NULL column
    without a default, DROP TABLE / COLUMN, type changes, CREATE INDEX without CONCURRENTLY, constraints without
    NOT VALID, renames, ...).
  - Adds alembic-fleet's own rules. From the SQL - C(mixed-data-and-schema) (a revision that moves data and changes
    the schema) and C(non-transactional) (a statement outside the revision's transaction, from an
    C(autocommit_block) or CONCURRENTLY, mixed with other work or not re-runnable). From the source -
    C(irreversible-downgrade) (C(downgrade()) missing, empty while C(upgrade()) is not, or raising on every path),
    C(uncertain-downgrade) (it raises only under a condition, or calls code that may refuse - the reversibility is
    C(unknown)) and C(lossy-downgrade). A merge revision, or any revision whose C(upgrade()) is empty too, is reversible.
  - A revision that cannot render offline (for example one that queries through C(op.get_bind())) is reviewed from
    its C(upgrade()) operations instead, with the same rule names, and its C(note) says so. A read-only C(SELECT)
    there is not a data migration; a value decided at run time (C(postgresql_concurrently=<variable>)) makes the
    finding C(uncertain), never more than a warning.
  - Statements are read with PostgreSQL's own parser (C(pglast)).
  - Findings that only matter for a table already in use (locks, rewrites, renames, drops) are left out for a table
    created earlier in the same plan, and for every table when the database was empty before the run (it does not
    exist, no revision is recorded, or O(offline) from V(base)) - a fresh install blocks no one. They are listed in
    the revision's C(skipped).
  - Each rule has a level - C(error), C(warning) or C(off) - from alembic-fleet's table (see
    C(module_utils/fleet/review/rules.py)), changed by O(rules). Findings of rules that are off are not reported.
  - >-
    A finding is acknowledged by revision and rule, with a reason, in the review file C(fleet-review.yml) beside
    C(alembic.ini) (C(acknowledge: {<revision>: {<rule>: <reason>}})) or in O(acknowledge), which wins per revision
    and rule. Nothing in the revision file changes, so its checksum in the ledger stays valid. A revision's own
    module-level C(fleet_acknowledge = {"rule-name": "why it is safe here"}) still counts, below both.
    Acknowledged findings are still listed, with the reason and where it came from, but are not errors.
  - With O(block=true) unacknowledged errors set C(blocked); the module itself still succeeds, so that the caller
    can show the whole review before stopping.
  - With O(offline=true) no database is needed; O(url) still gives the SQL dialect and O(from_revision) the start.
    Online, squawk is told the PostgreSQL server's version.
  - Read-only. It never changes anything and always returns C(changed=false).
  - Needs the C(squawk) binary (C(pip install squawk-cli)) next to the Python running the module or on E(PATH).
version_added: "1.0.0"
extends_documentation_fragment: [fleet.alembic_squawk, fleet.connection, fleet.project]
options:
  target:
    description:
      - Revision to review up to. Same grammar as M(alembic_upgrade) O(alembic_upgrade#module:target).
      - When the project has several heads, V(head) is read as V(heads).
    type: str
    default: head
  offline:
    description:
      - Review the revisions from O(from_revision) to O(target) without connecting to any database.
    type: bool
    default: false
  from_revision:
    description:
      - With O(offline=true), the revision the database is assumed to be at; V(base) reviews from the first revision.
      - Ignored without O(offline).
    type: str
    default: base
  cache:
    description:
      - A directory (on the host that runs the module) where the review of a plan is kept and read back, as
        M(alembic_status) O(alembic_status#module:review_cache) does; the policy is applied afresh every time.
    type: path
  rules:
    description:
      - The policy - rule name to level (V(error), V(warning) or V(off)), over alembic-fleet's built-in levels.
    type: dict
    default: {}
  block:
    description:
      - Whether unacknowledged errors block - they set C(blocked). prod sets this; dev and local only warn.
    type: bool
    default: false
  transaction:
    description:
      - How the upgrade will commit (M(alembic_upgrade) O(alembic_upgrade#module:transaction)), for the rule
        C(lock-held-through-long-work) - long work (an C(UPDATE), C(DELETE), C(INSERT ... SELECT), C(CREATE INDEX))
        while an C(ACCESS EXCLUSIVE) lock taken earlier in the same transaction is held. V(plan) judges the whole plan
        as one transaction, V(revision) each revision alone. Judged on the rendered SQL only.
    type: str
    choices: [plan, revision]
    default: plan
  acknowledge:
    description:
      - >-
        Acknowledged findings - revision id (or a unique prefix of 4 or more characters) to a mapping of rule name to
        the reason it is safe, for example C({"4d2a9c1b": {"ban-drop-column": "nothing reads it since 4.2"}}).
      - Merged with the review file C(fleet-review.yml) beside C(alembic.ini) (same shape, under the key
        C(acknowledge)); this option wins per revision and rule.
      - A key that names no revision, an unknown rule or an empty reason fails the module in one line.
    type: dict
attributes:
  check_mode:
    support: full
    description: The module never changes anything.
  diff_mode:
    support: none
author: alembic-fleet maintainers (@alembic-fleet)
"""

EXAMPLES = r"""
- name: Review what an upgrade of equities would run, blocking on errors
  alembic_lint:
    config: migrations/equities/alembic.ini
    url: postgresql://migrator@db1.example.com:5432/equities
    password: "{{ lookup('ansible.builtin.env', 'FLEET_PROD_DB_PASSWORD') }}"
    block: true
    rules:
      prefer-bigint-over-int: warning
      mixed-data-and-schema: error
  register: equities_review

- name: Stop on blocking findings
  ansible.builtin.assert:
    that: not equities_review.blocked
    fail_msg: "{{ equities_review.errors }}"

- name: Review the whole project in CI, without a database
  alembic_lint:
    config: migrations/equities/alembic.ini
    url: postgresql://ci@localhost/equities
    offline: true
"""

RETURN = r"""
summary_line:
  description: >-
    The review in one line (RV(summary) holds its counts) - C(2 pending revisions from c3e5071a2d43 reviewed: 1
    warning), C(at e5f7293c4a65, nothing pending, nothing to review), C(NEEDS ATTENTION - the review blocks 2
    pending revisions: 1 error) when RV(blocked); on failure C(review failed: <message>).
  returned: always, also on failure
  type: str
  sample: "2 pending revisions from c3e5071a2d43 reviewed: 1 error (not blocking)"
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
        The findings, each with rule, severity (C(error) or C(warning)), table (or null), statement (the SQL
        statement or operation, empty for findings about the whole file), line (in the rendered SQL or the revision
        file, 1-based, or null), why, fix (never empty), source (C(squawk), C(alembic-fleet) or
        C(alembic-fleet (source))), uncertain (why the source cannot tell, or null - such a finding is at most a
        warning), acknowledged, acknowledgement (the reason, or null) and acknowledged_by (where it came from).
      type: list
      elements: dict
    acknowledgements:
      description: The revision's acknowledgements, rule to reason (from O(acknowledge), C(fleet-review.yml) or C(fleet_acknowledge)).
      type: dict
    acknowledgement_sources:
      description: Where each acknowledgement comes from, rule to C(acknowledge option), C(fleet-review.yml) or C(fleet_acknowledge).
      type: dict
    unused_acknowledgements: {description: Acknowledged rules that found nothing in this revision., type: list, elements: str}
    reversibility: {description: "C(reversible), C(lossy), C(irreversible) or C(unknown), from the revision's downgrade().", type: str}
    reversibility_reasons: {description: Why the downgrade is lossy, irreversible or unknown., type: list, elements: str}
    skipped:
      description: >-
        Findings left out, one line each - their table cannot be in use yet (created earlier in the plan, or a fresh
        database), or their rule does not concern the database's dialect (PostgreSQL-only rules on SQLite).
      type: list
      elements: str
    transactional: {description: Whether everything the revision runs is inside its transaction., type: bool}
    sql_rendered: {description: Whether the revision's SQL could be rendered offline and linted., type: bool}
    note: {description: Why the SQL was not rendered, or a caveat about the lint; null otherwise., type: str}
summary:
  description: Number of unacknowledged C(errors) and C(warnings), and of C(acknowledged) findings.
  returned: success
  type: dict
  sample: {errors: 1, warnings: 0, acknowledged: 1}
report:
  description: One line per finding - revision, file, severity, rule, table, statement, fix and acknowledgement.
  returned: success
  type: list
  elements: str
errors:
  description: The lines of C(report) that are unacknowledged errors - revision, file, rule, table, statement and fix.
  returned: success
  type: list
  elements: str
blocked:
  description: Whether O(block) is set and there are unacknowledged errors.
  returned: success
  type: bool
block_message:
  description:
    - When C(blocked), the lines to stop with - the database, one line per blocking finding, then every way out
      (fix the revision, acknowledge in C(fleet-review.yml), change the rule's level, stop blocking); else empty.
  returned: success
  type: list
  elements: str
review_file:
  description: The path of the project's review file C(fleet-review.yml) (beside C(alembic.ini)), whether it exists or not.
  returned: success
  type: str
fresh:
  description: Whether the database was empty (missing, no revision recorded, or O(offline) from V(base)), so no table can be in use.
  returned: success
  type: bool
ledger_review:
  description: The review in the shape the upgrade modules' C(record.review) option keeps in the ledger.
  returned: success
  type: list
  elements: dict
note:
  description: Set when the database does not exist yet, so every revision up to O(target) was reviewed.
  returned: when the database does not exist
  type: str
cached:
  description: Whether the review was read back from O(cache) instead of computed.
  returned: success
  type: bool
pg_version:
  description: The PostgreSQL server version squawk was told, or null.
  returned: success
  type: str
pending_count:
  description: Number of revisions linted.
  returned: success
  type: int
duration:
  description: Seconds the module spent.
  returned: success
  type: float
"""


from ansible.module_utils.fleet.core.module import FleetModule, run_module
from ansible.module_utils.fleet.ops.operations import IMPORT_ERROR, alembic_argument_spec
from ansible.module_utils.fleet.report.summary import lint_summary
from ansible.module_utils.fleet.review.lint import lint


def main() -> None:
    module = FleetModule(
        argument_spec=alembic_argument_spec(
            target=dict(type="str", default="head"),
            offline=dict(type="bool", default=False),
            cache=dict(type="path"),
            from_revision=dict(type="str", default="base"),
            rules=dict(type="dict", default={}),
            block=dict(type="bool", default=False),
            transaction=dict(type="str", choices=["plan", "revision"], default="plan"),
            acknowledge=dict(type="dict"),
        ),
        supports_check_mode=True,
    )
    run_module(module, lint, IMPORT_ERROR, summary=lint_summary, summary_key="summary_line")


if __name__ == "__main__":
    main()

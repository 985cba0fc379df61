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
  - Always reports, from the ledger, the last successful change (RV(last_success)) and the last restore drill
    (RV(last_drill)).
  - Opt-in, for a scheduled status run (one call per database gives everything its report needs), each costing
    nothing unless asked - schema drift (O(drift), O(drift_allow)), the newest backup (O(backup_dir)) and the review
    of the pending revisions (O(review)).
version_added: "1.0.0"
extends_documentation_fragment: [fleet.alembic_squawk_review, fleet.connection, fleet.project, fleet.create]
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
  drift:
    description:
      - Compare the live schema with the schema the project's migrations build at the database's B(current)
        revision (built in a scratch database C(<db>_scratch_<hex>) on the same server, which needs C(CREATEDB), or in
        a temporary SQLite file; always removed) and return RV(drift). Manual changes made outside migrations show
        up here.
      - When the database is at head, also compare the live schema with the project's models (C(target_metadata)
        of C(env.py), as C(alembic check) does) and return RV(model_drift).
      - The ledger table (O(ledger_table)) and C(alembic_version) are never drift. Nothing is checked for a
        missing or unversioned database; the note says why. PostgreSQL compares the whole catalog (enum types and their
        labels, defaults, CHECK and other constraints, indexes, views, sequences, functions, triggers, ...), SQLite its
        tables, views and triggers.
    type: bool
    default: false
  drift_allow:
    description:
      - Accepted differences. Each entry is an C(fnmatch) pattern matched against a difference's text (for
        example V(column companies.* is in the database but not in the expected schema)), or a table name (or a
        pattern of table names) that accepts every difference on that table.
      - Accepted differences are listed under C(allowed) instead of C(differences), in RV(drift) and
        RV(model_drift).
    type: list
    elements: str
    default: []
  backup_dir:
    description:
      - Directory holding this database's backups, as M(db_backup) writes them
        (C(<backup_root>/<environment>/<host>/<name>)). The newest backup there with a readable manifest is returned
        in RV(backup). Only cheap metadata is read - the checksum is not verified.
    type: path
  review:
    description:
      - Review the pending revisions (up to O(target)) as M(alembic_lint) does, on this module's connection, and
        return the counts and report lines in RV(review). Needs C(squawk-cli) when something is pending.
    type: bool
    default: false
  review_rules:
    description: Rule levels over the built-in ones for O(review), as M(alembic_lint) O(alembic_lint#module:rules).
    type: dict
    default: {}
  review_block:
    description: Whether unacknowledged review errors set C(blocked) in RV(review). The module still succeeds.
    type: bool
    default: false
  review_transaction:
    description: How the upgrade will commit, for O(review), as M(alembic_lint) O(alembic_lint#module:transaction).
    type: str
    choices: [plan, revision]
    default: plan
  review_cache:
    description:
      - A directory (on the host that runs the module) where the review of a plan is kept and read back, so that
        the same revision files are reviewed once - across databases, environments and runs. The key covers every
        file under the project's C(script_location) and its C(alembic.ini), the plan, the dialect, the server's
        version, an empty database or not, O(review_transaction) and the review code; the policy
        (O(review_rules), O(review_block), O(acknowledge)) is applied afresh every time. Not set - the review is
        still shared by the databases of one call, in memory. Helper packages installed outside the project are not
        part of the key - clear the directory when one changes.
    type: path
  acknowledge:
    description:
      - Acknowledged review findings for O(review), as M(alembic_lint) O(alembic_lint#module:acknowledge) - revision
        id (or a unique prefix of 4+ characters) to rule to reason, merged with the project's C(fleet-review.yml)
        (this option wins per revision and rule).
    type: dict
  config: {required: false}  # the fragment's description; required unless O(databases) is given
  url: {required: false}  # the fragment's description; required unless O(databases) is given
  databases:
    description:
      - Several databases in one call (a host's whole list), instead of O(config), O(url) and O(password) (which
        are required without it) - one module start for all of them. Each entry gets this module's other options, overridden by its own.
      - The result is RV(databases), one status per entry in order. A database that cannot be read is reported
        there (C(failed), C(msg)) and the module still succeeds, so the caller decides.
    type: list
    elements: dict
    suboptions:
      name: {description: A name for the entry, returned with its status., type: str, required: true}
      config: {description: O(config) of this database., type: path, required: true}
      url: {description: O(url) of this database., type: str, required: true}
      password: {description: O(password) of this database., type: str}
      project_dir: {description: O(project_dir) of this database., type: path}
      target: {description: O(target) for this database., type: str}
      create_database: {description: O(create_database) for this database., type: bool}
      backup_dir: {description: O(backup_dir) of this database., type: path}
      drift_allow: {description: O(drift_allow) for this database (replaces the module's)., type: list, elements: str}
      acknowledge: {description: O(acknowledge) for this database (replaces the module's)., type: dict}
attributes:
  check_mode:
    support: full
    description: The module never changes anything.
  diff_mode:
    support: none
author: alembic-fleet maintainers (@alembic-fleet)
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

- name: Nightly status of equities - drift, newest backup, review of what is pending
  alembic_status:
    config: migrations/equities/alembic.ini
    url: postgresql://migrator@db1.example.com:5432/equities
    password: "{{ lookup('ansible.builtin.env', 'FLEET_PROD_DB_PASSWORD') }}"
    drift: true
    drift_allow:
      - audit_log
      - "index ix_companies_tmp_* on companies(*) is in the database but not in the *"
    backup_dir: /srv/backups/prod/db1/equities
    review: true
  register: equities_nightly
"""

RETURN = r"""
summary:
  description: >-
    The status in one line - C(at c3e5071a2d43, 2 revisions pending), C(at e5f7293c4a65, nothing pending), C(does
    not exist yet, 2 revisions pending); with O(databases), C(<name>: ...) for each, joined by C(; ); on failure
    C(status failed: <message>).
  returned: always, also on failure
  type: str
  sample: "at c3e5071a2d43, 2 revisions pending"
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
changed_files:
  description:
    - With something pending, one line per applied revision whose file changed since the ledger recorded it (the
      fleet role stops such a database in its preflight, before any backup or change).
  returned: success
  type: list
  elements: str
post_backup_missing:
  description:
    - With O(backup_dir) - the last change was a successful upgrade to where the database is now, and no backup of
      that revision was taken after it (the post-upgrade backup failed, or its run was killed). The fleet role
      takes it on its next run where the environment asks for post-upgrade backups.
  returned: success
  type: bool
target_ambiguous:
  description:
    - Whether the project has several heads and the target is C(head), which then names none of them; give
      C(heads), C(<branch>@head) or a revision instead. The fleet role refuses such a database in its preflight.
  returned: success
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
leftovers:
  description:
    - The database's side databases on its server, each with C(name), C(kind) and C(sessions) - C(restore) (a
      restore's scratch copy), C(replaced) (the original a restore replaced, kept with C(keep_replaced) or left by an
      interrupted restore), C(drill) (a restore drill's copy) and C(scratch) (a schema check's database).
    - With no sessions, the run that made it is gone (killed, or the host lost); the status report names it.
  returned: for PostgreSQL databases that exist
  type: list
  elements: dict
  sample: [{name: equities_drill_3fa2c1, kind: drill, sessions: 0}]
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
last_success:
  description: The newest ledger row of a successful migrate or upgrade (run_id, action, started_at, finished_at,
    duration, from_revision, to_revision, age_seconds since it finished), or null.
  returned: success
  type: dict
last_drill:
  description: The newest ledger row of a restore drill (action C(drill)) - run_id, outcome, started_at, finished_at,
    duration, message, age_seconds since it finished - or null. A row still C(running) with no live lock holder
    reads C(interrupted), as in RV(last_runs).
  returned: success
  type: dict
drift:
  description: The live schema against what the migrations build at the current revision.
  returned: when O(drift) is true
  type: dict
  contains:
    checked: {description: Whether the comparison was made., type: bool}
    differences: {description: Differences not accepted by O(drift_allow), one line each., type: list, elements: str}
    allowed: {description: Differences accepted by O(drift_allow)., type: list, elements: str}
    note: {description: Why nothing was checked (missing or unversioned database, no scratch database), or null., type: str}
    revision: {description: "The revision(s) the expected schema was built at, joined by ', '.", type: str}
    duration: {description: Seconds the comparison took., type: float}
  sample:
    checked: true
    differences: ["column companies.x is in the database but not in the expected schema"]
    allowed: []
    note: null
    revision: e5f7293c4a65
    duration: 0.61
model_drift:
  description: The live schema against the project's models (C(target_metadata)); compared only at head.
  returned: when O(drift) is true
  type: dict
  contains:
    checked: {description: Whether the comparison was made., type: bool}
    differences: {description: Differences not accepted by O(drift_allow), one line each., type: list, elements: str}
    allowed: {description: Differences accepted by O(drift_allow)., type: list, elements: str}
    note: {description: Why nothing was checked (C(not at head), C(env.py has no target_metadata), ...), or null., type: str}
backup:
  description: The newest backup in O(backup_dir) that has a readable manifest, or null when there is none.
  returned: when O(backup_dir) is given
  type: dict
  contains:
    path: {description: Path of the backup file., type: str}
    created_at: {description: When it was taken (UTC, C(YYYY-MM-DDTHH:MM:SSZ))., type: str}
    age_seconds: {description: Seconds since then., type: float}
    size: {description: Size of the file in bytes., type: int}
    sha256: {description: SHA-256 recorded in the manifest (not verified here)., type: str}
    revision: {description: Revision the database was at, from the manifest., type: str}
    orphan_partials:
      description: Temp files of killed backups in the directory (C(path), C(pid), C(bytes), C(modified_at)); the next backup and retention remove them.
      type: list
      elements: dict
backup_note:
  description: Why O(backup_dir) could not be read.
  returned: when O(backup_dir) cannot be listed
  type: str
review:
  description: The review of the pending revisions, or null when nothing is pending.
  returned: when O(review) is true
  type: dict
  contains:
    errors: {description: Unacknowledged findings at level error., type: int}
    warnings: {description: Unacknowledged findings at level warning., type: int}
    acknowledged: {description: Findings the revisions acknowledge., type: int}
    blocked: {description: Whether O(review_block) is set and there are errors., type: bool}
    report: {description: One line per finding, as M(alembic_lint) prints them., type: list, elements: str}
    blocking: {description: The lines of the unacknowledged errors., type: list, elements: str}
    block_message:
      description: When C(blocked), the lines to stop with - the database, the blocking findings, then every way out, one per line; else empty.
      type: list
      elements: str
    fresh: {description: Whether the database was reviewed as empty (no table in use)., type: bool}
    revisions: {description: The reviewed revisions, in order., type: list, elements: str}
    ledger_review:
      description: The review in the shape the upgrade modules' C(record.review) option keeps in the ledger, as M(alembic_lint) returns it.
      type: list
      elements: dict
    cached: {description: Whether the review was read back (O(review_cache), or another database of this call)., type: bool}
    duration: {description: Seconds the review took., type: float}
revisions:
  description: Number of revisions in the project.
  returned: always
  type: int
databases:
  description:
    - With O(databases), one status per entry, in order - the entry's C(name), C(failed), and either C(msg) (why the
      database could not be read) or every field this module returns for one database.
    - The top-level fields of a single database are then absent.
  returned: when O(databases) is given
  type: list
  elements: dict
duration:
  description: Seconds the module spent.
  returned: success
  type: float
"""


from ansible.module_utils.fleet.core.common import CONNECTION_ARGUMENT_SPEC, PROJECT_ARGUMENT_SPEC
from ansible.module_utils.fleet.core.module import FleetModule, run_module
from ansible.module_utils.fleet.ops.operations import (
    CREATE_ARGUMENT_SPEC,
    DATABASE_ENTRY_OPTIONS,
    IMPORT_ERROR,
    alembic_argument_spec,
    status,
    status_many,
)
from ansible.module_utils.fleet.report.summary import status_summary


def main() -> None:
    module = FleetModule(
        argument_spec=alembic_argument_spec(
            CREATE_ARGUMENT_SPEC,
            config=dict(PROJECT_ARGUMENT_SPEC["config"], required=False),
            url=dict(CONNECTION_ARGUMENT_SPEC["url"], required=False),
            target=dict(type="str", default="head"),
            ledger_table=dict(type="str", default="alembic_fleet_ledger"),
            ledger_limit=dict(type="int", default=5),
            long_transaction_seconds=dict(type="float", default=60),
            wait_for_quiet=dict(type="float", default=0),
            drift=dict(type="bool", default=False),
            drift_allow=dict(type="list", elements="str", default=[]),
            backup_dir=dict(type="path"),
            review=dict(type="bool", default=False),
            review_rules=dict(type="dict", default={}),
            review_block=dict(type="bool", default=False),
            review_transaction=dict(type="str", choices=["plan", "revision"], default="plan"),
            review_cache=dict(type="path"),
            acknowledge=dict(type="dict"),
            databases=dict(type="list", elements="dict", options={**DATABASE_ENTRY_OPTIONS, "acknowledge": dict(type="dict")}),
        ),
        required_one_of=[("url", "databases")],
        required_together=[("config", "url")],
        mutually_exclusive=[("url", "databases"), ("config", "databases"), ("password", "databases")],
        supports_check_mode=True,
    )
    run_module(module, status_many if module.params["databases"] is not None else status, IMPORT_ERROR, summary=status_summary)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: db_restore_check
short_description: Restore drill - prove a db_backup backup restores, in a scratch copy, never touching the database
description:
  - Takes the newest backup in O(backup_dir) that has a manifest (or the backup O(path)) and runs these checks,
    returned in RV(checks) in this order.
  - C(checksum) - the file's size and SHA-256 equal its manifest's. A damaged file (or manifest) fails the drill and
    is not restored.
  - C(restore) - PostgreSQL - C(pg_restore --no-owner --no-privileges --exit-on-error --single-transaction)
    (argument list; the password only through a private 0600 C(PGPASSFILE)) into a new database
    C(<dbname>_drill_<hex>) on the target's server, created from O(maintenance_db) (the user needs C(CREATEDB)).
    SQLite - a copy with the online backup API into a private temporary file, then C(PRAGMA integrity_check).
  - C(revision) - the restored copy's Alembic revision (read through the project's own C(env.py)) is the
    manifest's.
  - C(schema) - the restored schema equals what the project's migrations build at that revision in another scratch
    database (the comparison C(alembic_verify) and C(alembic_stamp) use), apart from the ledger table.
  - C(row_counts) - the exact row counts the manifest holds for the largest tables (the M(db_backup) option
    C(count_tables), taken in the dump's snapshot) equal the restored copy's. A manifest without
    counts (older backups) passes with a note.
  - The scratch copies are always dropped, also when a check fails. The target database's data is never read or
    written - only one row is added to its ledger (action C(drill), outcome C(succeeded) or C(failed), the
    backup's revision as from- and to-revision, its path and SHA-256, the recovery time as duration, and the
    failed checks as message). The row is written once the drill is over, without a C(running) row first and
    without the run lock, so a drill never waits for or disturbs a migration.
  - A failed drill fails the task after it is recorded, naming the failed checks; the return values are
    returned as well.
version_added: "1.0.0"
extends_documentation_fragment: [fleet.alembic_pg_restore, fleet.connection, fleet.project, fleet.ledger]
options:
  backup_dir:
    description:
      - Directory of this database's backups (C(<backup_root>/<environment>/<host>/<name>)); its newest backup
        with a manifest is drilled. Mutually exclusive with O(path); one of them is required.
      - No backup there fails with "no backup of <name> under <dir>".
    type: path
  path:
    description: One backup file written by M(db_backup) to drill; its manifest C(<path>.manifest.json) must be beside it.
    type: path
  maintenance_db:
    description: PostgreSQL database to connect to for creating and dropping the scratch databases.
    type: str
    default: postgres
  pg_bin_dir:
    description: Directory holding C(pg_restore). By default the one matching the server's major version.
    type: path
attributes:
  check_mode:
    support: full
    description: Reports which backup would be drilled (path, revision, manifest), restoring and writing nothing.
  diff_mode:
    support: none
author: alembic-fleet maintainers (@alembic-fleet)
"""

EXAMPLES = r"""
- name: Drill the newest backup of equities
  db_restore_check:
    url: postgresql://migrator@db1.example.com:5432/equities
    password: "{{ lookup('ansible.builtin.env', 'FLEET_PROD_DB_PASSWORD') }}"
    config: migrations/equities/alembic.ini
    backup_dir: /var/backups/alembic-fleet/prod/db1/equities
    record:
      environment: prod
      host: "{{ inventory_hostname }}"
      name: equities
  register: equities_drill

- name: Drill one SQLite backup
  db_restore_check:
    url: sqlite:////srv/app/var/equities.db
    config: migrations/equities/alembic.ini
    path: /var/backups/alembic-fleet/local/localhost/equities/20261123T172600Z_c3e5071a2d43.sqlite3
"""

RETURN = r"""
summary:
  description: >-
    The drill in one line - C(restored <path> (revision <revision>) into a scratch database in <seconds> s; all N
    checks passed); in check mode C(would drill <path>); on failure C(restore drill failed: <message>).
  returned: always, also on failure
  type: str
  sample: "restored /srv/backups/prod/db1/equities/20261123T172600Z_c3e5.dump (revision c3e5) into a scratch database in 1.2 s; all 5 checks passed"
path:
  description: Absolute path of the backup drilled (or, in check mode, that would be).
  returned: always
  type: str
  sample: /var/backups/alembic-fleet/prod/db1/equities/20261123T172600Z_c3e5071a2d43.dump
revision:
  description: The backup's revision, as its manifest records it (null for an unversioned backup or an unreadable manifest).
  returned: when a backup was found
  type: str
  sample: c3e5071a2d43
manifest:
  description: The backup's manifest (see M(db_backup)); null when it cannot be read.
  returned: when a backup was found
  type: dict
database:
  description: The target database, password-free.
  returned: when a backup was found
  type: str
checks:
  description:
    - The checks that ran, in order - C(checksum), C(restore), C(revision), C(schema), C(row_counts) - each with
      C(ok) and a one-line C(detail). After a failed C(checksum) or C(restore) the later checks do not run.
  returned: when a drill ran
  type: list
  elements: dict
  sample:
    - {check: checksum, ok: true, detail: "sha256 9f2c... and size 1084213 bytes match the manifest"}
    - {check: row_counts, ok: false, detail: "row counts differ from the manifest: public.daily_ohlcv has 20000 rows, the manifest says 20001"}
ok:
  description: Whether every check passed.
  returned: when a drill ran
  type: bool
duration:
  description: The recovery time in seconds - from the checksum through the last check (also the ledger row's duration).
  returned: when a drill ran
  type: float
restore_seconds:
  description: Seconds the restore itself took (creating the scratch database and C(pg_restore), or the SQLite copy); null when it did not run.
  returned: when a drill ran
  type: float
sha256:
  description: SHA-256 of the backup file as read by the drill (recorded in the ledger row).
  returned: when a drill ran
  type: str
ledger_entry_id:
  description: Id of the ledger row that records the drill in the target database.
  returned: when a drill ran
  type: str
left_behind:
  description: A scratch copy that could not be removed, to remove by hand.
  returned: when removing it failed
  type: str
"""


from ansible.module_utils.fleet.backup.drill import drill
from ansible.module_utils.fleet.core.module import FleetModule, run_module
from ansible.module_utils.fleet.ops.operations import IMPORT_ERROR, alembic_argument_spec
from ansible.module_utils.fleet.report.summary import drill_summary
from ansible.module_utils.fleet.state.ledger import LEDGER_ARGUMENT_SPEC


def main() -> None:
    module = FleetModule(
        argument_spec=alembic_argument_spec(
            LEDGER_ARGUMENT_SPEC,
            backup_dir=dict(type="path"),
            path=dict(type="path"),
            maintenance_db=dict(type="str", default="postgres"),
            pg_bin_dir=dict(type="path"),
        ),
        mutually_exclusive=[("backup_dir", "path")],
        required_one_of=[("backup_dir", "path")],
        supports_check_mode=True,
    )
    run_module(module, drill, IMPORT_ERROR, summary=drill_summary)


if __name__ == "__main__":
    main()

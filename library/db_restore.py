#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: db_restore
short_description: Restore a backup written by db_backup, replacing the database only with a complete, checked copy
description:
  - Refuses, before touching anything and in one sentence, a backup file or manifest that is missing or unreadable,
    a file whose size or SHA-256 differs from its manifest (damaged), a backup of another database (the manifest's
    C(name) is not O(name)) or of another dialect, a backup whose checksum is not O(expected_sha256), and a target
    database that does not exist (restoring into a missing database is not this module's job).
  - PostgreSQL - the restored database is one the application can use exactly as before. Before anything is
    touched, the owners in the backup's table of contents (C(pg_restore --list)) and the original's own properties
    are read, and a restore that would lose any of them is refused in one sentence naming the roles and what to grant
    (C(GRANT <role> TO <user>), C(GRANT SET ON PARAMETER ...), or to restore as a superuser) - objects owned by a
    role the user may not become (it must be that role, a member of it or a superuser; a role that does not exist on
    the server is refused too), a database owner the user is not a member of, C(ALTER ROLE <role> IN DATABASE ...
    SET) of a role the user may not change (it must be that role, a member, a superuser or, before PostgreSQL 16,
    have C(CREATEROLE)), and settings only a superuser may store.
  - PostgreSQL - records a C(running) row in the ledger of the original database, creates a new scratch database
    C(<dbname>_restore_<hex>) with the original's owner, encoding and locale (and locale provider), gives it the
    original's C(GRANT ... ON DATABASE), comment and connection limit, runs C(pg_restore --exit-on-error
    --single-transaction) with the dump's owners and privileges (argument list; the password only through a private
    0600 C(PGPASSFILE); the schemas and their privileges in a first run, so that a table's owner may create in its
    schema), checks that its version table holds the manifest's revision, copies the original's ledger rows it lacks
    so that history survives, records the restore as C(succeeded) there (and marks O(undo_entry_id) as undone),
    gives it the original's C(ALTER DATABASE ... SET) and C(ALTER ROLE ... IN DATABASE ... SET) (as the role, with
    C(SET ROLE), where the user is a member), then swaps it in from O(maintenance_db) - connections to the original
    are disallowed, its sessions ended, it is renamed C(<dbname>_replaced_<hex>), the scratch database takes its
    name, and the replaced one is dropped unless O(keep_replaced).
  - SQLite - the same, with a temporary copy beside the target written with the online backup API and copied onto
    the live file with the online backup API in one transaction.
  - Any failure before the swap drops the copy, records the restore as C(failed) in the original's ledger and
    leaves the original database untouched.
  - The restore needs the user to own the database (or be a member of its owner) and (PostgreSQL) to have
    C(CREATEDB). Sessions of other roles can only be ended by a user with C(pg_signal_backend); clients of the
    database are disconnected by the swap. Privileges that a role other than an object's owner granted in the
    original are replayed by pg_restore as that role (C(SET SESSION AUTHORIZATION)), which needs a superuser;
    without one the restore fails before the swap, leaving the original untouched.
version_added: "1.0.0"
extends_documentation_fragment: [fleet.database_pg_restore, fleet.passfile_pg_restore, fleet.connection, fleet.ledger, fleet.lock]
options:
  path:
    description: The backup file written by M(db_backup); its manifest C(<path>.manifest.json) must be beside it.
    type: path
    required: true
  name:
    description: Database name as the inventory knows it (for example C(equities)). Must equal the manifest's C(name).
    type: str
    required: true
  expected_sha256:
    description: SHA-256 the backup must have (for example the ledger's C(backup_sha256)). Compared with the manifest, whose checksum is compared with the file.
    type: str
  maintenance_db:
    description: PostgreSQL database to connect to for creating, renaming and dropping databases.
    type: str
    default: postgres
  pg_bin_dir:
    description: Directory holding C(pg_restore). By default the one matching the server's major version.
    type: path
  version_table:
    description: Alembic version table whose content must match the manifest's revision after the restore.
    type: str
    default: alembic_version
  jobs:
    description:
      - PostgreSQL - parallel C(pg_restore) jobs (C(--jobs)) - tables' data, indexes and constraints are built in
        parallel. V(0) (default) - one per core of the host that runs the module, at most 4; V(1) - one job in one
        transaction (C(--single-transaction)). Either way the restore goes into a scratch database that is dropped
        whole when anything fails, and the original is replaced only after every check.
    type: int
    default: 0
  keep_replaced:
    description:
      - PostgreSQL - keep the replaced database as C(<dbname>_replaced_<hex>) (returned in RV(replaced_database))
        instead of dropping it. Ignored for SQLite.
    type: bool
    default: false
  undo_entry_id:
    description:
      - Ledger C(entry_id) of the run this restore undoes. It must be in the original's ledger; in the restored
        database it is marked C(rolled_back) with C(undone_by) set to this restore's entry.
    type: str
attributes:
  check_mode:
    support: full
    description: Runs every check and reports the revision it would restore, writing nothing.
  diff_mode:
    support: none
author: alembic-fleet maintainers (@alembic-fleet)
"""

EXAMPLES = r"""
- name: Put equities back to the backup taken before the upgrade
  db_restore:
    url: postgresql://migrator@db1.example.com:5432/equities
    password: "{{ lookup('ansible.builtin.env', 'FLEET_PROD_DB_PASSWORD') }}"
    path: /var/backups/alembic-fleet/prod/db1/equities/20261123T172600Z_c3e5071a2d43.dump
    name: equities
    expected_sha256: "{{ last_run.backup_sha256 }}"
    undo_entry_id: "{{ last_run.entry_id }}"
    record:
      action: rollback
      environment: prod
      host: "{{ inventory_hostname }}"
      name: equities

- name: Restore a SQLite database, checking first
  db_restore:
    url: sqlite:////srv/app/var/equities.db
    path: /var/backups/alembic-fleet/local/localhost/equities/20261123T172600Z_c3e5071a2d43.sqlite3
    name: equities
  check_mode: true
"""

RETURN = r"""
pg_restore_jobs:
  description: PostgreSQL - how many parallel jobs C(pg_restore) ran with (O(jobs)).
  returned: when pg_restore ran
  type: int
summary:
  description: >-
    What the module did, in one line - C(restored <path> (revision <revision>)); in check mode C(would restore ...); on failure C(restore failed: <message>).
  returned: always, also on failure
  type: str
  sample: "restored /srv/backups/prod/db1/equities/20261123T172600Z_c3e5071a2d43.dump (revision c3e5071a2d43)"
path:
  description: Absolute path of the backup.
  returned: always
  type: str
manifest:
  description: The backup's manifest (see M(db_backup)).
  returned: when the checks passed
  type: dict
revision:
  description: Revision the restored database is at (the manifest's; null for an unversioned backup).
  returned: when the checks passed
  type: str
  sample: c3e5071a2d43
before:
  description: Revision ids the database had before the restore.
  returned: when the checks passed
  type: list
  elements: str
database:
  description: The target database, password-free.
  returned: when the checks passed
  type: str
ledger_entry_id:
  description: Id of the ledger row that records this restore.
  returned: when a restore was attempted
  type: str
ledger_rows_copied:
  description: Ledger rows of the original that the backup lacked and that were carried into the restored database.
  returned: when the restore succeeded
  type: int
replaced_database:
  description: Name of the kept replaced database (PostgreSQL, with O(keep_replaced), or when dropping it failed).
  returned: when kept
  type: str
duration:
  description: Seconds the restore took.
  returned: when the restore succeeded
  type: float
database_properties:
  description:
    - PostgreSQL - what the restored database was given of the original's own properties - its C(owner), the number
      of C(GRANT)/C(REVOKE ... ON DATABASE) statements that made its privileges the original's (C(grant_statements)),
      the number of C(ALTER DATABASE)/C(ALTER ROLE ... IN DATABASE) settings (C(settings)), and whether it has a
      C(comment).
  returned: when a PostgreSQL restore succeeded
  type: dict
  sample: {owner: migrator, grant_statements: 2, settings: 3, comment: false}
pg_restore_seconds:
  description:
    - How long C(pg_restore) itself ran (PostgreSQL). The rest of RV(duration) is the module's own work - the checksum,
      the scratch database, the ledger, the swap and dropping the replaced copy.
  returned: when pg_restore ran
  type: float
"""


from ansible.module_utils.fleet.backup.restore import restore
from ansible.module_utils.fleet.core.common import CONNECTION_ARGUMENT_SPEC, argument_spec
from ansible.module_utils.fleet.core.db import SQLALCHEMY_IMPORT_ERROR
from ansible.module_utils.fleet.core.module import FleetModule, run_module
from ansible.module_utils.fleet.report.summary import restore_summary
from ansible.module_utils.fleet.state.ledger import LEDGER_ARGUMENT_SPEC
from ansible.module_utils.fleet.state.lock import LOCK_ARGUMENT_SPEC


def main() -> None:
    module = FleetModule(
        argument_spec=argument_spec(
            CONNECTION_ARGUMENT_SPEC,
            LEDGER_ARGUMENT_SPEC,
            LOCK_ARGUMENT_SPEC,
            path=dict(type="path", required=True),
            name=dict(type="str", required=True),
            expected_sha256=dict(type="str"),
            maintenance_db=dict(type="str", default="postgres"),
            pg_bin_dir=dict(type="path"),
            version_table=dict(type="str", default="alembic_version"),
            keep_replaced=dict(type="bool", default=False),
            jobs=dict(type="int", default=0),
            undo_entry_id=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    run_module(module, restore, SQLALCHEMY_IMPORT_ERROR, "SQLAlchemy", summary=restore_summary)


if __name__ == "__main__":
    main()

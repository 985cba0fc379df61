#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: db_backup
short_description: Take a verified backup of a PostgreSQL or SQLite database
description:
  - PostgreSQL - runs C(pg_dump --format=custom) (readable by plain C(pg_restore)) with an argument list. The URL's
    whole connection description (host or unix-socket directory, port, user, database, C(sslmode), C(sslrootcert),
    C(sslcert), C(sslkey) and the other libpq options it allows) reaches it as one quoted connection string; the
    password only through a 0600 C(PGPASSFILE) that exists in memory only (an anonymous file), so not even a killed
    run leaves it on disk. The C(pg_dump) matching the server's major version is preferred.
  - C(pg_dump) waits at most O(lock_wait_timeout) for its table locks; when a session holds one longer, the
    backup fails naming that session (pid, user, query, since when) and writes nothing.
  - SQLite - copies the database with the C(sqlite3) online backup API, safe while the application writes.
  - The backup is written to a temporary file beside its destination, checked (C(pg_restore --list) reads it /
    C(PRAGMA integrity_check) says ok), hashed with SHA-256 and moved into place as
    C(<backup_root>/<environment>/<host>/<name>/<UTC timestamp>_<revision>.dump|.sqlite3), mode 0600 in 0700
    directories, with a JSON manifest beside it (C(<file>.manifest.json)). A failed backup leaves no file behind.
  - The temporary file is named after the module's process (C(.<file>.pid<N>.<random>.partial)). A killed run
    leaves it behind; the next backup into the directory removes every such file whose process is gone (and any
    older, pid-less one untouched for an hour), and says so in RV(removed_partials).
  - Every run writes a new backup, so C(changed) is always true; in check mode nothing is written.
version_added: "1.0.0"
extends_documentation_fragment: [fleet.database_pg_tools, fleet.passfile_pg_tools, fleet.connection]
options:
  backup_root:
    description: Directory that holds all backups. Created as 0700 when missing.
    type: path
    required: true
  environment:
    description: Environment name, the first directory level under O(backup_root).
    type: str
    required: true
  host:
    description: Host name (usually C(inventory_hostname)), the second directory level.
    type: str
    required: true
  name:
    description: Database name as the inventory knows it (for example C(equities)), the third directory level.
    type: str
    required: true
  revision:
    description:
      - Alembic revision the database is at, recorded in the file name and the manifest. Empty for an unversioned
        database.
      - Unset - read from the database's O(version_table), in the very snapshot the backup holds (several heads are
        joined with C(+)); C(base) when the table is missing or empty.
    type: str
  version_table:
    description: Alembic's version table, read when O(revision) is unset.
    type: str
    default: alembic_version
  lock_wait_timeout:
    description:
      - Seconds C(pg_dump) (and the row counts) may wait for a table lock held by another session, for example a
        migration's C(ACCESS EXCLUSIVE) lock. Past it the backup fails naming the session that holds it. Use the
        environment's lock_timeout policy. V(0) waits as long as it takes. Ignored for SQLite.
    type: float
    default: 5
  compress_level:
    description:
      - C(pg_dump) compression level, 0 (none) to 9. The default 1 costs a fraction of the CPU of
        C(pg_dump)'s own default level for a slightly larger file. Ignored for SQLite.
    type: int
    default: 1
  pg_bin_dir:
    description: Directory holding C(pg_dump) and C(pg_restore). By default the one matching the server's major version.
    type: path
  count_tables:
    description:
      - How many of the largest tables get their exact row count recorded in the manifest (C(tables)), for
        M(db_restore_check) to compare with a restored copy. V(0) counts none.
      - PostgreSQL - the largest by C(pg_total_relation_size). The counts are taken in the very snapshot the dump
        is taken in (a C(REPEATABLE READ) transaction exports it and C(pg_dump --snapshot) imports it), while
        C(pg_dump) runs. Counting is a full scan of each of those tables, beside C(pg_dump)'s own.
      - SQLite - every table of the copy is counted and the O(count_tables) with the most rows are kept.
    type: int
    default: 10
  keep_last:
    description:
      - Retention, applied after a successful backup to this database's directory - keep the newest O(keep_last)
        backups and every backup younger than O(keep_days) days; delete the rest with their manifests. The newest
        backup and the O(protect) paths are never deleted. Unset means keep everything.
      - In check mode the result's C(retention.would_delete) lists what would go.
    type: int
  keep_days:
    description: With O(keep_last), also keep every backup younger than this many days.
    type: float
    default: 0
  protect:
    description: Backup paths retention must never delete (for example the one the newest ledger entry refers to).
    type: list
    elements: path
    default: []
attributes:
  check_mode:
    support: full
    description: Reports the path it would write, writing nothing (no directories either).
  diff_mode:
    support: none
author: alembic-fleet maintainers (@alembic-fleet)
"""

EXAMPLES = r"""
- name: Back up equities before migrating
  db_backup:
    url: postgresql://migrator@db1.example.com:5432/equities
    password: "{{ lookup('ansible.builtin.env', 'FLEET_PROD_DB_PASSWORD') }}"
    backup_root: /var/backups/alembic-fleet
    environment: prod
    host: "{{ inventory_hostname }}"
    name: equities
    revision: c3e5071a2d43
  register: equities_backup
"""

RETURN = r"""
summary:
  description: >-
    What the module did, in one line - C(backed up <revision> to <path> (<size> bytes, sha256 <first 12 hex
    digits>)), then C(, retention deleted N old backups) when it did; in check mode C(would back up <revision> to
    <directory>/); on failure C(backup failed: <message>).
  returned: always, also on failure
  type: str
  sample: "backed up e5f7293c4a65 to /srv/backups/prod/db1/equities/20261123T172609Z_e5f7293c4a65.dump (73421 bytes, sha256 0f3a9c1d2e4b)"
path:
  description: Path of the backup file.
  returned: always
  type: str
  sample: /var/backups/alembic-fleet/prod/db1/equities/20261123T172600Z_c3e5071a2d43.dump
manifest_path:
  description: Path of the JSON manifest beside it.
  returned: always
  type: str
manifest:
  description:
    - The manifest - name, environment, host, dialect, database, server (password-free), revision,
      created_at (UTC), duration, file, size, sha256, dump_format, compress_level, server_version, pg_dump_version,
      toc_entries, pg_dump_seconds, and tables.
    - C(pg_dump_seconds) - how long C(pg_dump) itself ran (PostgreSQL); the rest of C(duration) is the module's own
      work (version check, row counts, the read-back, checksum and manifest).
    - C(tables) - the exact row counts of the O(count_tables) largest tables, largest first, each
      C({schema, table, rows, bytes}) (PostgreSQL; C(bytes) is the total size when counted) or C({table, rows})
      (SQLite). Absent with O(count_tables=0), and in manifests written before it existed.
  returned: when a backup was written
  type: dict
  sample:
    tables:
      - {schema: public, table: daily_ohlcv, rows: 20000, bytes: 2818048}
      - {schema: public, table: companies, rows: 2, bytes: 49152}
removed_partials:
  description: Temporary files of killed backups (their process is gone) removed from the directory before this backup.
  returned: when there were any
  type: list
  elements: str
retention:
  description:
    - What retention deleted (C(deleted)) and kept (C(kept)), or in check mode would delete (C(would_delete)).
    - C(deleted_partials) - the temporary files of killed backups it removed.
  returned: when O(keep_last) is set
  type: dict
duration:
  description: Seconds the backup took.
  returned: when a backup was written
  type: float
"""


from functools import partial

from ansible.module_utils.fleet.backup.backup import BACKUP_OPTIONS, backup
from ansible.module_utils.fleet.core.common import CONNECTION_ARGUMENT_SPEC, argument_spec
from ansible.module_utils.fleet.core.module import FleetModule, run_module
from ansible.module_utils.fleet.report.summary import backup_summary


def main() -> None:
    module = FleetModule(
        argument_spec=argument_spec(
            CONNECTION_ARGUMENT_SPEC,
            BACKUP_OPTIONS,
            revision=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    run_module(module, backup, summary=partial(backup_summary, revision=module.params["revision"]))


if __name__ == "__main__":
    main()

"""Print what a SQLite file of the molecule scenarios holds, as JSON (read-only).

    python sqlite_probe.py FILE [LEDGER_TABLE]

Used by the scenarios' verify playbooks to check the database itself rather than
only what the project's modules report: {"tables": [...], "columns": {table: [...]},
"alembic_version": [...] or null, "ledger": [row, ...] (oldest first) or null}.
"""

from __future__ import annotations

import json
import sqlite3
import sys

LEDGER_COLUMNS = (
    "id",
    "entry_id",
    "run_id",
    "action",
    "outcome",
    "environment",
    "host",
    "name",
    "from_revision",
    "to_revision",
    "backup_path",
    "backup_sha256",
    "undone_by",
    "message",
)


def main(path: str, ledger_table: str = "alembic_fleet_ledger") -> None:
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        tables = sorted(r[0] for r in con.execute("select name from sqlite_master where type = 'table'"))
        columns = {t: [c[1] for c in con.execute('pragma table_info("%s")' % t)] for t in tables}
        version = sorted(r[0] for r in con.execute("select version_num from alembic_version")) if "alembic_version" in tables else None
        ledger = None
        if ledger_table in tables:
            query = 'select %s from "%s" order by id' % (", ".join(LEDGER_COLUMNS), ledger_table)
            ledger = [dict(zip(LEDGER_COLUMNS, row, strict=True)) for row in con.execute(query)]
    finally:
        con.close()
    print(json.dumps({"tables": tables, "columns": columns, "alembic_version": version, "ledger": ledger}))


if __name__ == "__main__":
    main(*sys.argv[1:3])

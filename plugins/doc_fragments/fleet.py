# -*- coding: utf-8 -*-
# Documentation shared by alembic-fleet's modules (ansible-doc merges these).
from __future__ import annotations

# What a module needs where it runs. ansible-doc sorts the union when two fragments of one module both list
# requirements, so each module takes exactly ONE of the requirement fragments below, composed here from the same
# lines in the order an operator reads them; notes are appended in order and may come from several fragments.
_PYTHON = '  - "Python 3.11 or newer on the host that runs the module (the control node for C(ansible_connection=local))"\n'
_SQLALCHEMY = '  - "SQLAlchemy 2 (Python package) on the host that runs the module"\n'
_ALEMBIC = '  - "alembic and SQLAlchemy 2 (Python packages) on the host that runs the module"\n'
_PSYCOPG2 = '  - "psycopg2 (Python package, e.g. C(psycopg2-binary)) on the host that runs the module, for PostgreSQL databases"\n'
_PGLAST = '  - "pglast (Python package; the review parses SQL with PostgreSQL\'s own parser) on the host that runs the module"\n'
_SQUAWK = '  - "squawk (Python package C(squawk-cli), the SQL linter of the review) on the host that runs the module%s"\n'
_PG_TOOLS = '  - "C(pg_dump) and C(pg_restore) of at least the server\'s major version on the host that runs the module (PostgreSQL)%s"\n'
_PG_RESTORE = '  - "C(pg_restore) of at least the server\'s major version on the host that runs the module (PostgreSQL)"\n'
_RUNS_WHERE = """notes:
  - "Runs where the task runs: with C(ansible_connection=local), as the collection's roles use it, the control node needs what
    the requirements list, not the database host."
"""
_NO_OPTIONS = "options: {}\n"  # ansible-doc wants options (or attributes) in every fragment
_ALEMBIC_STACK = (_PYTHON, _ALEMBIC, _PSYCOPG2, _PGLAST)
_DATABASE_STACK = (_PYTHON, _SQLALCHEMY, _PSYCOPG2)


def _requirements(*lines: str, notes: tuple[str, ...] = ()) -> str:
    return "requirements:\n" + "".join(lines) + _RUNS_WHERE + "".join('  - "%s"\n' % note for note in notes) + _NO_OPTIONS


def _notes(*lines: str) -> str:
    return "notes:\n" + "".join('  - "%s"\n' % line for line in lines) + _NO_OPTIONS


class ModuleDocFragment:
    # -- requirements (and where they are needed): exactly one per module --------------------------------------
    REQUIREMENTS = _requirements(_PYTHON)  # fleet_report: it only writes files
    ALEMBIC = _requirements(*_ALEMBIC_STACK)
    # alembic_upgrade and alembic_downgrade (which may take a backup first, and run Alembic's migrations)
    ALEMBIC_BACKUP = _requirements(
        *_ALEMBIC_STACK,
        _PG_TOOLS % " when O(backup) is given",
        notes=("Alembic runs in process through its Python API; no C(alembic) command is needed.",),
    )
    ALEMBIC_PG_RESTORE = _requirements(*_ALEMBIC_STACK, _PG_RESTORE)
    ALEMBIC_SQUAWK = _requirements(*_ALEMBIC_STACK, _SQUAWK % "")
    ALEMBIC_SQUAWK_REVIEW = _requirements(*_ALEMBIC_STACK, _SQUAWK % " when O(review) is on")
    DATABASE = _requirements(*_DATABASE_STACK)
    DATABASE_PG_TOOLS = _requirements(*_DATABASE_STACK, _PG_TOOLS % "")
    DATABASE_PG_RESTORE = _requirements(*_DATABASE_STACK, _PG_RESTORE)

    # -- notes a module adds to its requirements' ---------------------------------------------------------------
    PASSFILE_PG_TOOLS = _notes("Passwords reach C(pg_dump) and C(pg_restore) only through an in-memory C(PGPASSFILE), never argv or the environment.")
    PASSFILE_PG_RESTORE = _notes("Passwords reach C(pg_restore) only through an in-memory C(PGPASSFILE), never argv or the environment.")

    CONNECTION = r"""
options:
  url:
    description:
      - SQLAlchemy URL of the target database, without a password, for example
        C(postgresql://migrator@db1.example.com:5432/equities) or C(sqlite:////srv/app/var/equities.db).
      - A URL that contains a password is refused; pass the password in O(password).
    type: str
    required: true
  password:
    description:
      - Password of the database user. Never written to argv, logs, results or any file on disk - libpq and the
        C(pg_dump)/C(pg_restore) children read it from an anonymous in-memory C(PGPASSFILE) (C(memfd)) that
        vanishes with the process, even after C(kill -9).
    type: str
  connect_timeout:
    description: Seconds to wait for a connection before giving up.
    type: int
    default: 10
"""

    PROJECT = r"""
options:
  config:
    description:
      - Path of the Alembic project's C(alembic.ini). Any ordinary Alembic project works; its C(env.py) receives
        the live connection as C(config.attributes["connection"]), the password-free URL as
        C(config.attributes["url"]), C(sqlalchemy.url) and C(DATABASE_URL), and the password through C(PGPASSFILE).
    type: path
    required: true
    aliases: [alembic_ini]
  project_dir:
    description:
      - Directory that the project's relative paths and imports start from (the guides' "project root"). The
        module changes into it and puts it on C(sys.path) while C(env.py) runs.
      - Defaults to the directory holding O(config).
    type: path
  ini_section:
    description: Section of O(config) that holds C(script_location).
    type: str
    default: alembic
"""

    CREATE = r"""
options:
  create_database:
    description:
      - Create the database (PostgreSQL) or the SQLite file when it does not exist. Off by default, so that a
        typo in the inventory fails instead of creating an empty database.
    type: bool
    default: false
  maintenance_db:
    description: PostgreSQL database to connect to when creating the target database.
    type: str
    default: postgres
"""

    LEDGER = r"""
options:
  ledger_table:
    description:
      - Name of the run ledger table in the target database (created on first use). Every change is recorded there
        with its run id, operator, revisions (with the SHA-256 of each file), backup and outcome; never a secret.
    type: str
    default: alembic_fleet_ledger
  record:
    description: What the ledger row says about the run this change belongs to. All optional.
    type: dict
    default: {}
    suboptions:
      run_id:
        description: Identifier shared by all changes of one playbook run. A random one by default.
        type: str
      action:
        description: What the change is part of. Defaults to the module's own action.
        type: str
        choices: [migrate, rollback, upgrade, downgrade, stamp, restore, unlock, drill]
      environment:
        description: Environment name (local, dev, prod).
        type: str
        default: ""
      host:
        description: Inventory host name.
        type: str
        default: ""
      name:
        description: Database name as the inventory knows it.
        type: str
        default: ""
      operator:
        description: Who ran it. Defaults to C(user@control-host) of the module's process.
        type: str
      backup_path:
        description: Backup taken before the change.
        type: str
      backup_sha256:
        description: SHA-256 of that backup.
        type: str
      review:
        description:
          - The review of the revisions, as M(alembic_lint) returns it in C(ledger_review) - per revision its
            reversibility and findings with their acknowledgements. Kept with each applied revision in the ledger.
        type: list
        elements: dict
"""

    LOCK = r"""
options:
  lock_wait:
    description:
      - Seconds to wait for another alembic-fleet run on the same database to finish before failing with the
        holder's run id, operator, host and start time. The lock (a PostgreSQL advisory lock held by this module's
        own session, or an OS file lock beside a SQLite file) dies with its process, so it never goes stale.
    type: float
    default: 60
"""

    TIMEOUTS = r"""
options:
  lock_timeout:
    description:
      - PostgreSQL C(lock_timeout) in seconds for the migration's statements, so that a migration queued behind a
        long transaction gives up instead of blocking every application query queued behind it. Unset keeps the
        server's setting; V(0) means no limit.
    type: float
  statement_timeout:
    description: PostgreSQL C(statement_timeout) in seconds for the migration's statements. Unset keeps the server's setting; V(0) means no limit.
    type: float
  lock_retries:
    description:
      - How many times to retry, with jittered exponential backoff, a migration that gave up on a lock (the whole
        transaction is rolled back each time). The final failure names the session holding the lock.
    type: int
    default: 3
  lock_retry_delay:
    description: Base delay in seconds between lock retries (doubled each time, with jitter).
    type: float
    default: 1.0
  transaction:
    description:
      - V(plan) runs every pending revision in one transaction - all or nothing - so a lock taken by an early
        revision (an C(ALTER TABLE) takes C(ACCESS EXCLUSIVE)) is held until the last one commits, through any long
        backfill after it. V(revision) commits each revision on its own, so the application waits at most for one
        revision; a failure then leaves the revisions before it committed (RV(partial), RV(whole_revisions)) and the
        migrate procedure downgrades them back.
      - A revision that uses C(autocommit_block()) is committed in Alembic's own transactions either way.
    type: str
    choices: [plan, revision]
    default: plan
"""

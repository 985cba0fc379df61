# -*- coding: utf-8 -*-
# The review's rules: one vocabulary for squawk's SQL rules and alembic-fleet's
# own, each with its built-in level (error, warning or off), a one-line why, a
# one-line fix, and whether it only matters for a table that already exists (a
# table created earlier in the same plan, or any table of a database that was
# empty, has no rows and no readers to block), and the dialects it concerns: a
# rule about PostgreSQL's locks, rewrites or features (CONCURRENTLY, NOT VALID,
# lock timeouts, its types) says nothing true of SQLite, whose writers take the
# whole database's lock anyway, so it is left out there; data loss, renames and
# revision structure concern every dialect. A team's policy (alembic_lint's
# rules option, the inventory's fleet_review_rules) changes levels by rule
# name; a finding is acknowledged by naming its revision and rule in
# fleet-review.yml (or the acknowledge option, or the revision's
# fleet_acknowledge). Pure data: no imports.
from __future__ import annotations

from dataclasses import dataclass

ERROR, WARNING, OFF = "error", "warning", "off"
LEVELS = (ERROR, WARNING, OFF)
EVERY_DIALECT: tuple[str, ...] = ()
POSTGRESQL = ("postgresql",)


@dataclass(frozen=True)
class Rule:
    level: str
    why: str
    fix: str
    existing_tables: bool = False  # only a table that already exists is at risk: a new one cannot block anyone
    dialects: tuple[str, ...] = EVERY_DIALECT  # the SQLAlchemy dialects it concerns; empty: every one


RULES: dict[str, Rule] = {
    # -- data loss ----------------------------------------------------------
    "ban-drop-table": Rule(
        ERROR,
        "DROP TABLE loses the table's rows, and code still running against it breaks.",
        "drop the table in a later release, after no code reads it and its data is archived; acknowledge the finding then.",
        existing_tables=True,
    ),
    "ban-drop-column": Rule(
        ERROR,
        "DROP COLUMN loses the column's data, and code still selecting it breaks.",
        "stop reading and writing the column first, drop it in a later release and acknowledge the finding then.",
        existing_tables=True,
    ),
    "ban-drop-database": Rule(ERROR, "DROP DATABASE loses everything in it.", "never drop a database from a migration."),
    "ban-truncate-cascade": Rule(ERROR, "TRUNCATE ... CASCADE empties every table that references this one.", "delete the rows you mean explicitly."),
    # -- rewrites and long locks ----------------------------------------------
    "adding-required-field": Rule(
        ERROR,
        "a NOT NULL column without a server default fails on a table that has rows, and breaks inserts of running code.",
        "add the column nullable (or with server_default=...), backfill it, then set NOT NULL in a later revision.",
        existing_tables=True,
    ),
    "adding-not-nullable-field": Rule(
        ERROR,
        "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock, blocking reads and writes.",
        "add a CHECK (col IS NOT NULL) NOT VALID constraint, VALIDATE it in another revision, then SET NOT NULL.",
        existing_tables=True,
        dialects=POSTGRESQL,
    ),
    "changing-column-type": Rule(
        ERROR,
        "changing a column's type rewrites the table under an ACCESS EXCLUSIVE lock, and values may fail to convert.",
        "add a new column of the new type, backfill it in batches, switch the code over, then drop the old column.",
        existing_tables=True,
        dialects=POSTGRESQL,
    ),
    "require-concurrent-index-creation": Rule(
        ERROR,
        "CREATE INDEX on an existing table blocks its writes until the index is built.",
        "create it with postgresql_concurrently=True and if_not_exists=True inside op.get_context().autocommit_block().",
        existing_tables=True,
        dialects=POSTGRESQL,
    ),
    "require-concurrent-index-deletion": Rule(
        WARNING,
        "DROP INDEX takes an ACCESS EXCLUSIVE lock on the table.",
        "drop it with postgresql_concurrently=True inside op.get_context().autocommit_block().",
        existing_tables=True,
        dialects=POSTGRESQL,
    ),
    "adding-foreign-key-constraint": Rule(
        ERROR,
        "adding a foreign key scans the table and locks both tables against writes until it is checked.",
        "add it NOT VALID (op.execute the ALTER TABLE ... NOT VALID), then VALIDATE CONSTRAINT in a later revision.",
        existing_tables=True,
        dialects=POSTGRESQL,
    ),
    "constraint-missing-not-valid": Rule(
        ERROR,
        "a new CHECK or foreign key constraint scans the whole table while blocking writes.",
        "add the constraint NOT VALID, then VALIDATE CONSTRAINT in a separate revision.",
        existing_tables=True,
        dialects=POSTGRESQL,
    ),
    "disallowed-unique-constraint": Rule(
        ERROR,
        "adding a UNIQUE constraint builds its index under an ACCESS EXCLUSIVE lock.",
        "create a unique index CONCURRENTLY first, then ADD CONSTRAINT ... UNIQUE USING INDEX.",
        existing_tables=True,
        dialects=POSTGRESQL,
    ),
    "adding-serial-primary-key-field": Rule(
        ERROR,
        "adding a serial primary key rewrites the table and builds its index under an ACCESS EXCLUSIVE lock.",
        "add the column, backfill it, create a unique index CONCURRENTLY, then add the primary key USING INDEX.",
        existing_tables=True,
        dialects=POSTGRESQL,
    ),
    "ban-concurrent-index-creation-in-transaction": Rule(
        ERROR,
        "CREATE INDEX CONCURRENTLY cannot run inside a transaction: the revision fails.",
        "wrap the operation in op.get_context().autocommit_block().",
        dialects=POSTGRESQL,
    ),
    "adding-field-with-default": Rule(
        WARNING,
        "a column with a volatile default rewrites the table under an ACCESS EXCLUSIVE lock.",
        "add the column without a default, set the default, then backfill in batches.",
        existing_tables=True,
        dialects=POSTGRESQL,
    ),
    "ban-drop-not-null": Rule(
        WARNING,
        "dropping NOT NULL lets NULLs in that running code may not expect.",
        "make sure every reader handles NULL before the release.",
        existing_tables=True,
    ),
    # -- renames ----------------------------------------------------------------
    "renaming-column": Rule(
        ERROR,
        "renaming a column breaks the running code that still uses the old name.",
        "add the new column, write both, backfill, move readers over, then drop the old one (expand and contract).",
        existing_tables=True,
    ),
    "renaming-table": Rule(
        ERROR,
        "renaming a table breaks the running code that still uses the old name.",
        "create the new table (or a view with the old name) and move the code over before dropping the old name.",
        existing_tables=True,
    ),
    # -- revision structure (alembic-fleet's own) --------------------------------
    "irreversible-downgrade": Rule(
        ERROR,
        "downgrade() cannot undo this revision (it is missing, empty while upgrade() is not, or raises on every path), so the only way back is a restore.",
        "write a downgrade() that restores the schema, or acknowledge the finding and roll back by restoring the backup.",
    ),
    "uncertain-downgrade": Rule(
        WARNING,
        "whether downgrade() can undo this revision cannot be told from its source (it raises only under a condition, or calls code that may refuse).",
        "try the downgrade on a copy (rollback.yml in dev); if it refuses, roll back by restoring the run's backup (-e fleet_rollback_strategy=restore).",
    ),
    "lossy-downgrade": Rule(
        OFF,
        "downgrade() drops tables or columns: undoing this revision throws their data away.",
        "keep the run's backup; prod refuses such a downgrade without fleet_rollback_allow_data_loss.",
    ),
    "mixed-data-and-schema": Rule(
        WARNING,
        "the revision changes data and schema together: the schema change's locks are held while the data moves, and neither can be re-run alone.",
        "move the data migration into a revision of its own (in batches), after the schema change.",
    ),
    "lock-held-through-long-work": Rule(
        WARNING,
        (
            "an ACCESS EXCLUSIVE lock taken earlier in the same transaction (ALTER TABLE, DROP, RENAME, TRUNCATE) is "
            "held while this statement works through many rows: every query of the locked table waits until it commits."
        ),
        "run the plan with a transaction per revision (fleet_transaction: revision) and give the long work a revision of its own, or do it before the ALTER.",
        existing_tables=True,
        dialects=POSTGRESQL,
    ),
    "non-transactional": Rule(
        WARNING,
        (
            "a statement runs outside the revision's transaction (autocommit_block or CONCURRENTLY): "
            "if the revision fails, it stays while the rest rolls back, and the database is left between revisions."
        ),
        "give the statement a revision of its own and make it re-runnable (IF NOT EXISTS / IF EXISTS).",
    ),
    "invalid-acknowledgement": Rule(
        ERROR,
        "the revision's fleet_acknowledge is not a literal mapping of rule names to non-empty reasons.",
        "acknowledge in fleet-review.yml beside alembic.ini instead (acknowledge: {<revision>: {<rule>: <reason>}}), or fix the literal.",
    ),
    # -- squawk's other rules that fire by default --------------------------------
    "ban-drop-type": Rule(
        WARNING,
        "dropping a type breaks the columns and code that still use it.",
        "drop the type in a later release, after nothing uses it.",
        existing_tables=True,
        dialects=POSTGRESQL,
    ),
    "ban-drop-view": Rule(WARNING, "dropping a view breaks the code that still reads it.", "drop the view in a later release, after nothing reads it."),
    "require-enum-value-ordering": Rule(
        OFF,
        "ALTER TYPE ... ADD VALUE without BEFORE or AFTER appends the value at the end of the enum's order.",
        "add BEFORE or AFTER when the order of the values matters.",
        dialects=POSTGRESQL,
    ),
    "transaction-nesting": Rule(
        WARNING,
        "the revision's SQL opens or ends a transaction of its own inside the migration's transaction.",
        "leave transactions to Alembic: use op.get_context().autocommit_block() for statements that must run outside one.",
    ),
    # -- squawk's style rules: off by default, turn them on in the policy ------------
    "prefer-robust-stmts": Rule(OFF, "the statement cannot be re-run if the migration fails part way.", "use IF [NOT] EXISTS."),
    "prefer-bigint-over-int": Rule(OFF, "32-bit integer keys can run out.", "use BigInteger.", dialects=POSTGRESQL),
    "prefer-bigint-over-smallint": Rule(OFF, "16-bit integer keys can run out.", "use BigInteger.", dialects=POSTGRESQL),
    "prefer-identity": Rule(OFF, "serial columns are harder to manage than identity columns.", "use sa.Identity().", dialects=POSTGRESQL),
    "prefer-text-field": Rule(OFF, "changing a varchar's length later takes an ACCESS EXCLUSIVE lock.", "use Text with a CHECK.", dialects=POSTGRESQL),
    "prefer-timestamp-tz": Rule(OFF, "timestamp without time zone drops the UTC offset.", "use DateTime(timezone=True).", dialects=POSTGRESQL),
    "ban-char-field": Rule(OFF, "char(n) pads values with spaces.", "use Text or String.", dialects=POSTGRESQL),
    # alembic-fleet sets lock_timeout and statement_timeout on the migration's connection itself.
    "require-lock-timeout": Rule(OFF, "no lock_timeout is set.", "alembic-fleet sets it on the connection.", dialects=POSTGRESQL),
    "require-statement-timeout": Rule(OFF, "no statement_timeout is set.", "alembic-fleet sets it on the connection.", dialects=POSTGRESQL),
}

# A squawk rule this table does not know (a newer squawk) is reported at this level.
UNKNOWN_RULE_LEVEL = WARNING
SQUAWK_RULE_DOCS = "https://squawkhq.com/docs/%s"


def rule_fix(rule: str, given: str = "") -> str:
    """The fix of rule: the table's, else the one given (squawk's help), else a pointer to squawk's documentation."""
    known = RULES.get(rule)
    if known is not None:
        return known.fix
    text = " ".join((given or "").split())
    return text or "see squawk's rule %s: %s" % (rule, SQUAWK_RULE_DOCS % rule)


def new_table_exempt(rule: str) -> bool:
    """Whether a finding of rule does not apply to a table created in the same plan (nothing can be blocked)."""
    known = RULES.get(rule)
    return known is not None and known.existing_tables


def rule_applies(rule: str, dialect: str) -> bool:
    """Whether rule concerns a database of dialect (a rule the table does not know applies everywhere)."""
    known = RULES.get(rule)
    return known is None or not known.dialects or dialect in known.dialects


def rule_level(rule: str, overrides: dict[str, str] | None = None) -> str:
    """The level of rule under the policy overrides (rule name -> level)."""
    if overrides and rule in overrides:
        return overrides[rule]
    known = RULES.get(rule)
    return known.level if known else UNKNOWN_RULE_LEVEL

# -*- coding: utf-8 -*-
# The review's rules: one vocabulary for squawk's SQL rules and alembic-fleet's
# own, each with its built-in level (error, warning or off), a one-line why and
# a one-line fix. A team's policy (alembic_lint's rules option, the inventory's
# fleet_review_rules) changes levels by rule name; a revision acknowledges a
# finding by naming its rule in fleet_acknowledge. Pure data: no imports.
from __future__ import annotations

from dataclasses import dataclass

ERROR, WARNING, OFF = "error", "warning", "off"
LEVELS = (ERROR, WARNING, OFF)


@dataclass(frozen=True)
class Rule:
    level: str
    why: str
    fix: str


RULES: dict[str, Rule] = {
    # -- data loss ----------------------------------------------------------
    "ban-drop-table": Rule(
        ERROR,
        "DROP TABLE loses the table's rows, and code still running against it breaks.",
        "drop the table in a later release, after no code reads it and its data is archived; acknowledge the finding then.",
    ),
    "ban-drop-column": Rule(
        ERROR,
        "DROP COLUMN loses the column's data, and code still selecting it breaks.",
        "stop reading and writing the column first, drop it in a later release and acknowledge the finding then.",
    ),
    "ban-drop-database": Rule(ERROR, "DROP DATABASE loses everything in it.", "never drop a database from a migration."),
    "ban-truncate-cascade": Rule(ERROR, "TRUNCATE ... CASCADE empties every table that references this one.", "delete the rows you mean explicitly."),
    # -- rewrites and long locks ----------------------------------------------
    "adding-required-field": Rule(
        ERROR,
        "a NOT NULL column without a server default fails on a table that has rows, and breaks inserts of running code.",
        "add the column nullable (or with server_default=...), backfill it, then set NOT NULL in a later revision.",
    ),
    "adding-not-nullable-field": Rule(
        ERROR,
        "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock, blocking reads and writes.",
        "add a CHECK (col IS NOT NULL) NOT VALID constraint, VALIDATE it in another revision, then SET NOT NULL.",
    ),
    "changing-column-type": Rule(
        ERROR,
        "changing a column's type rewrites the table under an ACCESS EXCLUSIVE lock, and values may fail to convert.",
        "add a new column of the new type, backfill it in batches, switch the code over, then drop the old column.",
    ),
    "require-concurrent-index-creation": Rule(
        ERROR,
        "CREATE INDEX on an existing table blocks its writes until the index is built.",
        "create it with postgresql_concurrently=True and if_not_exists=True inside op.get_context().autocommit_block().",
    ),
    "require-concurrent-index-deletion": Rule(
        WARNING,
        "DROP INDEX takes an ACCESS EXCLUSIVE lock on the table.",
        "drop it with postgresql_concurrently=True inside op.get_context().autocommit_block().",
    ),
    "adding-foreign-key-constraint": Rule(
        ERROR,
        "adding a foreign key scans the table and locks both tables against writes until it is checked.",
        "add it NOT VALID (op.execute the ALTER TABLE ... NOT VALID), then VALIDATE CONSTRAINT in a later revision.",
    ),
    "constraint-missing-not-valid": Rule(
        ERROR,
        "a new CHECK or foreign key constraint scans the whole table while blocking writes.",
        "add the constraint NOT VALID, then VALIDATE CONSTRAINT in a separate revision.",
    ),
    "disallowed-unique-constraint": Rule(
        ERROR,
        "adding a UNIQUE constraint builds its index under an ACCESS EXCLUSIVE lock.",
        "create a unique index CONCURRENTLY first, then ADD CONSTRAINT ... UNIQUE USING INDEX.",
    ),
    "adding-serial-primary-key-field": Rule(
        ERROR,
        "adding a serial primary key rewrites the table and builds its index under an ACCESS EXCLUSIVE lock.",
        "add the column, backfill it, create a unique index CONCURRENTLY, then add the primary key USING INDEX.",
    ),
    "ban-concurrent-index-creation-in-transaction": Rule(
        ERROR,
        "CREATE INDEX CONCURRENTLY cannot run inside a transaction: the revision fails.",
        "wrap the operation in op.get_context().autocommit_block().",
    ),
    "adding-field-with-default": Rule(
        WARNING,
        "a column with a volatile default rewrites the table under an ACCESS EXCLUSIVE lock.",
        "add the column without a default, set the default, then backfill in batches.",
    ),
    "ban-drop-not-null": Rule(
        WARNING,
        "dropping NOT NULL lets NULLs in that running code may not expect.",
        "make sure every reader handles NULL before the release.",
    ),
    # -- renames ----------------------------------------------------------------
    "renaming-column": Rule(
        ERROR,
        "renaming a column breaks the running code that still uses the old name.",
        "add the new column, write both, backfill, move readers over, then drop the old one (expand and contract).",
    ),
    "renaming-table": Rule(
        ERROR,
        "renaming a table breaks the running code that still uses the old name.",
        "create the new table (or a view with the old name) and move the code over before dropping the old name.",
    ),
    # -- revision structure (alembic-fleet's own) --------------------------------
    "irreversible-downgrade": Rule(
        ERROR,
        "downgrade() cannot undo this revision (it is empty, passes or raises), so the only way back is a restore.",
        "write a downgrade() that restores the schema, or acknowledge the finding and roll back by restoring the backup.",
    ),
    "lossy-downgrade": Rule(
        OFF,
        "downgrade() drops tables or columns: undoing this revision throws their data away.",
        "keep the run's backup; prod refuses such a downgrade without rollback_allow_data_loss.",
    ),
    "mixed-data-and-schema": Rule(
        WARNING,
        "the revision changes data and schema together: the schema change's locks are held while the data moves, and neither can be re-run alone.",
        "move the data migration into a revision of its own (in batches), after the schema change.",
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
        'write it as fleet_acknowledge = {"rule-name": "why this is safe here"}.',
    ),
    # -- squawk's style rules: off by default, turn them on in the policy ------------
    "prefer-robust-stmts": Rule(OFF, "the statement cannot be re-run if the migration fails part way.", "use IF [NOT] EXISTS."),
    "prefer-bigint-over-int": Rule(OFF, "32-bit integer keys can run out.", "use BigInteger."),
    "prefer-bigint-over-smallint": Rule(OFF, "16-bit integer keys can run out.", "use BigInteger."),
    "prefer-identity": Rule(OFF, "serial columns are harder to manage than identity columns.", "use sa.Identity()."),
    "prefer-text-field": Rule(OFF, "changing a varchar's length later takes an ACCESS EXCLUSIVE lock.", "use Text with a CHECK."),
    "prefer-timestamp-tz": Rule(OFF, "timestamp without time zone drops the UTC offset.", "use DateTime(timezone=True)."),
    "ban-char-field": Rule(OFF, "char(n) pads values with spaces.", "use Text or String."),
    # alembic-fleet sets lock_timeout and statement_timeout on the migration's connection itself.
    "require-lock-timeout": Rule(OFF, "no lock_timeout is set.", "alembic-fleet sets it on the connection."),
    "require-statement-timeout": Rule(OFF, "no statement_timeout is set.", "alembic-fleet sets it on the connection."),
}

# A squawk rule this table does not know (a newer squawk) is reported at this level.
UNKNOWN_RULE_LEVEL = WARNING


def rule_level(rule: str, overrides: dict[str, str] | None = None) -> str:
    """The level of rule under the policy overrides (rule name -> level)."""
    if overrides and rule in overrides:
        return overrides[rule]
    known = RULES.get(rule)
    return known.level if known else UNKNOWN_RULE_LEVEL

"""Add a column, then fail halfway (molecule scenario "failure")

A data migration that breaks at run time, after the schema change before it has
already been executed: the column is added, then the UPDATE names a column that
does not exist. Offline rendering (the review) is unaffected; only the real run
fails, inside the upgrade's transaction.

Revision ID: 0bad0bad0bad
Revises: e5f7293c4a65
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0bad0bad0bad"
down_revision = "e5f7293c4a65"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("companies", sa.Column("half_done", sa.Integer(), nullable=True))
    op.execute("UPDATE companies SET half_done = 1 WHERE no_such_column = 1")


def downgrade() -> None:
    op.drop_column("companies", "half_done")

"""Add sentiment_score to companies

Revision ID: e5f7293c4a65
Revises: d4f6182b3e54
Create Date: 2025-02-17 11:20:00.000000

"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "e5f7293c4a65"
down_revision: Union[str, Sequence[str], None] = "d4f6182b3e54"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("companies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "sentiment_score",
                sa.Numeric(precision=3, scale=2),
                nullable=True,
            )
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("companies", schema=None) as batch_op:
        batch_op.drop_column("sentiment_score")

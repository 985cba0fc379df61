"""Add adjusted_close to daily_ohlcv

Revision ID: c3e5071a2d43
Revises: b2d4f6081c32
Create Date: 2025-01-18 14:00:00.000000

"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "c3e5071a2d43"
down_revision: Union[str, Sequence[str], None] = "b2d4f6081c32"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("daily_ohlcv", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "adjusted_close",
                sa.Numeric(precision=15, scale=4),
                nullable=True,
                comment="Adjusted closing price",
            )
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("daily_ohlcv", schema=None) as batch_op:
        batch_op.drop_column("adjusted_close")

"""Add stock_symbol_type to companies

Revision ID: d4f6182b3e54
Revises: c3e5071a2d43
Create Date: 2025-02-03 08:45:00.000000

"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "d4f6182b3e54"
down_revision: Union[str, Sequence[str], None] = "c3e5071a2d43"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("companies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stock_symbol_type", sa.String(length=20), nullable=True)
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("companies", schema=None) as batch_op:
        batch_op.drop_column("stock_symbol_type")

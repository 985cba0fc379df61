"""Create strategy_parameters table

Revision ID: 4a0b1d3c8e25
Revises: 3f9a0c2b7d14
Create Date: 2025-01-16 09:00:00.000000

"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "4a0b1d3c8e25"
down_revision: Union[str, Sequence[str], None] = "3f9a0c2b7d14"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "strategy_parameters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("strategy_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["strategy_id"],
            ["strategies.id"],
            name=op.f("fk_strategy_parameters_strategy_id_strategies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strategy_parameters")),
        sa.UniqueConstraint(
            "strategy_id",
            "key",
            name=op.f("uq_strategy_parameters_strategy_id_key"),
        ),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("strategy_parameters")

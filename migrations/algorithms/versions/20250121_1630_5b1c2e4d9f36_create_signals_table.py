"""Create signals table

Revision ID: 5b1c2e4d9f36
Revises: 4a0b1d3c8e25
Create Date: 2025-01-21 16:30:00.000000

"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "5b1c2e4d9f36"
down_revision: Union[str, Sequence[str], None] = "4a0b1d3c8e25"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "signals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("strategy_id", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("signal_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("direction", sa.String(length=4), nullable=False),
        sa.Column("strength", sa.Numeric(precision=5, scale=4), nullable=True),
        sa.CheckConstraint(
            "direction IN ('BUY', 'SELL')", name=op.f("ck_signals_direction")
        ),
        sa.ForeignKeyConstraint(
            ["strategy_id"],
            ["strategies.id"],
            name=op.f("fk_signals_strategy_id_strategies"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
    )
    op.create_index(
        "ix_signals_strategy_id_signal_time",
        "signals",
        ["strategy_id", "signal_time"],
        unique=False,
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_signals_strategy_id_signal_time", table_name="signals")
    op.drop_table("signals")

"""Create daily_ohlcv table

Revision ID: b2d4f6081c32
Revises: a1c3e5f70b21
Create Date: 2025-01-12 10:15:00.000000

"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "b2d4f6081c32"
down_revision: Union[str, Sequence[str], None] = "a1c3e5f70b21"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "daily_ohlcv",
        # BIGINT, except on SQLite where only INTEGER PRIMARY KEY autoincrements.
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("open", sa.Numeric(precision=15, scale=4), nullable=False),
        sa.Column("high", sa.Numeric(precision=15, scale=4), nullable=False),
        sa.Column("low", sa.Numeric(precision=15, scale=4), nullable=False),
        sa.Column("close", sa.Numeric(precision=15, scale=4), nullable=False),
        sa.Column("volume", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["symbol"],
            ["companies.ticker"],
            name=op.f("fk_daily_ohlcv_symbol_companies"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_daily_ohlcv")),
    )
    op.create_index(
        "idx_daily_ohlcv_symbol_date",
        "daily_ohlcv",
        ["symbol", "date"],
        unique=True,
    )
    op.create_index("idx_daily_ohlcv_date", "daily_ohlcv", ["date"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("idx_daily_ohlcv_date", table_name="daily_ohlcv")
    op.drop_index("idx_daily_ohlcv_symbol_date", table_name="daily_ohlcv")
    op.drop_table("daily_ohlcv")
